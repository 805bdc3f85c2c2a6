"""The peer of the engine benchmark: what a researcher writes by hand with nnsight and SAELens.

``peer_run`` follows the two libraries' own documentation, so that ``make bench`` compares the
engine with the strongest realistic script rather than a strawman:

- nnsight 0.8 wraps the loaded model with ``TransformersModel(hf_model, tokenizer=...)`` (its
  README; ``LanguageModel`` still works but is deprecated in 0.8), reads the SAE's site inside
  ``with model.trace(ids) as tracer:`` by its Gemma Scope 2 path (``model.get(path).save()``,
  the path being ``hf_hook_point_in``: ``.output`` of a layer or norm, ``.input`` of ``o_proj``)
  and ends the forward there with ``tracer.stop()`` (``InterleavingTracer.stop``'s docstring);
- SAELens 6 loads the folder with ``SAE.load_from_disk(folder, dtype=..., converter=...)``, the
  documented way to read another library's SAE (its docs' index: "a custom
  ``PretrainedSaeDiskLoader``"); the converter is SAELens's own ``gemma_3`` (Gemma Scope 2)
  Hugging Face loader made local, as that one only downloads. The weights are the file's,
  renamed ``w_enc`` -> ``W_enc`` and so on, and the SAE runs in the model's dtype; then the dense
  ``sae.encode`` and ``torch.topk``.

Batching: nnsight 0.8 left-pads a list of token-id lists and supplies ``position_ids`` itself
(``nnsight.modeling.processing.supply_position_ids``), so ``model.trace(list_of_ids)`` runs
several prompts in one forward; ``--check`` shows the padded rows give the unpadded top-k.
Prompts sorted by length, ``BATCH`` a trace, ran 2.1x as fast as one prompt a trace (the docs'
usual example) in float32 on the project's 2-core VM (``--compare-batching``), so that is the
peer.

Several SAEs: one separate trace per SAE over all prompts, as a user with one script per SAE
would do; tokens are counted once, so the rate is comparable to an engine that reads all SAEs
in one pass. Model wrapping, SAE loading and one warm-up trace are outside the timing, as the
engine's warm-up chunk is.

    .venv/bin/python bench/peer.py --sae FOLDER --dtype bfloat16 [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nnsight import TransformersModel
from sae_lens import SAE
from sae_lens.loading.pretrained_sae_loaders import load_safetensors_weights
from safetensors import safe_open

ROOT = Path(__file__).resolve().parents[1]
BATCH = 8  # prompts per trace; see --compare-batching
# Gemma Scope 2's tensor names -> SAELens's, as its gemma_3 loader renames them
RENAMES = {"w_enc": "W_enc", "w_dec": "W_dec"} | {k: k for k in ("b_enc", "b_dec", "threshold")}
SHIPPED_SAE = ROOT / "saes/scopeweb-gemma-3-270m-pt/resid_post/layer_12_width_4k_l0_medium"


@dataclass
class PeerResult:
    tokens: int  # each prompt's tokens once, whatever the number of SAEs
    seconds: float
    tokens_per_s: float
    top_idx: list[list[np.ndarray]]  # [sae][sequence] -> [tokens, top_k] int64
    top_val: list[list[np.ndarray]]  # [sae][sequence] -> [tokens, top_k] float32


def gemma_scope_2_disk_loader(
    path: str | Path, device: str = "cpu", cfg_overrides: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A ``PretrainedSaeDiskLoader``: SAELens's ``gemma_3_sae_huggingface_loader`` for a folder.

    Same config and renaming as that loader; a transcoder is a config whose
    ``hf_hook_point_out`` differs from its ``hf_hook_point_in``."""
    folder = Path(path)
    raw = json.loads((folder / "config.json").read_text())
    cfg: dict[str, Any] = {"dtype": "float32", "device": device, **(cfg_overrides or {})}
    params = folder / "params.safetensors"
    with safe_open(str(params), framework="pt") as handle:
        d_in, d_sae = handle.get_slice("w_enc").get_shape()
        d_out = handle.get_slice("w_dec").get_shape()[-1]
        skip = "affine_skip_connection" in handle.keys()  # noqa: SIM118 (not a dict)
    weights = load_safetensors_weights(params, device=device, dtype=cfg["dtype"])
    hook_in = raw["hf_hook_point_in"]
    hook_out = raw.get("hf_hook_point_out") or hook_in
    architecture = "jumprelu"
    if hook_out != hook_in:
        architecture = "jumprelu_skip_transcoder" if skip else "jumprelu_transcoder"
        cfg |= {"d_out": d_out, "hook_name_out": hook_out, "hf_hook_name_out": hook_out}
    cfg |= {
        "architecture": architecture,
        "d_in": d_in,
        "d_sae": d_sae,
        "model_name": raw.get("model_name", ""),
        "hook_name": hook_in,
        "hf_hook_name": hook_in,
        "apply_b_dec_to_input": False,  # Gemma Scope 2 encodes x itself, not x - b_dec
        "normalize_activations": "none",
        "reshape_activations": "none",
        # No sae_lens_version, as in gemma_3: SAELens's pre-6.0 defaulting then files
        # hook_name and hf_hook_name under cfg.metadata, where peer_run reads the hook.
        "sae_lens_training_version": None,
    }
    state = {ours: weights[theirs] for theirs, ours in RENAMES.items()}
    if skip:  # stored [d_in, d_out]; SAELens's W_skip is [d_out, d_in]
        state["W_skip"] = weights["affine_skip_connection"].T.contiguous()
    return cfg, state


