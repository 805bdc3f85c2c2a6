"""The cost of a run from its shapes: FLOPs per token, peak memory, expected time and storage
(``plan_run`` → ``RunPlan``). Torch-free.

Units: FLOPs count a multiply-add as two; GB and MB are decimal (10⁹, 10⁶ bytes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from traces.bundle.format import TOKEN_COLUMNS
from traces.run_plan.shapes import ModelShape, PlanError, SaeShape, mean_context

DTYPE_BYTES = {"float32": 4, "bfloat16": 2}
# The engine's share of the measured matmul peak: bench/engine.py measured an MFU of 38 %
# (float32) and 31 % (bfloat16) on the project's CPU machine (README, "Benchmark"). Small
# per-token matmuls, the attention softmax and the top-k keep it well under the peak.
EFFICIENCY = 0.35
# The residual stream's copies alive inside one decoder layer: its input, the normed input, the
# attention output and its post-norm, the residual after attention and its pre-MLP norm.
RESIDUAL_COPIES = 6
# Mirrors scopeweb_tracer.encode's BLOCK_BYTES and MIN_BLOCK (that module imports torch); a test
# pins them against it.
ENCODE_BLOCK_BYTES = 128 * 2**20
ENCODE_MIN_BLOCK = 2048
DECODE_ROWS = 16384  # scopeweb_tracer.encode.DECODE_ROWS
SOFTMAX_BYTES = 4  # eager attention takes the softmax in float32, beside the run-dtype scores
MAX_BATCH_ROWS = 64  # traces.engine.capture.batches_by_length's max_batch
# The features file of a chunk (traces.bundle.chunks.encode_chunk) stores each kept latent as
# feature int32, row int32 and value float16; a test pins this against an encoded chunk.
FEATURE_ROW_BYTES = 4 + 4 + 2


@dataclass(frozen=True)
class SaeCost:
    label: str
    encode_flops: int  # per token
    skip_flops: int  # per token, the affine skip of a transcoder
    decode_flops: int  # per token, the sparse decode of the kept latents
    weight_bytes: int  # in the run dtype
    storage_bytes: int  # its bundle, before compression


@dataclass(frozen=True)
class MemoryTerm:
    name: str
    size: int  # bytes
    detail: str


@dataclass(frozen=True)
class RunPlan:
    dtype: str
    prompts: int
    tokens: int
    deepest_layer: int
    model_flops_per_token: float  # the layers up to and including the deepest hooked one
    saes: tuple[SaeCost, ...]
    memory: tuple[MemoryTerm, ...]
    top_k: int
    peak_gflops: float | None
    memory_available: int | None
    efficiency: float = EFFICIENCY
    notes: tuple[str, ...] = ()  # how the caller chose its inputs, shown after the first line

    @property
    def flops_per_token(self) -> float:
        sae = sum(s.encode_flops + s.skip_flops + s.decode_flops for s in self.saes)
        return self.model_flops_per_token + sae

    @property
    def total_flops(self) -> float:
        return self.flops_per_token * self.tokens

    @property
    def seconds(self) -> float | None:
        """Total FLOPs over the share ``efficiency`` of the measured peak; the model's load
        time is not in it."""
        if not self.peak_gflops:
            return None
        return self.total_flops / (self.peak_gflops * 1e9 * self.efficiency)

    @property
    def peak_memory(self) -> int:
        return sum(term.size for term in self.memory)

    @property
    def storage_bytes(self) -> int:
        """An upper bound: every token keeps top_k latents, nothing compresses."""
        return sum(s.storage_bytes for s in self.saes)

    def refusal(self) -> str | None:
        """Why the run cannot start here, or None when its peak memory fits."""
        if self.memory_available is None or self.peak_memory <= self.memory_available:
            return None
        return (
            f"This run needs about {_gb(self.peak_memory)} of memory at its peak, "
            f"{_gb(self.peak_memory - self.memory_available)} more than the "
            f"{_gb(self.memory_available)} this worker has free."
        )

    def lines(self) -> list[str]:
        """The plan in words, for ``analyze --plan`` and the run form."""
        per_token = self.flops_per_token
        out = [
            f"{self.prompts:,} prompts, {self.tokens:,} tokens, {self.dtype}; the model runs "
            f"layers 0 to {self.deepest_layer}.",
            *self.notes,
            f"FLOPs per token: {_gflop(per_token)} (model {_gflop(self.model_flops_per_token)}, "
            f"{_share(self.model_flops_per_token, per_token)}).",
        ]
        for sae in self.saes:
            skip = f" + affine skip {_gflop(sae.skip_flops)}" if sae.skip_flops else ""
            spent = sae.encode_flops + sae.skip_flops
            out.append(
                f"  {sae.label}: encode {_gflop(sae.encode_flops)}{skip} "
                f"({_share(spent, per_token)})."
            )
        decode = sum(s.decode_flops for s in self.saes)
        out.append(
            f"  Sparse decodes of the top-{self.top_k} latents: {_gflop(decode)} in all "
            f"({_share(decode, per_token)}, negligible)."
        )
        total = self.total_flops / 1e12
        out.append(f"Total: {total:,.3g} TFLOP." if total < 1000 else f"Total: {total:,.0f} TFLOP.")
        if self.seconds is None:
            out.append("Expected time: unknown until a worker has measured its matmul peak.")
        else:
            out.append(
                f"Expected time: {_duration(self.seconds)} at {self.efficiency:.0%} of the "
                f"measured {self.dtype} matmul peak ({self.peak_gflops:,.0f} GFLOP/s)."
            )
        free = f" of {_gb(self.memory_available)} free" if self.memory_available else ""
        out.append(f"Peak memory: {_gb(self.peak_memory)}{free}.")
        out.extend(f"  {t.name}: {_gb(t.size)} ({t.detail})." for t in self.memory)
        out.append(
            f"Storage: at most {_mb(self.storage_bytes)} before compression "
            f"({len(self.saes)} bundle{'s' if len(self.saes) != 1 else ''}, one per SAE; "
            f"an upper bound)."
        )
        return out

    def as_dict(self) -> dict[str, Any]:
        """The figures, for a run's record or the API."""
        return {
            "dtype": self.dtype,
            "prompts": self.prompts,
            "tokens": self.tokens,
            "flops_per_token": self.flops_per_token,
            "model_flops_per_token": self.model_flops_per_token,
            "saes": [asdict(s) for s in self.saes],
            "total_flops": self.total_flops,
            "peak_gflops": self.peak_gflops,
            "efficiency": self.efficiency,
            "seconds": self.seconds,
            "peak_memory": self.peak_memory,
            "memory": {t.name: t.size for t in self.memory},
            "memory_available": self.memory_available,
            "storage_bytes": self.storage_bytes,
            "notes": list(self.notes),
        }


