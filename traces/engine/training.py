"""Training the shipped JumpReLU SAE (``manage.py train_sae``).

Recipe: BatchTopK (Bussmann et al., 2024) with an AuxK loss against dead latents, on residual
activations scaled to unit mean squared norm per dimension; at the end the scale is folded into
the weights and the BatchTopK cut is turned into one JumpReLU threshold (the mean of the smallest
kept activation per batch over the last epoch), so the saved SAE follows the Gemma Scope 2 format
exactly: ``f = relu(x @ w_enc + b_enc) * (pre > threshold)``, ``x_hat = f @ w_dec + b_dec``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from traces.engine.capture import batches_by_length, capture_residual, make_batch
from traces.engine.model import LoadedModel

log = logging.getLogger(__name__)


@dataclass
class TrainSettings:
    layer: int = 12
    width: int = 4096
    k: int = 64
    train_tokens: int = 600_000
    heldout_tokens: int = 40_000
    seq_len: int = 128
    batch_size: int = 4096
    epochs: int = 4
    lr: float = 4e-4
    aux_k: int = 256
    aux_coefficient: float = 1 / 32
    dead_after_tokens: int = 200_000
    seed: int = 0
    capture_dtype: str = "bfloat16"


def tokenize_documents(
    loaded: LoadedModel, docs: Sequence[str], seq_len: int, seed: int
) -> list[list[int]]:
    """Each document becomes one sequence (BOS + up to ``seq_len - 1`` tokens), shuffled."""
    order = list(docs)
    random.Random(seed).shuffle(order)  # noqa: S311 (reproducible order, not a secret)
    sequences = [enc.ids[:seq_len] for enc in loaded.tokenizer.encode_batch(order)]
    return [seq for seq in sequences if len(seq) >= 8]


def split_by_tokens(
    sequences: list[list[int]], heldout_tokens: int
) -> tuple[list[list[int]], list[list[int]]]:
    held: list[list[int]] = []
    count = 0
    while sequences and count < heldout_tokens:
        seq = sequences.pop()
        held.append(seq)
        count += len(seq) - 1
    return sequences, held


@torch.inference_mode()
def collect_activations(
    loaded: LoadedModel,
    sequences: Sequence[Sequence[int]],
    layer: int,
    max_tokens: int,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Residual activations after ``layer`` for every non-BOS token: ``[tokens, d_model]``."""
    # Take sequences in their (shuffled) order until the budget is met, then batch those by
    # length: batching all of them by length first would keep only the shortest documents, and
    # leave out the late positions where Gemma's massive activations occur.
    chosen: list[Sequence[int]] = []
    budget = 0
    for seq in sequences:
        if budget >= max_tokens:
            break
        chosen.append(seq)
        budget += len(seq) - 1
    sequences = chosen
    out = torch.empty((max_tokens, loaded.d_model), dtype=torch.float32)
    filled = 0
    for group in batches_by_length([len(s) for s in sequences], max_tokens=8192):
        batch = make_batch([sequences[i] for i in group], 0, loaded.device)
        hidden = capture_residual(loaded.model, f"model.layers.{layer}", batch)
        keep = batch.attention_mask.bool()
        keep[:, 0] = False
        acts = hidden[keep].float().cpu()
        take = min(acts.shape[0], max_tokens - filled)
        out[filled : filled + take] = acts[:take]
        filled += take
        if progress:
            progress(filled)
        if filled >= max_tokens:
            break
    return out[:filled]


class BatchTopKSae(torch.nn.Module):
    def __init__(self, d_in: int, width: int, k: int, generator: torch.Generator) -> None:
        super().__init__()
        w_dec = torch.randn(width, d_in, generator=generator)
        w_dec = w_dec / w_dec.norm(dim=1, keepdim=True)
        self.w_dec = torch.nn.Parameter(w_dec)  # [width, d_in]
        self.w_enc = torch.nn.Parameter(w_dec.t().clone())  # [d_in, width]
        self.b_enc = torch.nn.Parameter(torch.zeros(width))
        self.b_dec = torch.nn.Parameter(torch.zeros(d_in))
        self.k = k

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pre = torch.relu(x @ self.w_enc + self.b_enc)  # [batch, width]
        flat = pre.flatten()
        keep = flat.topk(self.k * x.shape[0], sorted=False)
        f = torch.zeros_like(flat).scatter(0, keep.indices, keep.values).view_as(pre)
        return f @ self.w_dec + self.b_dec, f, pre

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.w_dec.div_(self.w_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))


