"""Engine benchmark (``make bench``): everything measured in this one process, on the same prompts.

- the engine's tokens/s in float32 and bfloat16 (model run only to the SAE's hook, batches by
  length, top-k kept), against a naive pipeline: one prompt at a time, the full float32 forward
  with ``output_hidden_states`` and the LM head, and a dense SAE encode copied to the host;
- this machine's measured float32 and bfloat16 matrix-multiply peak, and the engine's model-FLOP
  utilisation against the peak of the dtype it ran in;
- top-10 agreement of each dtype with a float32 computation (share of each token's ten strongest
  latents that match);
- model load time from the cache against the first, dequantising, load (into a fresh cache);
- bytes stored per captured token in the bundle format, with the dense safetensors layout
  this project used before as a reference.

The prompts (``bench/prompts.jsonl``) are passages from the Python 3.11 HOWTOs and the fortunes
package's literature file, none from a test prompt set. Results go to stdout and to
``var/bench/engine-<time>.json``. Run: ``make bench`` (``BENCH_ARGS=--skip-dequantise`` to
skip the ~45 s dequantising load).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scopeweb.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from django.conf import settings  # noqa: E402
from safetensors.numpy import save as save_safetensors  # noqa: E402

from traces.bundle.chunks import encode_chunk  # noqa: E402
from traces.engine.analyze import analyze_chunk  # noqa: E402
from traces.engine.model import LoadedModel, load_default_model  # noqa: E402
from traces.engine.model_files import ModelFiles, default_model_files  # noqa: E402
from traces.engine.sae import LoadedSae, load_sae  # noqa: E402
from traces.services.saes import shipped_sae_folders  # noqa: E402

TOP_K = 32
CHUNK = 32  # prompts per stored chunk, as runs do


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int = 4096, reps: int = 5) -> float:
    """Best sustained GFLOP/s of an n×n matmul."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    best = 0.0
    for _ in range(reps):
        _sync(device)
        started = time.perf_counter()
        a @ b
        _sync(device)
        best = max(best, 2 * n**3 / (time.perf_counter() - started) / 1e9)
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flops_per_token(loaded: LoadedModel, sae: LoadedSae, mean_len: float) -> float:
    """Matmul FLOPs of the engine per token: the layers up to the hook, attention scores over
    the (causal, windowed) context, and the SAE's encode and decode."""
    cfg = loaded.text_config
    d, heads, kv = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", d // heads)
    layers = int(sae.config.module_path.rsplit(".", 1)[-1]) + 1
    projections = d * head_dim * (2 * heads + 2 * kv)  # q, o, k, v
    mlp = 3 * d * cfg.intermediate_size
    window = min(mean_len / 2, getattr(cfg, "sliding_window", None) or mean_len)
    attention = 2 * 2 * heads * head_dim * window  # QKᵀ and AV over the average context
    sae_flops = 2 * 2 * sae.sae.d_in * sae.sae.d_sae
    flops: float = layers * (2 * (projections + mlp) + attention) + sae_flops  # cfg is untyped
    return flops


def naive(loaded: LoadedModel, sae: LoadedSae, prompts: list[str]) -> tuple[float, list[Any]]:
    """The pipeline a first attempt writes: whole model with the LM head, all hidden states,
    a dense SAE encode copied to the host; one prompt at a time, float32."""
    layer = int(sae.config.module_path.rsplit(".", 1)[-1]) + 1  # hidden_states[0] = embeddings
    tops, tokens = [], 0
    started = time.perf_counter()
    with torch.inference_mode():
        for text in prompts:
            ids = torch.tensor([loaded.tokenizer.encode(text).ids[:1000]], device=loaded.device)
            out = loaded.model(input_ids=ids, output_hidden_states=True)
            x = out.hidden_states[layer][0]
            dense = sae.sae.encode(x.float()).cpu().numpy()  # [tokens, d_sae]
            _ = out.logits.cpu()
            tops.append(np.argsort(-dense, axis=1)[:, :10])
            tokens += ids.shape[1]
    return tokens / (time.perf_counter() - started), tops


def engine(loaded: LoadedModel, sae: LoadedSae, prompts: list[str]) -> tuple[float, list[Any]]:
    analyze_chunk(loaded, sae, list(enumerate(prompts[:2])), top_k=TOP_K, capture_limit=1000)
    results = []
    tokens = 0
    _sync(loaded.device)
    started = time.perf_counter()
    for at in range(0, len(prompts), CHUNK):
        part = list(enumerate(prompts[at : at + CHUNK], start=at))
        result = analyze_chunk(loaded, sae, part, top_k=TOP_K, capture_limit=1000)
        results.append(result)
        tokens += result.tokens
    _sync(loaded.device)
    return tokens / (time.perf_counter() - started), results


def agreement(reference: list[np.ndarray], other: list[np.ndarray]) -> dict[str, float]:
    """Per token (BOS left out): the share of the reference's top-10 latents in the other's."""
    shares = []
    for ref, oth in zip(reference, other, strict=True):
        for a, b in zip(ref[1:], oth[1:], strict=True):
            a, b = a[a >= 0][:10], b[b >= 0][:10]
            if len(a):
                shares.append(len(np.intersect1d(a, b)) / len(a))
    values = np.array(shares)
    return {
        "mean": float(values.mean()),
        "p5": float(np.percentile(values, 5)),
        "all_ten": float((values == 1).mean()),
    }


