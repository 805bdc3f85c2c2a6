"""Random JumpReLU SAEs in the Gemma Scope 2 layout, for tests, benchmarks and trying the
product at real widths on a machine that cannot download Gemma Scope 2.

The encoder's directions are random; each latent's threshold is set from the model's own
activations at the hook (on the held-out passages) so that it fires on about ``l0 / width`` of
tokens, which gives real-looking sparsity and top-k. The decoder is the encoder's directions,
scaled so a typical reconstruction is about as large as the typical spread of what it
reconstructs. Reconstructions are poor (FVU around 1 to 2): such an SAE is only for measuring
speed, memory and plumbing, and its config says ``"random": true``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from scopeweb_tracer.hooks import WIDTH_NAMES, Hook, hook_width, parse_hook, site_of
from traces.engine.capture import batches_by_length, capture_hooks, make_batch
from traces.engine.model import LoadedModel

SITE_NAMES = {
    "resid_post": ("model.layers.{L}.output", None),
    "attn_out": ("model.layers.{L}.self_attn.o_proj.input", None),
    "mlp_out": ("model.layers.{L}.post_feedforward_layernorm.output", None),
    "transcoder": (
        "model.layers.{L}.pre_feedforward_layernorm.output",
        "model.layers.{L}.post_feedforward_layernorm.output",
    ),
}
OUTLIER_DIRECTIONS = 4


def folder_name(site: str, layer: int, width: int) -> str:
    return f"{site}/layer_{layer}_width_{WIDTH_NAMES.get(width, str(width))}_l0_medium"


@torch.inference_mode()
def _activations(
    loaded: LoadedModel, hooks: list[Hook], sequences: list[list[int]]
) -> dict[str, torch.Tensor]:
    """Each hook's activations over ``sequences``, BOS left out: ``[tokens, width]`` float32."""
    parts: dict[str, list[torch.Tensor]] = {hook.name: [] for hook in hooks}
    for group in batches_by_length([len(s) for s in sequences], max_tokens=4096):
        batch = make_batch([sequences[i] for i in group], 0, loaded.device)
        keep = batch.attention_mask.bool().clone()
        keep[:, 0] = False
        for name, tensor in capture_hooks(loaded.model, hooks, batch).items():
            parts[name].append(tensor[keep].float().cpu())
    return {name: torch.cat(values) for name, values in parts.items()}


@torch.inference_mode()
def write_random_sae(
    loaded: LoadedModel,
    root: Path,
    *,
    site: str,
    layer: int,
    width: int,
    sequences: list[list[int]],
    l0: float = 60.0,
    affine: bool = False,
    seed: int = 0,
) -> Path:
    """Write ``root/{site}/layer_{L}_width_{W}_l0_medium`` and return the folder."""
    if site not in SITE_NAMES:
        raise ValueError(f"site {site!r} is not one of {', '.join(SITE_NAMES)}")
    name_in, name_out = (n.format(L=layer) if n else None for n in SITE_NAMES[site])
    assert name_in is not None
    hook_in = parse_hook(name_in)
    hook_out = parse_hook(name_out) if name_out else hook_in
    site_of(hook_in, hook_out)  # the names are a known site
    acts = _activations(loaded, [hook_in, hook_out], sequences)
    x, y = acts[hook_in.name], acts[hook_out.name]
    d_in, d_out = hook_width(loaded.text_config, hook_in), hook_width(loaded.text_config, hook_out)
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(width, d_in, generator=generator)
    if d_in == x.shape[1]:  # keep clear of the few huge "sink" directions of the stream, as
        # trained SAEs do; otherwise a sink token passes every threshold at once
        basis = torch.linalg.svd(x, full_matrices=False).Vh[:OUTLIER_DIRECTIONS]
        directions -= (directions @ basis.T) @ basis
    directions /= directions.norm(dim=1, keepdim=True)
    w_enc = directions.T.contiguous()  # [d_in, width]
    b_enc = torch.zeros(width)
    threshold = torch.empty(width)
    rank = max(1, min(x.shape[0], round(x.shape[0] * (1 - l0 / width))))
    f_sum = torch.zeros(x.shape[0])  # Σ_j f_j per token, to size the decoder
    for start in range(0, width, 8192):  # a quantile per latent, one block at a time
        pre = x @ w_enc[:, start : start + 8192]
        block = pre.kthvalue(rank, dim=0).values.clamp_min(1e-3)
        threshold[start : start + 8192] = block
        f_sum += (pre * (pre > block)).sum(1)
    # decoder rows of one norm, sized so that a typical token's reconstruction has the typical
    # size of y around its mean
    scale = float((y - y.mean(0)).norm(dim=1).mean()) / max(float(f_sum.mean()), 1e-6)
    w_dec = torch.randn(width, d_out, generator=generator) if d_out != d_in else directions.clone()
    w_dec *= scale / w_dec.norm(dim=1, keepdim=True)  # so ‖Σ f_j w_dec_j‖ ≲ ‖y − ȳ‖
    params = {
        "w_enc": w_enc,
        "w_dec": w_dec.contiguous(),
        "b_enc": b_enc,
        "b_dec": y.mean(0),
        "threshold": threshold,
    }
    if affine:
        params["affine_skip_connection"] = torch.linalg.lstsq(
            x, y - y.mean(0)
        ).solution.contiguous()
    folder = root / folder_name(site, layer, width)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(params, str(folder / "params.safetensors"))
    config = {
        "architecture": "jump_relu",
        "model_name": loaded.name if "/" in loaded.name else f"google/{loaded.name}",
        "hf_hook_point_in": hook_in.name,
        "hf_hook_point_out": hook_out.name,
        "width": width,
        "l0": l0,
        "affine_connection": affine,
        "type": "transcoder" if site == "transcoder" else "sae",
        "random": True,
        "seed": seed,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return folder