def _batches(sequences: list[list[int]], size: int) -> list[list[int]]:
    """Indices of the sequences, longest first, in groups of ``size``: little padding."""
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    return [order[at : at + size] for at in range(0, len(order), size)]


def peer_run(
    hf_model: Any,
    sae_folders: list[Path],
    sequences: list[list[int]],
    *,
    dtype: torch.dtype,
    top_k: int,
    batch_size: int = BATCH,
    tokenizer: Any = None,
) -> PeerResult:
    """Top-k latents of each SAE on each sequence, the nnsight + SAELens way, timed.

    ``hf_model`` is a loaded ``Gemma3ForCausalLM`` in ``dtype`` (eval); ``sequences`` are token
    ids with BOS first. The tokenizer only pads (token ids go in); without one, nnsight 0.8
    loads it from the model's folder (``hf_model.name_or_path``)."""
    model = TransformersModel(hf_model, tokenizer=tokenizer)
    device = str(next(hf_model.parameters()).device)
    dtype_name = str(dtype).removeprefix("torch.")
    saes = [
        SAE.load_from_disk(f, device=device, dtype=dtype_name, converter=gemma_scope_2_disk_loader)
        for f in sae_folders
    ]
    batches = _batches(sequences, batch_size)
    top_idx: list[list[np.ndarray]] = [[np.empty(0)] * len(sequences) for _ in saes]
    top_val: list[list[np.ndarray]] = [[np.empty(0)] * len(sequences) for _ in saes]
    with torch.inference_mode():
        _site(model, saes[0].cfg.metadata.hf_hook_name, [sequences[0]])  # warm-up
        _sync(device)
        started = time.perf_counter()
        for s, sae in enumerate(saes):  # one pass per SAE: one script per SAE
            for batch in batches:
                rows = [sequences[i] for i in batch]
                x = _site(model, sae.cfg.metadata.hf_hook_name, rows)  # [rows, width, d_in]
                values, indices = torch.topk(sae.encode(x), top_k, dim=-1)  # dense encode
                for row, i in enumerate(batch):
                    n = len(sequences[i])  # left-padded: the real tokens are the last n
                    top_idx[s][i] = indices[row, -n:].cpu().numpy()
                    top_val[s][i] = values[row, -n:].float().cpu().numpy()
        _sync(device)
        seconds = time.perf_counter() - started
    tokens = sum(len(ids) for ids in sequences)
    return PeerResult(tokens, seconds, tokens / seconds, top_idx, top_val)


