"""Per-feature statistics that come from the weights alone: the logit lens and decoder neighbours.

- **Logit lens**: ``w_dec[i] @ W_U.T`` says which next-token logits feature ``i``'s decoder
  direction raises (promotes) and lowers (suppresses) when added to the residual stream, read
  straight through the unembedding (``W_U [vocab, d_in]``, tied to the input embedding in
  Gemma 3). Like Neuronpedia and SAELens, it leaves out the final RMSNorm.
- **Decoder neighbours**: the features whose decoder rows point the most the same way (cosine).

Both are ``[d_sae, d_in] @ [d_in, n]`` products with ``n`` up to 262,144 (Gemma's vocabulary),
so they run over blocks of features and keep only each row's top ``k``: a block of 128 features
holds 128 x 262,144 float32 logits (128 MiB) at a time, whatever the SAE's width.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

TOP_K = 10
BLOCK = 128
# Up to this size the unembedding is upcast to float32 once (Gemma 3 270M: 0.7 GiB, 4B: 2.7 GiB),
# so a bfloat16 model's logit lens ranks and reports float32 values; larger ones stay as loaded.
FLOAT32_LIMIT = 4 << 30

Progress = Callable[[int, int], None]  # (features done, features in all)


@dataclass
class FeatureStats:
    """Arrays for every feature of one SAE, row ``i`` for feature ``i``."""

    promoted_ids: np.ndarray  # [d_sae, k] int32, highest logit first
    promoted_values: np.ndarray  # [d_sae, k] float32
    suppressed_ids: np.ndarray  # [d_sae, k] int32, lowest logit first
    suppressed_values: np.ndarray  # [d_sae, k] float32
    neighbour_ids: np.ndarray  # [d_sae, k] int32, most similar first, never the feature itself
    neighbour_cosines: np.ndarray  # [d_sae, k] float32
    seconds: float
    compute_dtype: str

    @property
    def d_sae(self) -> int:
        return int(self.promoted_ids.shape[0])


def unembedding(model: Any) -> torch.Tensor:
    """The model's output embedding ``W_U [vocab, d_in]`` (the input embedding when tied)."""
    output = model.get_output_embeddings()
    weight: torch.Tensor = (
        output.weight if output is not None else model.get_input_embeddings().weight
    )
    return weight.detach()


@torch.inference_mode()
def logit_lens(
    w_dec: torch.Tensor,
    w_u: torch.Tensor,
    *,
    k: int = TOP_K,
    block: int = BLOCK,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top ``k`` promoted and suppressed token ids and logit values per feature.

    ``w_dec [d_sae, d_in]``, ``w_u [vocab, d_in]``. The product runs in ``w_u``'s dtype and
    device (the model as loaded, so no second copy of a large unembedding); values come back as
    float32. Returns ``(promoted_ids, promoted_values, suppressed_ids, suppressed_values)``, each
    ``[d_sae, k]``.
    """
    d_sae = int(w_dec.shape[0])
    k = min(k, int(w_u.shape[0]))
    top_ids = np.empty((d_sae, k), dtype=np.int32)
    top_val = np.empty((d_sae, k), dtype=np.float32)
    low_ids = np.empty((d_sae, k), dtype=np.int32)
    low_val = np.empty((d_sae, k), dtype=np.float32)
    for start in range(0, d_sae, block):
        stop = min(start + block, d_sae)
        rows = w_dec[start:stop].to(device=w_u.device, dtype=w_u.dtype)
        logits = (rows @ w_u.T).float()  # [block, vocab]
        high = logits.topk(k, dim=1)
        low = logits.topk(k, dim=1, largest=False)
        top_ids[start:stop] = high.indices.cpu().numpy()
        top_val[start:stop] = high.values.cpu().numpy()
        low_ids[start:stop] = low.indices.cpu().numpy()
        low_val[start:stop] = low.values.cpu().numpy()
        del logits
        if progress is not None:
            progress(stop, d_sae)
    return top_ids, top_val, low_ids, low_val


@torch.inference_mode()
def decoder_neighbours(
    w_dec: torch.Tensor, *, k: int = TOP_K, block: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Per feature, the ``k`` other features with the highest decoder cosine, and the cosines.

    ``w_dec [d_sae, d_in]``; computed in float32. A feature is never its own neighbour.
    """
    d_sae = int(w_dec.shape[0])
    k = min(k, d_sae - 1)
    unit = torch.nn.functional.normalize(w_dec.float(), dim=1)  # [d_sae, d_in]
    ids = np.empty((d_sae, k), dtype=np.int32)
    cos = np.empty((d_sae, k), dtype=np.float32)
    for start in range(0, d_sae, block):
        stop = min(start + block, d_sae)
        sims = unit[start:stop] @ unit.T  # [block, d_sae]
        rows = torch.arange(stop - start, device=sims.device)
        sims[rows, rows + start] = -torch.inf  # not itself
        best = sims.topk(k, dim=1)
        ids[start:stop] = best.indices.cpu().numpy()
        cos[start:stop] = best.values.cpu().numpy()
    return ids, cos


def feature_stats(
    w_dec: torch.Tensor,
    w_u: torch.Tensor,
    *,
    k: int = TOP_K,
    block: int = BLOCK,
    progress: Progress | None = None,
) -> FeatureStats:
    """The logit lens and decoder neighbours of every feature of one SAE."""
    started = time.monotonic()
    if w_u.dtype != torch.float32 and w_u.numel() * 4 <= FLOAT32_LIMIT:
        w_u = w_u.float()
    promoted_ids, promoted_values, suppressed_ids, suppressed_values = logit_lens(
        w_dec, w_u, k=k, block=block, progress=progress
    )
    neighbour_ids, neighbour_cosines = decoder_neighbours(w_dec, k=k)
    return FeatureStats(
        promoted_ids=promoted_ids,
        promoted_values=promoted_values,
        suppressed_ids=suppressed_ids,
        suppressed_values=suppressed_values,
        neighbour_ids=neighbour_ids,
        neighbour_cosines=neighbour_cosines,
        seconds=time.monotonic() - started,
        compute_dtype=str(w_u.dtype).removeprefix("torch."),
    )
