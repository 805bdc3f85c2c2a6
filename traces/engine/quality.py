"""SAE quality on held-out text: L0, FVU, dead-latent share and the cross-entropy increase when
the reconstruction is spliced into the forward pass, and the dataset-level mean that FVU is
centred on. The BOS position is left out of every figure (its activations are outliers) and is
never replaced when splicing.

FVU is ``Σ‖y − ŷ‖² / Σ‖y − μ‖²`` over tokens, with ``μ`` the mean of ``y`` over the held-out
tokens: how Gemma Scope 2 and SAELens report it. ``y`` is what the SAE reconstructs (its input,
or a transcoder's output hook). Runs centre on the same recorded ``μ``, so a run over
in-distribution text reads the registry's figure, and a short prompt's small spread does not
read as a bad reconstruction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch

from scopeweb_tracer.capture import hooked_module
from scopeweb_tracer.encode import encode_sparse
from scopeweb_tracer.sae import LoadedSae
from traces.engine.capture import batches_by_length, capture_hooks, make_batch
from traces.engine.model import LoadedModel


@dataclass
class SaeQuality:
    tokens: int
    l0: float
    fvu: float
    dead_share: float
    ce_clean: float
    ce_spliced: float

    @property
    def delta_ce(self) -> float:
        return self.ce_spliced - self.ce_clean

    def as_dict(self) -> dict[str, float]:
        return asdict(self) | {"delta_ce": self.delta_ce}


def _next_token_ce(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Summed CE of predicting token t+1 from t, over positions 1.. (predictions made after BOS)."""
    logits, targets = logits[:, 1:-1].float(), ids[:, 2:]
    valid = mask[:, 2:].bool()
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    return (ce * valid).sum()


@torch.inference_mode()
def target_mean(
    loaded: LoadedModel, sae: LoadedSae, sequences: Sequence[Sequence[int]], max_tokens: int = 4096
) -> torch.Tensor:
    """``μ [d_out]`` float32: the mean of what ``sae`` reconstructs over ``sequences``, BOS
    excluded; a forward pass only as deep as its hook."""
    hook = sae.config.hook_out
    total = torch.zeros(sae.sae.d_out, dtype=torch.float64)
    tokens = 0
    for group in batches_by_length([len(s) for s in sequences], max_tokens=max_tokens):
        batch = make_batch([sequences[i] for i in group], 0, loaded.device)
        y = capture_hooks(loaded.model, [hook], batch)[hook.name]
        keep = batch.attention_mask.bool().clone()
        keep[:, 0] = False
        total += y[keep].double().sum(0).cpu()
        tokens += int(keep.sum())
    return (total / max(tokens, 1)).float()


@torch.inference_mode()
def sae_quality(
    loaded: LoadedModel, sae: LoadedSae, sequences: Sequence[Sequence[int]], max_tokens: int = 1024
) -> SaeQuality:
    # Small batches: each holds [tokens, 262,144] logits twice (clean and spliced).
    model, config, enc = loaded.model, sae.config, sae.sae
    fired = torch.zeros(enc.d_sae, dtype=torch.bool, device=loaded.device)
    tokens = active = 0
    err_sum = 0.0
    y_sum = torch.zeros(enc.d_out, dtype=torch.float64)
    y_sq = 0.0
    ce_clean = ce_spliced = 0.0
    predictions = 0
    hooks = [config.hook_in, config.hook_out]
    for group in batches_by_length([len(s) for s in sequences], max_tokens=max_tokens):
        batch = make_batch([sequences[i] for i in group], 0, loaded.device)
        captured = capture_hooks(model, hooks, batch)
        keep = batch.attention_mask.bool().clone()
        keep[:, 0] = False  # BOS
        x, y = captured[config.hook_in.name][keep], captured[config.hook_out.name][keep].float()
        codes = encode_sparse(enc, x, 1, fired=fired)
        tokens += x.shape[0]
        active += int(codes.l0.sum())
        err_sum += float(((y - codes.recon) ** 2).sum())
        y_sum += y.sum(0).double().cpu()
        y_sq += float((y.double() ** 2).sum())

        replaced = captured[config.hook_out.name].clone()
        replaced[keep] = codes.recon.to(replaced.dtype)
        clean = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        with _spliced(model, config.hook_out.module_path, config.hook_out.reads, replaced):
            spliced = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        ce_clean += float(_next_token_ce(clean, batch.input_ids, batch.attention_mask))
        ce_spliced += float(_next_token_ce(spliced, batch.input_ids, batch.attention_mask))
        predictions += int(batch.attention_mask[:, 2:].sum())
    total_var = y_sq - float((y_sum**2).sum()) / max(tokens, 1)
    return SaeQuality(
        tokens=tokens,
        l0=active / max(tokens, 1),
        fvu=err_sum / max(total_var, 1e-12),
        dead_share=1.0 - float(fired.float().mean()),
        ce_clean=ce_clean / max(predictions, 1),
        ce_spliced=ce_spliced / max(predictions, 1),
    )


@contextmanager
def _spliced(model: torch.nn.Module, path: str, reads: str, new: torch.Tensor) -> Iterator[None]:
    """Replace a module's output (or, for an ``input`` hook, its first argument) by ``new``."""
    module = hooked_module(model, path)
    if reads == "input":
        handle = module.register_forward_pre_hook(
            lambda _, args: (new.to(args[0].dtype), *args[1:])
        )
    else:
        handle = module.register_forward_hook(
            lambda _, __, out: (
                (new.to(out[0].dtype), *out[1:]) if isinstance(out, tuple) else new.to(out.dtype)
            )
        )
    try:
        yield
    finally:
        handle.remove()