def _site(model: TransformersModel, hook: str, rows: list[list[int]]) -> torch.Tensor:
    """The activations at ``hook`` (``model.layers.9.output``…), the forward stopped there."""
    with model.trace(rows if len(rows) > 1 else rows[0]) as tracer:
        value = model.get(hook).save()
        tracer.stop()
    site: torch.Tensor = value[0] if isinstance(value, tuple) else value  # a layer: a tuple
    return site


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def check(hf_model: Any, folder: Path, sequences: list[list[int]], top_k: int) -> None:
    """The peer's top-k, batched and one prompt a trace, against plain torch (a forward hook and
    the JumpReLU by hand) in float32; zero slots are left out, their order being arbitrary."""
    params = load_safetensors_weights(folder / "params.safetensors")
    hook = json.loads((folder / "config.json").read_text())["hf_hook_point_in"]
    assert hook.endswith(".output") and hook.count(".") == 3, "the check is for resid_post"
    seen: list[torch.Tensor] = []
    layer = hf_model.get_submodule(hook.removesuffix(".output"))
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(out[0][0]))
    try:
        with torch.inference_mode():
            for ids in sequences:
                hf_model(input_ids=torch.tensor([ids], device=hf_model.device))
    finally:
        handle.remove()
    reference = []
    for x in seen:  # [tokens, d_model]
        pre = x @ params["w_enc"] + params["b_enc"]
        reference.append(torch.topk(torch.relu(pre) * (pre > params["threshold"]), top_k))
    for size in (BATCH, 1):
        result = peer_run(
            hf_model, [folder], sequences, dtype=torch.float32, top_k=top_k, batch_size=size
        )
        same, worst = [], 0.0
        for (values, indices), idx, val in zip(
            reference, result.top_idx[0], result.top_val[0], strict=True
        ):
            live = values.numpy() > 0
            same.append((indices.numpy() == idx)[live])
            worst = max(worst, float(np.abs(values.numpy() - val).max()))
        print(
            f"check, {size} prompt(s) a trace: top-{top_k} indices equal in "
            f"{np.concatenate(same).mean():.4%} of the nonzero slots, largest value "
            f"difference {worst:.2e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sae", type=Path, action="append", help="a Gemma Scope 2 folder")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--top-k", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=BATCH)
    parser.add_argument("--prompts", type=Path, default=ROOT / "bench" / "prompts.jsonl")
    parser.add_argument("--check", action="store_true", help="compare with plain torch first")
    parser.add_argument("--compare-batching", action="store_true", help="also 1 prompt a trace")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scopeweb.settings")
    import django

    django.setup()
    from traces.engine.model import load_default_model

    dtype = getattr(torch, args.dtype)
    loaded = load_default_model(dtype=dtype)
    rows = [json.loads(line) for line in args.prompts.read_text().splitlines() if line.strip()]
    sequences = [loaded.tokenizer.encode(row["prompt"]).ids[:1000] for row in rows]
    folders = args.sae or [SHIPPED_SAE]
    if args.check:
        fp32 = loaded if dtype == torch.float32 else load_default_model()
        check(fp32.model, folders[0], sequences[:6], args.top_k)
    sizes = [args.batch_size, 1] if args.compare_batching else [args.batch_size]
    for size in sizes:
        result = peer_run(
            loaded.model, folders, sequences, dtype=dtype, top_k=args.top_k, batch_size=size
        )
        print(
            f"peer {args.dtype}, {len(folders)} SAE(s), {size} prompt(s) a trace: "
            f"{result.tokens:,} tokens in {result.seconds:.1f} s, "
            f"{result.tokens_per_s:.0f} tokens/s ({torch.get_num_threads()} threads)"
        )


if __name__ == "__main__":
    main()
