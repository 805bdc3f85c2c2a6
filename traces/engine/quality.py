"""SAE quality on held-out text: L0, FVU, dead-latent share and the cross-entropy increase when
the reconstruction is spliced into the forward pass. The BOS position is left out of every
figure (its activations are outliers) and is never replaced when splicing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from traces.engine.capture import batches_by_length, capture_residual, hooked_module, make_batch
from traces.engine.model import LoadedModel
from traces.engine.sae import LoadedSae


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
def sae_quality(
    loaded: LoadedModel, sae: LoadedSae, sequences: Sequence[Sequence[int]], max_tokens: int = 1024
) -> SaeQuality:
    # Small batches: each holds [tokens, 262,144] logits twice (clean and spliced).
    model, module = loaded.model, sae.config.module_path
    enc = sae.sae
    fired = torch.zeros(enc.d_sae, dtype=torch.bool, device=loaded.device)
    tokens = active = 0
    err_sum = 0.0
    x_sum = torch.zeros(enc.d_in, dtype=torch.float64)
    x_sq = 0.0
    ce_clean = ce_spliced = 0.0
    predictions = 0
    for group in batches_by_length([len(s) for s in sequences], max_tokens=max_tokens):
        batch = make_batch([sequences[i] for i in group], 0, loaded.device)
        hidden = capture_residual(model, module, batch).float()
        keep = batch.attention_mask.bool().clone()
        keep[:, 0] = False  # BOS
        x = hidden[keep]  # [tokens, d_in]
        f = enc.encode(x.to(enc.w_enc.dtype)).float()
        x_hat = enc.decode(f.to(enc.w_dec.dtype)).float()
        tokens += x.shape[0]
        active += int((f > 0).sum())
        fired |= (f > 0).any(0)
        err_sum += float(((x - x_hat) ** 2).sum())
        x_sum += x.sum(0).double().cpu()
        x_sq += float((x.double() ** 2).sum())

        replaced = hidden.clone()
        replaced[keep] = x_hat.to(replaced.dtype)
        layer = hooked_module(model, module)

        def splice(
            _: torch.nn.Module, __: object, output: object, new: torch.Tensor = replaced
        ) -> object:
            if isinstance(output, tuple):
                return (new.to(output[0].dtype), *output[1:])
            return new.to(output.dtype)  # type: ignore[attr-defined]

        clean = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        handle = layer.register_forward_hook(splice)
        try:
            spliced = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        finally:
            handle.remove()
        ce_clean += float(_next_token_ce(clean, batch.input_ids, batch.attention_mask))
        ce_spliced += float(_next_token_ce(spliced, batch.input_ids, batch.attention_mask))
        predictions += int(batch.attention_mask[:, 2:].sum())
    total_var = x_sq - float((x_sum**2).sum()) / max(tokens, 1)
    return SaeQuality(
        tokens=tokens,
        l0=active / max(tokens, 1),
        fvu=err_sum / max(total_var, 1e-12),
        dead_share=1.0 - float(fired.float().mean()),
        ce_clean=ce_clean / max(predictions, 1),
        ce_spliced=ce_spliced / max(predictions, 1),
    )