def bundle_bytes_per_token(top_k: int) -> int:
    """A token's bytes in a bundle before compression: its row in the tokens file and top_k
    kept latents in the features file."""
    row = sum(np.dtype(dtype).itemsize for _, dtype in TOKEN_COLUMNS.values())
    return row + top_k * FEATURE_ROW_BYTES


def plan_run(
    model: ModelShape,
    saes: Sequence[SaeShape],
    *,
    token_counts: Sequence[int],
    dtype: str,
    top_k: int,
    batch_tokens: int = 8192,
    block_width: int | None = None,
    peak_gflops: float | None,
    memory_available: int | None,
) -> RunPlan:
    """The cost of analysing prompts of ``token_counts`` tokens (as captured: truncated to the
    capture limit, completions included) with ``saes``, in one pass of the model up to the
    deepest hooked layer. Memory terms, each an estimate of what is alive at the peak:

    - model weights: every parameter in the run dtype (the embedding included, since the whole
      checkpoint loads even though the LM head never runs);
    - SAE weights: every SAE's parameters in the run dtype, all loaded together;
    - activations: one batch of ``T`` padded tokens, where ``T`` is at most ``batch_tokens``
      (or the longest prompt ``L`` alone) and at most a batch's rows times ``L``. Per token, the
      residual stream's copies, q, k, v and the attention output, and the MLP's gate, up and
      product, in the run dtype; the attention scores, at most T × heads × L, in the run dtype
      plus the float32 softmax;
    - captured hooks: every SAE's input (and a transcoder's target) for the batch, in the run
      dtype, all held until the last SAE has encoded;
    - encode: the largest of the SAEs' encodes of the batch, one SAE at a time (see
      ``_encode_bytes``), in blocks of ``block_width`` latents (None: as the engine picks them).
    """
    if dtype not in DTYPE_BYTES:
        raise PlanError(f"dtype {dtype!r} is not one of {', '.join(DTYPE_BYTES)}.")
    if not saes:
        raise PlanError("A run needs at least one SAE.")
    deepest = max(sae.layer for sae in saes)
    if deepest >= model.num_hidden_layers:
        raise PlanError(
            f"An SAE hooks layer {deepest}, but the model has {model.num_hidden_layers} layers."
        )
    size = DTYPE_BYTES[dtype]
    tokens = sum(token_counts)
    contexts = {
        w: mean_context(token_counts, w) for w in {model.window(i) for i in range(deepest + 1)}
    }
    model_flops = sum(
        model.layer_matmul_flops() + model.attention_flops(contexts[model.window(layer)])
        for layer in range(deepest + 1)
    )
    costs = tuple(
        SaeCost(
            label=sae.label,
            encode_flops=sae.encode_flops(),
            skip_flops=sae.skip_flops(),
            decode_flops=sae.decode_flops(top_k),
            weight_bytes=sae.parameter_count() * size,
            storage_bytes=tokens * bundle_bytes_per_token(min(top_k, sae.d_sae)),
        )
        for sae in saes
    )
    longest = max(token_counts, default=0)
    # A batch's padded size: under batch_tokens (one longer prompt alone exceeds it), and at
    # most a batch's rows padded to the longest prompt.
    batch = max(longest, min(batch_tokens, min(MAX_BATCH_ROWS, len(token_counts)) * longest))
    hd, d = model.head_dim, model.hidden_size
    per_value = (
        RESIDUAL_COPIES * d
        + (2 * model.num_attention_heads + 2 * model.num_key_value_heads) * hd
        + 3 * model.intermediate_size
    )
    scores = batch * model.num_attention_heads * longest * (size + SOFTMAX_BYTES)
    captured = sum(sae.d_in + (sae.d_out if sae.site == "transcoder" else 0) for sae in saes)
    encodes = [_encode_bytes(sae, batch, size, top_k, block_width) for sae in saes]
    widest = saes[encodes.index(max(encodes))]
    block = min(block_width or encode_block_width(widest.d_sae, batch, size), widest.d_sae)
    memory = (
        MemoryTerm(
            "model weights",
            model.parameter_count() * size,
            f"{model.parameter_count() / 1e6:,.0f} M parameters in {dtype}",
        ),
        MemoryTerm(
            "SAE weights",
            sum(c.weight_bytes for c in costs),
            f"{sum(s.parameter_count() for s in saes) / 1e6:,.0f} M parameters in {dtype}",
        ),
        MemoryTerm(
            "activations",
            batch * per_value * size + scores,
            f"one layer's, for a batch of {batch:,} tokens; attention over up to {longest:,}",
        ),
        MemoryTerm(
            "captured hooks",
            batch * captured * size,
            "every SAE's input, and a transcoder's target, for the batch",
        ),
        MemoryTerm(
            "encode",
            max(encodes),
            f"the largest, {widest.label}'s: blocks of {block:,} latents",
        ),
    )
    return RunPlan(
        dtype=dtype,
        prompts=len(token_counts),
        tokens=tokens,
        deepest_layer=deepest,
        model_flops_per_token=model_flops,
        saes=costs,
        memory=memory,
        top_k=top_k,
        peak_gflops=peak_gflops,
        memory_available=memory_available,
    )