def per_trace_top10(results: list[Any]) -> list[np.ndarray]:
    out = []
    for result in results:
        for trace in result.traces:
            out.append(result.arrays["top_idx"][trace.row : trace.row + trace.tokens, :10])
    return out


def stored_bytes(results: list[Any]) -> tuple[float, float]:
    tokens = sum(r.tokens for r in results)
    parquet = sum(len(b) for r in results for b in encode_chunk(r.arrays).values())
    dense = sum(len(save_safetensors(dict(r.arrays))) for r in results)
    return parquet / tokens, dense / tokens


def load_times(skip_dequantise: bool) -> dict[str, float | None]:
    started = time.perf_counter()
    load_default_model()
    cached = time.perf_counter() - started
    first = None
    if not skip_dequantise:
        files = default_model_files()
        with tempfile.TemporaryDirectory(dir=settings.DATA_DIR) as scratch:
            fresh = ModelFiles(root=Path(scratch), source=files.gguf())
            started = time.perf_counter()
            load_default_model(files=fresh)
            first = time.perf_counter() - started
    return {"cached_s": cached, "first_dequantising_s": first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-dequantise", action="store_true")
    parser.add_argument("--prompts", type=Path, default=ROOT / "bench" / "prompts.jsonl")
    args = parser.parse_args()
    prompts = [json.loads(line)["prompt"] for line in args.prompts.read_text().splitlines()]
    folder = shipped_sae_folders()[0]
    report: dict[str, Any] = {"prompts": len(prompts), "torch": torch.__version__}

    report["load"] = load_times(args.skip_dequantise)
    fp32 = load_default_model(dtype=torch.float32)
    device = fp32.device
    report["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report["threads"] = torch.get_num_threads()
    report["peak_gflops"] = {
        "float32": matmul_peak(torch.float32, device),
        "bfloat16": matmul_peak(torch.bfloat16, device),
    }
    sae = load_sae(str(folder), d_model=fp32.d_model, n_layers=fp32.n_layers, device=device)

    naive_rate, naive_top = naive(fp32, sae, prompts)
    rates, tops, results = {}, {}, {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        loaded = fp32 if dtype == torch.float32 else load_default_model(dtype=dtype)
        rates[name], results[name] = engine(loaded, sae, prompts)
        tops[name] = per_trace_top10(results[name])
    tokens = sum(r.tokens for r in results["float32"])
    mean_len = tokens / len(prompts)
    flops = flops_per_token(fp32, sae, mean_len)
    report |= {
        "tokens": tokens,
        "naive_tokens_per_s": naive_rate,
        "engine_tokens_per_s": rates,
        "speedup_vs_naive": {k: v / naive_rate for k, v in rates.items()},
        "gflop_per_token": flops / 1e9,
        "mfu": {k: v * flops / 1e9 / report["peak_gflops"][k] for k, v in rates.items()},
        "top10_agreement_with_float32": {
            "naive_float32": agreement(naive_top, tops["float32"]),
            "bfloat16": agreement(tops["float32"], tops["bfloat16"]),
        },
    }
    parquet, dense = stored_bytes(results["float32"])
    report["bytes_per_token"] = {"bundle": parquet, "dense_safetensors": dense}
    _print(report)
    out = Path(settings.DATA_DIR) / "bench" / f"engine-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {out}")


def _print(r: dict[str, Any]) -> None:
    load = r["load"]
    first = load["first_dequantising_s"]
    print(f"device {r['device']} ({r['threads']} threads), torch {r['torch']}")
    print(f"{r['prompts']} prompts, {r['tokens']:,} tokens, top-{TOP_K}")
    print(
        f"model load: cached {load['cached_s']:.1f} s"
        + (
            f", first (dequantising) {first:.1f} s, {first / load['cached_s']:.0f}x"
            if first
            else ""
        )
    )
    peak = r["peak_gflops"]
    print(f"matmul peak: float32 {peak['float32']:.0f} GFLOP/s, bfloat16 {peak['bfloat16']:.0f}")
    print(f"naive pipeline: {r['naive_tokens_per_s']:.0f} tokens/s")
    for name, rate in r["engine_tokens_per_s"].items():
        agree = r["top10_agreement_with_float32"].get(name)
        print(
            f"engine {name}: {rate:.0f} tokens/s, {r['speedup_vs_naive'][name]:.1f}x naive, "
            f"MFU {r['mfu'][name]:.0%} of the {name} peak"
            + (f", top-10 agreement {agree['mean']:.1%} (p5 {agree['p5']:.0%})" if agree else "")
        )
    naive_agree = r["top10_agreement_with_float32"]["naive_float32"]["mean"]
    print(f"naive vs engine float32 top-10 agreement: {naive_agree:.1%}")
    size = r["bytes_per_token"]
    print(
        f"stored: {size['bundle']:.1f} bytes per captured token "
        f"(dense safetensors layout: {size['dense_safetensors']:.0f})"
    )


if __name__ == "__main__":
    main()
