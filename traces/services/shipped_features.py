"""A tracer's encodings of its requests (the plain format's ``features``), checked before they
are stored as a stream run's chunk.

The tracer runs the engine's encoder in the serving process (``scopeweb_tracer.tracer``), so a
batch whose every request carries features for every SAE of the manifest is stored without a
forward pass. The payload crossed a trust boundary: every shape, index and number is checked,
and a batch with anything wrong (or missing) is recomputed teacher-forced instead, with the
reason recorded on its requests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from scopeweb_tracer.sae import LoadedSae
    from traces.engine.shipped import ShippedTrace
    from traces.models import AnalysisRun

COLUMNS = ("top_idx", "top_val", "l0", "recon_err", "resid_norm")


class NotUsable(ValueError):
    """Why a request's features cannot be stored as they are."""


def _numbers(value: Any, what: str, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    try:
        array: np.ndarray = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        raise NotUsable(f"{what} is not a list of numbers of one shape") from None
    if array.shape != shape and not (len(shape) == 2 and array.shape == (shape[0], 0)):
        raise NotUsable(f"{what} has shape {array.shape}, expected {shape}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise NotUsable(f"{what} holds NaN or infinity")
    return array


def _sae_columns(
    raw: Any, name: str, n: int, k: int, d_sae: int, d_out: int
) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
    if not isinstance(raw, dict):
        raise NotUsable(f"no features for the SAE {name}")
    idx = np.asarray(raw.get("top_idx", []), dtype=object)
    width = idx.shape[1] if idx.ndim == 2 else -1
    if width < 0 or width > k:
        raise NotUsable(f"{name}.top_idx must be {n} lists of at most {k} latents")
    columns = {
        "top_idx": _numbers(raw["top_idx"], f"{name}.top_idx", np.int64, (n, width)),
        "top_val": _numbers(raw.get("top_val"), f"{name}.top_val", np.float32, (n, width)),
        "l0": _numbers(raw.get("l0"), f"{name}.l0", np.int64, (n,)),
        "recon_err": _numbers(raw.get("recon_err"), f"{name}.recon_err", np.float32, (n,)),
        "resid_norm": _numbers(raw.get("resid_norm"), f"{name}.resid_norm", np.float32, (n,)),
    }
    if ((columns["top_idx"] < -1) | (columns["top_idx"] >= d_sae)).any():
        raise NotUsable(f"{name}.top_idx names a latent outside 0…{d_sae - 1}")
    if (columns["top_val"] < 0).any() or (columns["l0"] < 0).any():
        raise NotUsable(f"{name} holds negative activations or counts")
    columns["l0"] = np.minimum(columns["l0"], np.iinfo(np.int16).max)
    sum_y = _numbers(raw.get("sum_y"), f"{name}.sum_y", np.float64, (d_out,))
    sum_y2 = raw.get("sum_y2")
    if not isinstance(sum_y2, int | float) or isinstance(sum_y2, bool) or not math.isfinite(sum_y2):
        raise NotUsable(f"{name}.sum_y2 must be a number")
    return columns, sum_y, float(sum_y2)


def _one(
    original: dict[str, Any],
    runs: Sequence[AnalysisRun],
    saes: Sequence[LoadedSae],
    top_k: int,
    limit: int,
) -> ShippedTrace:
    from traces.engine.shipped import ShippedTrace

    features = original.get("features")
    if not isinstance(features, dict):
        raise NotUsable("the request came without a tracer's features")
    ids = features.get("token_ids")
    if not isinstance(ids, list) or not 1 <= len(ids) <= limit:
        raise NotUsable(f"token_ids must be 1 to {limit} token ids")
    token_ids = _numbers(ids, "token_ids", np.int64, (len(ids),))
    if (token_ids < 0).any() or (token_ids >= 2**31).any():
        raise NotUsable("token_ids holds an id outside the vocabulary")
    n = len(ids)
    prompt_tokens = features.get("prompt_tokens")
    if not isinstance(prompt_tokens, int) or not 1 <= prompt_tokens <= n:
        raise NotUsable(f"prompt_tokens must be 1 to {n}")
    by_name = features.get("saes")
    if not isinstance(by_name, dict):
        raise NotUsable("features.saes must map SAE names to their columns")
    columns, sq_dev = [], []
    for run, sae in zip(runs, saes, strict=True):
        cols, sum_y, sum_y2 = _sae_columns(
            by_name.get(run.sae.name), run.sae.name, n, top_k, sae.sae.d_sae, sum_y_width(sae)
        )
        mean = sae.target_mean.double().numpy() if sae.target_mean is not None else sum_y / n
        dev = sum_y2 - 2 * float(mean @ sum_y) + (n - 1) * float(mean @ mean)
        columns.append(cols)
        sq_dev.append(max(dev, 0.0))
    return ShippedTrace(
        token_ids=[int(t) for t in token_ids],
        prompt_tokens=prompt_tokens,
        truncated=False,
        completion=str(original.get("completion") or ""),
        columns=columns,
        sq_dev=sq_dev,
    )


def sum_y_width(sae: LoadedSae) -> int:
    return int(sae.sae.b_dec.shape[0])


def shipped_traces(
    originals: Sequence[dict[str, Any]],
    runs: Sequence[AnalysisRun],
    saes: Sequence[LoadedSae],
    top_k: int,
    limit: int,
) -> tuple[list[ShippedTrace] | None, str]:
    """Every request's checked features, or None and why the batch is to be recomputed."""
    found = []
    for position, original in enumerate(originals):
        try:
            found.append(_one(original, runs, saes, top_k, limit))
        except NotUsable as exc:
            return None, f"request {position + 1}: {exc}"
    return found, ""