def encode_block_width(d_sae: int, tokens: int, dtype_bytes: int) -> int:
    """Latents per encode block, as ``scopeweb_tracer.encode.block_width`` chooses them: as many
    as fit ``ENCODE_BLOCK_BYTES`` of pre-activations, a multiple of ``ENCODE_MIN_BLOCK``."""
    fit = ENCODE_BLOCK_BYTES // max(tokens * dtype_bytes, 1)
    return min(d_sae, max(ENCODE_MIN_BLOCK, fit // ENCODE_MIN_BLOCK * ENCODE_MIN_BLOCK))


def _encode_bytes(sae: SaeShape, tokens: int, size: int, top_k: int, block: int | None) -> int:
    """What one SAE's encode of a batch holds (``scopeweb_tracer.encode.encode_sparse``): its input
    in the run dtype; its target, reconstruction and error in float32; one block's
    pre-activations (run dtype) and active mask (bool); and the sparse decode's decoder rows of
    the block's active latents (L0 of them per token, top_k when the config does not say),
    gathered in the run dtype, then as float32 and weighted (float32), at most
    ``DECODE_ROWS`` entries at a time."""
    width = min(block or encode_block_width(sae.d_sae, tokens, size), sae.d_sae)
    active = min(math.ceil(sae.l0 or top_k), width)
    gathered = 8 if size == 4 else size + 8  # .float() of float32 rows is the same tensor
    work = tokens * (sae.d_in * size + 3 * sae.d_out * 4)
    entries = min(tokens * active, DECODE_ROWS)
    return work + tokens * width * (size + 1) + entries * sae.d_out * gathered


def _gflop(flops: float) -> str:
    return f"{flops / 1e9:,.3g} GFLOP"


def _share(part: float, whole: float) -> str:
    share = part / whole if whole else 0.0
    return "under 0.1%" if 0 < share < 0.001 else f"{share:.1%}"


def _gb(size: int) -> str:
    return f"{size / 1e9:,.1f} GB" if size >= 10**9 else f"{size / 1e9:.2f} GB"


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB" if size < 10**9 else _gb(size)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