@dataclass
class TrainResult:
    params: dict[str, torch.Tensor]
    scale: float
    threshold: float
    final_mse: float
    steps: int
    seconds: float


def train(
    acts: torch.Tensor, settings: TrainSettings, progress: Callable[[str], None] | None = None
) -> TrainResult:
    started = time.monotonic()
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    # Gemma's residual stream carries a large constant direction (about 80% of ||x||^2 at
    # layer 12): train on centred activations with unit variance per dimension, and fold the
    # shift and scale back into the weights when saving.
    mean = acts.mean(0)
    scale = float((acts - mean).pow(2).sum(1).mean().sqrt()) / acts.shape[1] ** 0.5
    data = (acts - mean) / scale
    sae = BatchTopKSae(data.shape[1], settings.width, settings.k, generator)
    optimiser = torch.optim.Adam(sae.parameters(), lr=settings.lr, betas=(0.9, 0.999))
    since_fired = torch.zeros(settings.width)
    thresholds: list[float] = []
    steps_per_epoch = data.shape[0] // settings.batch_size
    total = steps_per_epoch * settings.epochs
    step = 0
    mse = float("nan")
    for epoch in range(settings.epochs):
        order = torch.randperm(data.shape[0], generator=generator)
        for index in range(steps_per_epoch):
            x = data[order[index * settings.batch_size : (index + 1) * settings.batch_size]]
            x_hat, f, pre = sae(x)
            error = x - x_hat
            loss = error.pow(2).sum(1).mean()
            fired = (f > 0).any(0)
            since_fired = torch.where(fired, 0, since_fired + x.shape[0])
            dead = since_fired > settings.dead_after_tokens
            if dead.any():
                dead_pre = pre * dead
                aux = dead_pre.topk(min(settings.aux_k, int(dead.sum())), dim=1)
                f_aux = torch.zeros_like(pre).scatter(1, aux.indices, aux.values)
                aux_loss = (error.detach() - f_aux @ sae.w_dec).pow(2).sum(1).mean()
                loss = loss + settings.aux_coefficient * aux_loss
            # Linear warm-down over the last fifth keeps the end of training stable.
            fraction = step / max(total, 1)
            for group in optimiser.param_groups:
                group["lr"] = settings.lr * min(1.0, (1 - fraction) / 0.2)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            sae.normalise_decoder()
            if epoch == settings.epochs - 1:
                kept = f.detach()[f.detach() > 0]
                if kept.numel():
                    thresholds.append(float(kept.min()))
            mse = float(error.detach().pow(2).sum(1).mean() / x.pow(2).sum(1).mean())
            step += 1
            if progress and step % 20 == 0:
                progress(
                    f"step {step}/{total} epoch {epoch + 1} fvu {mse:.4f} dead {int(dead.sum())}"
                )
    threshold = sum(thresholds) / max(len(thresholds), 1)
    with torch.no_grad():
        # x' = (x - mean) / scale, so x' @ W + b = x @ (W / scale) + (b - mean @ W / scale)
        # and x = scale * x_hat' + mean.
        w_enc = sae.w_enc / scale
        params = {
            "w_enc": w_enc.contiguous(),
            "b_enc": (sae.b_enc - mean @ w_enc).contiguous(),
            "threshold": torch.full((settings.width,), threshold),
            "w_dec": (sae.w_dec * scale).contiguous(),
            "b_dec": (sae.b_dec * scale + mean).contiguous(),
        }
    return TrainResult(params, scale, threshold, mse, step, time.monotonic() - started)


def save_sae(
    folder: Path,
    result: TrainResult,
    settings: TrainSettings,
    *,
    l0: float,
    record: dict[str, object],
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.float().contiguous() for k, v in result.params.items()}, folder / "params.safetensors"
    )
    config = {
        "architecture": "jump_relu",
        "model_name": "google/gemma-3-270m",
        "hf_hook_point_in": f"model.layers.{settings.layer}.output",
        "hf_hook_point_out": f"model.layers.{settings.layer}.output",
        "width": settings.width,
        "l0": round(l0, 2),
        "affine_connection": False,
        "type": "sae",
        "trained_by": "scopeweb train_sae (BatchTopK, converted to JumpReLU)",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    record = record | {"settings": asdict(settings), "scale": result.scale}
    (folder / "training.json").write_text(json.dumps(record, indent=2) + "\n")
