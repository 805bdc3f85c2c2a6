"""Engine benchmark (``make bench``): the engine against its peer, in one process, on the same
token ids, each ratio printed beside its target (issue 13).

Cases, each measured engine first and peer right after (a warm-up run, then a timed run, for
each), so that the machine's noise of the moment falls on both:

- resid_post L9, width 262k, bfloat16: engine against the peer (target 3x); the process's peak
  RSS over loading that SAE and running it, against model + SAE weights + 1 GB;
- resid_post L12, width 16k, bfloat16 (target 2x);
- four SAEs, the issue's set (resid_post 262k L9, attn_out 16k L5, mlp_out 16k L12, affine
  transcoder 16k L15), bfloat16: one engine run against four peer passes, one per SAE (3x);
- resid_post L12, width 16k, float32 (target 1.5x), and the naive pipeline: one prompt at a
  time, the full float32 forward with ``output_hidden_states`` and the LM head, a dense encode
  copied to the host.

The peer is ``bench/peer.py``: nnsight + SAELens as their documentation has a user write it, on
its own copy of the model (nnsight instruments the modules of the model it wraps). Also measured:
each engine case's MFU (its FLOPs per token from ``traces.run_plan.plan_run`` over the best of
two measurements of the matmul peak of its dtype, ``traces.engine.peak``; target 60 %); whether
float32 top-k index sets equal a dense float32 computation's (the naive pipeline's; target every
token) and bfloat16's top-10 agreement with float32 (target 97 %); bytes stored per token.

The SAEs are Gemma Scope 2 folders under ``--sae-root`` (default ``var/bench/gs2``); missing ones
are generated (``traces.engine.random_sae``: random encoders, thresholds calibrated on the
passages), a minute or two each on a 2-core CPU and up to 6 for the 262k one. The prompts are
the held-out passages, ``traces/engine/passages.jsonl``; ``--quick`` takes 12 of them. Results
go to stdout and to ``var/bench/engine-<time>.json``. Run: ``make bench`` (``BENCH_ARGS=--quick``
for a smoke check).
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scopeweb.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from django.conf import settings  # noqa: E402
from safetensors.numpy import save as save_safetensors  # noqa: E402

from scopeweb_tracer.hooks import WIDTH_NAMES, hook_width  # noqa: E402
from scopeweb_tracer.sae import LoadedSae, load_sae  # noqa: E402
from traces.bundle.chunks import encode_chunk  # noqa: E402
from traces.engine.analyze import ChunkResult, analyze_chunk_multi  # noqa: E402
from traces.engine.capture import batches_by_length, capture_hooks, make_batch  # noqa: E402
from traces.engine.model import LoadedModel, load_default_model, pick_device  # noqa: E402
from traces.engine.passages import MAX_TOKENS, PASSAGES, passage_ids, passage_texts  # noqa: E402
from traces.engine.peak import measure_matmul_peak  # noqa: E402
from traces.engine.random_sae import folder_name, write_random_sae  # noqa: E402
from traces.run_plan import ModelShape, plan_run, sae_shape_from_folder  # noqa: E402
from traces.services.saes import shipped_sae_folders  # noqa: E402

if TYPE_CHECKING:
    from peer import PeerResult  # imported when first used: nnsight and SAELens add ~0.1 GB

TOP_K = 32
CHUNK = 32  # prompts per analyze call, as runs store chunks
BATCH_TOKENS = 8192  # analyze_chunk_multi's max_batch_tokens (its default)
QUICK_PROMPTS = 12
GB = 1e9
# The peer's batch holds at most this much of one dense [batch, tokens, d_sae] tensor. SAELens's
# JumpReLU encode keeps four such tensors alive at once (pre-activations, ReLU, float mask,
# product), so a 262k SAE at peer.py's 8 rows of 1,000 tokens held ~19 GB and was OOM-killed on
# the project's 24 GB machine; the budget gives it 2 rows there and leaves 16k SAEs at 8.
PEER_DENSE_BYTES = 2**30


@dataclass(frozen=True)
class SaeSpec:
    site: str
    layer: int
    width: int
    affine: bool = False

    @property
    def label(self) -> str:
        kind = "transcoder (affine)" if self.affine else self.site
        return f"{kind} L{self.layer} {WIDTH_NAMES.get(self.width, self.width)}"


SAE_16K = SaeSpec("resid_post", 12, 16384)
SAE_262K = SaeSpec("resid_post", 9, 262144)
FOUR_SAES = (  # the done-when set
    SAE_262K,
    SaeSpec("attn_out", 5, 16384),
    SaeSpec("mlp_out", 12, 16384),
    SaeSpec("transcoder", 15, 16384, affine=True),
)
TARGETS = {
    "16k bfloat16": 2.0,
    "16k float32": 1.5,
    "262k bfloat16": 3.0,
    "four SAEs bfloat16": 3.0,
    "mfu": 0.60,
    "fidelity_float32": 1.0,
    "bfloat16_top10": 0.97,
    "rss_slack_bytes": 1.0 * GB,
}


# --- machine and memory -------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def card(device: torch.device) -> str | None:
    if device.type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device)
    return f"{props.name}, {props.total_memory / 2**30:.0f} GiB"


def peak_rss() -> int:
    """The process's peak resident set since start or the last ``reset_peak_rss``, bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def reset_peak_rss() -> bool:
    """Restart the peak RSS from the current RSS (Linux: ``clear_refs`` 5); False if it cannot,
    so the figure then covers the whole process so far."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def current_rss() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _rss_with_libraries() -> int:
    """The RSS once the libraries every run loads are in (transformers' Gemma 3 included)."""
    importlib.import_module("transformers.models.gemma3.modeling_gemma3")
    return current_rss()


def weight_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- the measured pipelines ---------------------------------------------------------------


@dataclass
class EngineRun:
    seconds: float
    tokens: int
    chunks: list[list[ChunkResult]]  # [chunk][sae]

    def results(self, which: int) -> list[ChunkResult]:
        return [chunk[which] for chunk in self.chunks]


def engine_pass(loaded: LoadedModel, saes: Sequence[LoadedSae], texts: list[str]) -> EngineRun:
    """The engine as a run calls it: chunks of ``CHUNK`` prompts, every SAE in one pass."""
    chunks = []
    _sync(loaded.device)
    started = time.perf_counter()
    for at in range(0, len(texts), CHUNK):
        part = list(enumerate(texts[at : at + CHUNK], start=at))
        chunks.append(
            analyze_chunk_multi(
                loaded,
                saes,
                part,
                top_k=TOP_K,
                capture_limit=MAX_TOKENS,
                max_batch_tokens=BATCH_TOKENS,
            )
        )
    _sync(loaded.device)
    seconds = time.perf_counter() - started
    return EngineRun(seconds, sum(c[0].tokens for c in chunks), chunks)


def naive(
    loaded: LoadedModel, sae: LoadedSae, sequences: list[list[int]]
) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
    """The pipeline a first attempt writes: whole model with the LM head, all hidden states,
    a dense SAE encode copied to the host; one prompt at a time, float32. Returns the seconds
    and each sequence's dense top-``TOP_K`` indices and values (a float32 reference)."""
    layer = int(sae.config.module_path.rsplit(".", 1)[-1]) + 1  # hidden_states[0] = embeddings
    top_idx, top_val = [], []
    _sync(loaded.device)
    started = time.perf_counter()
    with torch.inference_mode():
        for seq in sequences:
            ids = torch.tensor([seq], device=loaded.device)
            out = loaded.model(input_ids=ids, output_hidden_states=True)
            x = out.hidden_states[layer][0]
            dense = sae.sae.encode(x.float()).cpu().numpy()  # [tokens, d_sae]
            _ = out.logits.cpu()
            order = np.argsort(-dense, axis=1)[:, :TOP_K]
            top_idx.append(order)
            top_val.append(np.take_along_axis(dense, order, axis=1))
    seconds = time.perf_counter() - started
    return seconds, top_idx, top_val


def measured(run: Callable[[], Any]) -> Any:
    """``run()`` once to warm up, then again; the second's result (each run times itself)."""
    run()
    return run()


# --- agreement ----------------------------------------------------------------------------


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


def active(indices: list[np.ndarray], values: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """Boolean masks of the active top-k slots: value above 0, or index not -1 (the engine)."""
    if values is None:
        return [i >= 0 for i in indices]
    return [v > 0 for v in values]


def same_sets(
    reference: list[np.ndarray],
    ref_active: list[np.ndarray],
    other: list[np.ndarray],
    other_active: list[np.ndarray],
) -> dict[str, float]:
    """Per token (BOS left out): whether the two top-k sets of active latents are the same."""
    same, tokens = 0, 0
    for ref, ref_on, oth, oth_on in zip(reference, ref_active, other, other_active, strict=True):
        for a, a_on, b, b_on in zip(ref[1:], ref_on[1:], oth[1:], oth_on[1:], strict=True):
            tokens += 1
            same += set(a[a_on].tolist()) == set(b[b_on].tolist())
    return {"share": same / max(tokens, 1), "tokens": tokens, "differ": tokens - same}


def per_trace(results: list[ChunkResult], width: int = TOP_K) -> list[np.ndarray]:
    """Each prompt's stored top-k indices, in prompt order ([tokens, width], -1 inactive)."""
    found = {}
    for result in results:
        for trace in result.traces:
            found[trace.key] = result.arrays["top_idx"][trace.row : trace.row + trace.tokens]
    return [found[key][:, :width] for key in sorted(found)]


def dense_on_same_activations(
    loaded: LoadedModel, sae: LoadedSae, sequences: list[list[int]], engine_top: list[np.ndarray]
) -> dict[str, float]:
    """The engine's stored top-k sets against a dense float32 encode of the very activations it
    read: the forward rerun in the engine's chunks and length batches, then ``sae.encode``."""
    hook = sae.config.hook_in
    dense_idx, dense_val = [np.empty(0)] * len(sequences), [np.empty(0)] * len(sequences)
    with torch.inference_mode():
        for at in range(0, len(sequences), CHUNK):
            part = sequences[at : at + CHUNK]
            for group in batches_by_length([len(s) for s in part], max_tokens=BATCH_TOKENS):
                batch = make_batch([part[i] for i in group], 0, loaded.device)
                x = capture_hooks(loaded.model, [hook], batch)[hook.name]  # [rows, width, d_in]
                for row, i in enumerate(group):
                    values, indices = sae.sae.encode(x[row, : len(part[i])].float()).topk(TOP_K)
                    dense_idx[at + i] = indices.cpu().numpy()
                    dense_val[at + i] = values.cpu().numpy()
    return same_sets(dense_idx, active(dense_idx, dense_val), engine_top, active(engine_top))


def near_ties(results: list[ChunkResult]) -> float:
    """The share of tokens (BOS left out) with 11 active latents or more whose 10th and 11th
    strongest differ by less than bfloat16's rounding step (2^-8 of the 10th): tokens whose
    top-10 a bfloat16 run may reorder."""
    near, tokens = 0, 0
    for result in results:
        for trace in result.traces:
            val = result.arrays["top_val"][trace.row + 1 : trace.row + trace.tokens]
            val = val.astype(np.float32)
            deep = val[:, 10] > 0
            near += int((val[deep, 9] - val[deep, 10] < val[deep, 9] / 256).sum())
            tokens += int(deep.sum())
    return near / max(tokens, 1)


def check_same_ids(run: EngineRun, sequences: list[list[int]]) -> None:
    """The engine tokenised the texts into exactly the peer's token ids."""
    for result in run.results(0):
        for trace in result.traces:
            ids = result.arrays["token_ids"][trace.row : trace.row + trace.tokens]
            assert ids.tolist() == sequences[trace.key], f"prompt {trace.key}: other token ids"


def stored_bytes(results: list[ChunkResult]) -> dict[str, float]:
    tokens = sum(r.tokens for r in results)
    parquet = sum(len(b) for r in results for b in encode_chunk(r.arrays).values())
    dense = sum(len(save_safetensors(dict(r.arrays))) for r in results)
    return {"bundle": parquet / tokens, "dense_safetensors": dense / tokens}


# --- the benchmark ------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.root: Path = args.sae_root
        self.prompts_path: Path = args.prompts
        self.device = pick_device()
        texts = passage_texts(self.prompts_path)
        self.pick = list(range(len(texts)))
        if args.quick:
            step = max(1, len(texts) // QUICK_PROMPTS)
            self.pick = self.pick[::step][:QUICK_PROMPTS]
        self.texts = [texts[i] for i in self.pick]
        self.sequences: list[list[int]] = []
        self.peaks: dict[str, float] = {}
        self.model_shape: ModelShape | None = None
        self.report: dict[str, Any] = {}

    # setup

    def measure_peaks(self) -> None:
        """The best so far of each dtype's matmul peak. On the CPU at n = 4096: n = 2048 (the
        planner's default) measured 15-20 % lower on the project's machine, which would
        flatter the MFU."""
        n = 4096 if self.device.type == "cpu" else None
        for name in ("float32", "bfloat16"):
            best = measure_matmul_peak(getattr(torch, name), self.device, n=n)
            self.peaks[name] = max(best, self.peaks.get(name, 0.0))

    def folder(self, spec: SaeSpec) -> Path:
        return self.root / folder_name(spec.site, spec.layer, spec.width)

    def ensure_saes(self, specs: Sequence[SaeSpec]) -> None:
        missing = [
            s for s in dict.fromkeys(specs) if not (self.folder(s) / "config.json").is_file()
        ]
        if not missing:
            return
        loaded = load_default_model(dtype=torch.float32)
        sequences = passage_ids(loaded, self.prompts_path)  # all passages, --quick or not
        for spec in missing:
            print(f"generating a random {spec.label} SAE in {self.folder(spec)}", flush=True)
            started = time.perf_counter()
            write_random_sae(
                loaded,
                self.root,
                site=spec.site,
                layer=spec.layer,
                width=spec.width,
                sequences=sequences,
                affine=spec.affine,
            )
            print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)
        del loaded
        _free()

    def load_model(self, dtype: torch.dtype) -> LoadedModel:
        loaded = load_default_model(dtype=dtype)
        if self.model_shape is None:
            self.model_shape = ModelShape.from_config(loaded.model.config.to_dict())
            sequences = passage_ids(loaded, self.prompts_path)
            self.sequences = [sequences[i] for i in self.pick]
        return loaded

    def load_sae(self, loaded: LoadedModel, spec: SaeSpec | Path) -> LoadedSae:
        folder = spec if isinstance(spec, Path) else self.folder(spec)
        return load_sae(
            str(folder),
            n_layers=loaded.n_layers,
            widths=lambda hook: hook_width(loaded.text_config, hook),
            device=loaded.device,
            dtype=loaded.dtype,
        )

    # figures

    def mfu(self, run: EngineRun, specs: Sequence[SaeSpec], dtype: str) -> dict[str, float]:
        assert self.model_shape is not None
        plan = plan_run(
            self.model_shape,
            [sae_shape_from_folder(self.folder(s)) for s in specs],
            token_counts=[len(s) for s in self.sequences],
            dtype=dtype,
            top_k=TOP_K,
            peak_gflops=self.peaks[dtype],
            memory_available=None,
        )
        achieved = plan.total_flops / run.seconds / 1e9
        return {
            "gflop_per_token": plan.flops_per_token / 1e9,
            "gflops": achieved,
            "mfu": achieved / self.peaks[dtype],
        }

    def case(
        self,
        name: str,
        engine: EngineRun,
        peer: PeerResult,
        specs: Sequence[SaeSpec],
        dtype: str,
    ) -> dict[str, Any]:
        assert engine.tokens == peer.tokens, (engine.tokens, peer.tokens)
        figures = {
            "saes": [s.label for s in specs],
            "dtype": dtype,
            "tokens": engine.tokens,
            "engine_s": engine.seconds,
            "peer_s": peer.seconds,
            "engine_tokens_per_s": engine.tokens / engine.seconds,
            "peer_tokens_per_s": peer.tokens_per_s,
            "speedup": peer.seconds / engine.seconds,
            "target": TARGETS[name],
            "load_average": os.getloadavg(),
            **self.mfu(engine, specs, dtype),
        }
        self.report.setdefault("cases", {})[name] = figures
        print(
            f"  {name}: engine {figures['engine_tokens_per_s']:.0f} tokens/s, peer "
            f"{figures['peer_tokens_per_s']:.0f}: {figures['speedup']:.2f}x "
            f"(target {TARGETS[name]:.1f}x); MFU {figures['mfu']:.0%}",
            flush=True,
        )
        return figures

    def peer(self, loaded: LoadedModel, specs: Sequence[SaeSpec]) -> PeerResult:
        """One peer script per SAE, each with the largest batch (up to peer.py's) whose dense
        encode fits; tokens counted once, seconds summed."""
        from peer import BATCH as PEER_BATCH
        from peer import PeerResult, peer_run

        longest = max(len(s) for s in self.sequences)
        parts: list[PeerResult] = []
        for spec in specs:
            dense = longest * spec.width * loaded.dtype.itemsize  # one row's [tokens, d_sae]
            batch = max(1, min(PEER_BATCH, PEER_DENSE_BYTES // dense))
            dtype = str(loaded.dtype).removeprefix("torch.")
            self.report.setdefault("peer_batch", {})[f"{spec.label} {dtype}"] = batch
            run = functools.partial(
                peer_run,
                loaded.model,
                [self.folder(spec)],
                self.sequences,
                dtype=loaded.dtype,
                top_k=TOP_K,
                batch_size=batch,
            )
            parts.append(measured(run))
        seconds = sum(p.seconds for p in parts)
        return PeerResult(
            tokens=parts[0].tokens,
            seconds=seconds,
            tokens_per_s=parts[0].tokens / seconds,
            top_idx=[p.top_idx[0] for p in parts],
            top_val=[p.top_val[0] for p in parts],
        )

    def engine(self, loaded: LoadedModel, saes: Sequence[LoadedSae]) -> EngineRun:
        run: EngineRun = measured(lambda: engine_pass(loaded, saes, self.texts))
        check_same_ids(run, self.sequences)
        return run

    def trained_sae_agreement(self, engine32: LoadedModel) -> dict[str, Any]:
        """bfloat16's top-10 agreement with float32 on the shipped trained SAE (4k), beside the
        random ones': untimed, one engine pass per dtype."""
        folder = shipped_sae_folders()[0]
        tops, ties = [], 0.0
        for loaded in (engine32, load_default_model(dtype=torch.bfloat16)):
            sae = self.load_sae(loaded, folder)
            results = engine_pass(loaded, [sae], self.texts).results(0)
            tops.append(per_trace(results, 10))
            ties = ties or near_ties(results)
        return {
            "sae": str(folder.relative_to(ROOT)) if folder.is_relative_to(ROOT) else str(folder),
            "bfloat16_top10_vs_float32": agreement(tops[0], tops[1]),
            "top10_near_ties": ties,
        }

    # the run

    def run(self) -> dict[str, Any]:
        r = self.report
        r |= {
            "cpu": cpu_model(),
            "threads": torch.get_num_threads(),
            "card": card(self.device),
            "torch": torch.__version__,
            "prompts": len(self.texts),
            "prompts_file": str(self.prompts_path),
            "rss_at_start_bytes": _rss_with_libraries(),
            "sae_root": str(self.root),
            "load_average_before": os.getloadavg(),
        }
        print(f"CPU {r['cpu']}, torch.get_num_threads() = {r['threads']}, torch {r['torch']}")
        if r["card"]:
            print(f"CUDA card: {r['card']}")
        self.measure_peaks()
        print(
            f"RSS with the libraries {r['rss_at_start_bytes'] / GB:.2f} GB; matmul peak: float32 "
            f"{self.peaks['float32']:.0f} GFLOP/s, "
            f"bfloat16 {self.peaks['bfloat16']:.0f} GFLOP/s",
            flush=True,
        )
        self.ensure_saes([SAE_16K, *FOUR_SAES])
        _free()

        # 262k first: the peak RSS is then the engine's alone (no peer model or run yet).
        engine16 = self.load_model(torch.bfloat16)
        tokens = sum(len(s) for s in self.sequences)
        r["tokens"] = tokens
        print(f"{len(self.texts)} prompts, {tokens:,} tokens, top-{TOP_K}", flush=True)
        print("bfloat16 cases", flush=True)
        resettable = reset_peak_rss()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        baseline = current_rss()
        sae262 = self.load_sae(engine16, SAE_262K)
        load_peak = peak_rss()
        after_load = current_rss()
        reset_peak_rss()
        run262 = self.engine(engine16, [sae262])
        run_peak = peak_rss()
        model_b, sae_b = weight_bytes(engine16.model), weight_bytes(sae262.sae)
        r["memory_262k"] = {
            "peak_rss_bytes": max(load_peak, run_peak),
            "peak_rss_load_bytes": load_peak,
            "peak_rss_run_bytes": run_peak,
            "rss_at_start_bytes": r["rss_at_start_bytes"],
            "rss_before_sae_bytes": baseline,
            "rss_after_sae_load_bytes": after_load,
            "model_weight_bytes": model_b,
            "sae_weight_bytes": sae_b,
            "sae_file_bytes": (self.folder(SAE_262K) / "params.safetensors").stat().st_size,
            "target_bytes": model_b + sae_b + TARGETS["rss_slack_bytes"],
            "peak_reset_available": resettable,
            "cuda_peak_allocated_bytes": (
                torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else None
            ),
        }
        peer16 = self.load_model(torch.bfloat16)
        self.case("262k bfloat16", run262, self.peer(peer16, [SAE_262K]), [SAE_262K], "bfloat16")
        del run262

        sae16 = self.load_sae(engine16, SAE_16K)
        run16 = self.engine(engine16, [sae16])
        self.case("16k bfloat16", run16, self.peer(peer16, [SAE_16K]), [SAE_16K], "bfloat16")
        top10_bf16 = per_trace(run16.results(0), 10)
        del run16, sae16

        four = [sae262, *(self.load_sae(engine16, s) for s in FOUR_SAES[1:])]
        run_four = self.engine(engine16, four)
        self.case(
            "four SAEs bfloat16", run_four, self.peer(peer16, FOUR_SAES), FOUR_SAES, "bfloat16"
        )
        del run_four, four, sae262, engine16, peer16
        _free()
        self.measure_peaks()

        print("float32 case", flush=True)
        engine32, peer32 = self.load_model(torch.float32), self.load_model(torch.float32)
        r["model_load_cached_s"] = engine32.load_seconds
        sae16 = self.load_sae(engine32, SAE_16K)
        run32 = self.engine(engine32, [sae16])
        peer_result = self.peer(peer32, [SAE_16K])
        self.case("16k float32", run32, peer_result, [SAE_16K], "float32")
        naive_s, dense_idx, dense_val = measured(lambda: naive(engine32, sae16, self.sequences))
        r["naive"] = {
            "tokens_per_s": tokens / naive_s,
            "engine_speedup": naive_s / run32.seconds,
        }
        print(
            f"  naive: {tokens / naive_s:.0f} tokens/s, engine {naive_s / run32.seconds:.2f}x",
            flush=True,
        )
        engine_top = per_trace(run32.results(0))
        dense_on = active(dense_idx, dense_val)
        peer_idx, peer_val = peer_result.top_idx[0], peer_result.top_val[0]
        r["fidelity"] = {
            "float32_vs_dense": same_sets(dense_idx, dense_on, engine_top, active(engine_top)),
            "peer_float32_vs_dense": same_sets(
                dense_idx, dense_on, peer_idx, active(peer_idx, peer_val)
            ),
            "float32_vs_dense_same_activations": dense_on_same_activations(
                engine32, sae16, self.sequences, engine_top
            ),
            "bfloat16_top10_vs_float32": agreement([t[:, :10] for t in engine_top], top10_bf16),
            "top10_near_ties": near_ties(run32.results(0)),
        }
        r["bytes_per_token"] = stored_bytes(run32.results(0))
        del run32, peer_result, peer32
        r["fidelity"]["trained_sae"] = self.trained_sae_agreement(engine32)
        self.measure_peaks()  # best of the two measurements: the MFU is not flattered by noise
        for figures in r["cases"].values():
            figures["mfu"] = figures["gflops"] / self.peaks[figures["dtype"]]
        r["peak_gflops"] = self.peaks
        r["load_average_after"] = os.getloadavg()
        return r


# --- output -------------------------------------------------------------------------------


def table(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(measure, value, target, met) rows."""

    def mark(ok: bool) -> str:
        return "yes" if ok else "NO"

    rows = []
    cases = r["cases"]
    for name in ("16k bfloat16", "16k float32", "262k bfloat16", "four SAEs bfloat16"):
        c = cases[name]
        label = (
            "4 SAEs, 1 engine run vs 4 peer passes, bf16"
            if name.startswith("four")
            else f"resid_post {name.split()[0]}, {name.split()[1]}, engine vs peer"
        )
        rows.append(
            (
                f"{label} ({c['engine_tokens_per_s']:.0f} / {c['peer_tokens_per_s']:.0f} tok/s)",
                f"{c['speedup']:.2f}x",
                f">= {c['target']:.1f}x",
                mark(c["speedup"] >= c["target"]),
            )
        )
    naive_row = r["naive"]
    rows.append(
        (
            f"resid_post 16k, float32, engine vs naive ({naive_row['tokens_per_s']:.0f} tok/s)",
            f"{naive_row['engine_speedup']:.2f}x",
            "-",
            "",
        )
    )
    for name in ("16k bfloat16", "16k float32", "262k bfloat16", "four SAEs bfloat16"):
        c = cases[name]
        rows.append(
            (
                f"MFU {name} ({c['gflops']:.0f} of {r['peak_gflops'][c['dtype']]:.0f} GFLOP/s)",
                f"{c['mfu']:.0%}",
                f">= {TARGETS['mfu']:.0%}",
                mark(c["mfu"] >= TARGETS["mfu"]),
            )
        )
    fidelity = r["fidelity"]
    for key, what in (
        ("float32_vs_dense", "the naive pipeline's dense float32"),
        ("float32_vs_dense_same_activations", "dense float32 on the same activations"),
    ):
        fid = fidelity[key]
        rows.append(
            (
                f"float32 top-{TOP_K} sets = {what} ({fid['differ']} of {fid['tokens']} differ)",
                f"{fid['share']:.3%}",
                "100%",
                mark(fid["share"] >= TARGETS["fidelity_float32"]),
            )
        )
    for agree, what in (
        (fidelity["bfloat16_top10_vs_float32"], "random resid_post 16k"),
        (fidelity["trained_sae"]["bfloat16_top10_vs_float32"], "shipped trained 4k"),
    ):
        rows.append(
            (
                f"bfloat16 top-10 agreement with float32, {what} (p5 {agree['p5']:.0%})",
                f"{agree['mean']:.1%}",
                f">= {TARGETS['bfloat16_top10']:.0%}",
                mark(agree["mean"] >= TARGETS["bfloat16_top10"]),
            )
        )
    mem = r["memory_262k"]
    rows.append(
        (
            f"peak RSS, 262k bf16 (model {mem['model_weight_bytes'] / GB:.2f} + SAE "
            f"{mem['sae_weight_bytes'] / GB:.2f} + 1 GB)",
            f"{mem['peak_rss_bytes'] / GB:.2f} GB",
            f"<= {mem['target_bytes'] / GB:.2f} GB",
            mark(mem["peak_rss_bytes"] <= mem["target_bytes"]),
        )
    )
    return rows


def show(r: dict[str, Any]) -> None:
    print()
    print(f"CPU {r['cpu']}, {r['threads']} torch threads" + (f", {r['card']}" if r["card"] else ""))
    print(
        f"{r['prompts']} prompts, {r['tokens']:,} tokens, top-{TOP_K}; load average "
        f"{'/'.join(f'{x:.2f}' for x in r['load_average_before'])} before, "
        f"{'/'.join(f'{x:.2f}' for x in r['load_average_after'])} after"
    )
    rows = table(r)
    width = max(len(row[0]) for row in rows)
    print(f"{'measure':<{width}}  {'value':>10}  {'target':>11}  met")
    for measure, value, target, met in rows:
        print(f"{measure:<{width}}  {value:>10}  {target:>11}  {met}")
    mem = r["memory_262k"]
    print(
        f"262k peak RSS: {mem['peak_rss_load_bytes'] / GB:.2f} GB loading the SAE (its file: "
        f"{mem['sae_file_bytes'] / GB:.2f} GB), {mem['peak_rss_run_bytes'] / GB:.2f} GB running "
        f"it; RSS with the libraries {mem['rss_at_start_bytes'] / GB:.2f} GB, with the model "
        f"{mem['rss_before_sae_bytes'] / GB:.2f} GB, with the SAE "
        f"{mem['rss_after_sae_load_bytes'] / GB:.2f} GB"
        + ("" if mem["peak_reset_available"] else " (peak not resettable: whole process)")
    )
    if mem["cuda_peak_allocated_bytes"] is not None:
        print(f"262k CUDA peak allocated: {mem['cuda_peak_allocated_bytes'] / GB:.2f} GB")
    fidelity = r["fidelity"]
    peer = fidelity["peer_float32_vs_dense"]
    print(f"peer float32 top-{TOP_K} sets = the naive pipeline's: {peer['share']:.3%}")
    print(
        "tokens whose 10th and 11th latents are within bfloat16's rounding (2^-8): random 16k "
        f"{fidelity['top10_near_ties']:.1%}, trained 4k "
        f"{fidelity['trained_sae']['top10_near_ties']:.1%}"
    )
    print(f"peer batch (prompts a trace): {r['peer_batch']}")
    size = r["bytes_per_token"]
    print(
        f"stored: {size['bundle']:.1f} bytes per token at top-{TOP_K} "
        f"(dense safetensors layout: {size['dense_safetensors']:.0f}); model load from the "
        f"cache {r['model_load_cached_s']:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_PROMPTS} prompts only")
    parser.add_argument("--prompts", type=Path, default=PASSAGES)
    parser.add_argument(
        "--sae-root",
        type=Path,
        default=Path(settings.DATA_DIR) / "bench" / "gs2",
        help="Gemma Scope 2 folders (site/layer_..._width_...); missing ones are generated",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    report = Bench(args).run()
    report["wall_s"] = time.perf_counter() - started
    show(report)
    out = Path(settings.DATA_DIR) / "bench" / f"engine-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {out} ({report['wall_s'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
