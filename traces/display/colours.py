"""How the token strip is coloured: by one feature, by the strongest watched feature, or by
reconstruction error, computed here as inline background colours with a legend.

The palettes are ColorBrewer's single-hue sequential scales (Oranges for activations, Blues for
reconstruction error): they vary in lightness, so they read the same for colour-blind reviewers
and in greyscale. A token whose value is zero keeps the page background. The BOS token's values
are outliers: they never set the top of the scale, and are clipped to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from traces.selectors.trace_tokens import TraceTokens

ORANGES = (
    "#fff5eb", "#fee6ce", "#fdd0a2", "#fdae6b", "#fd8d3c",
    "#f16913", "#d94801", "#a63603", "#7f2704",
)  # fmt: skip
BLUES = (
    "#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6",
    "#4292c6", "#2171b5", "#08519c", "#08306b",
)  # fmt: skip
DARK_FROM = 0.62  # above this share of the scale, text turns white to stay readable
WATCH_SCALE = 2.0  # the watched scale runs from 0 to twice the threshold

MODES = ("feature", "watched", "recon", "none")


@dataclass(frozen=True)
class Legend:
    title: str
    gradient: str  # a CSS linear-gradient
    low: str
    high: str
    mid: str = ""  # a label at the middle of the bar (the watch threshold)
    note: str = ""


@dataclass(frozen=True)
class Colouring:
    mode: str
    feature: int | None
    values: list[float]  # [tokens] the value that sets each token's colour (0: none)
    styles: list[str]  # [tokens] inline style, "" for no colour
    over: list[bool]  # [tokens] a watched feature above its threshold
    legend: Legend | None


def _hex(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def palette_colour(palette: tuple[str, ...], share: float) -> str:
    """The colour at ``share`` (0 to 1) along ``palette``, interpolated between its stops."""
    share = min(max(share, 0.0), 1.0)
    where = share * (len(palette) - 1)
    low = int(where)
    high = min(low + 1, len(palette) - 1)
    frac = where - low
    a, b = _hex(palette[low]), _hex(palette[high])
    mixed = (round(x + (y - x) * frac) for x, y in zip(a, b, strict=True))
    return "#" + "".join(f"{channel:02x}" for channel in mixed)


_LEVELS = 1000  # a colour per 0.1 % of the scale: finer than the eye, few distinct styles


def _style(palette: tuple[str, ...], value: float, top: float) -> str:
    if value <= 0 or top <= 0:
        return ""
    return _level_style(palette, round(min(value / top, 1.0) * _LEVELS))


@lru_cache(maxsize=4 * (_LEVELS + 1))
def _level_style(palette: tuple[str, ...], level: int) -> str:
    # Start a little above the palette's near-white end so the faintest activation still shows.
    share = 0.12 + 0.88 * level / _LEVELS
    ink = ";color:#fff" if share > DARK_FROM else ""
    return f"background:{palette_colour(palette, share)}{ink}"


def activation_style(value: float, top: float) -> str:
    """The strip's inline style for a feature activation on a scale from 0 to ``top``."""
    return _style(ORANGES, value, top)


def _gradient(palette: tuple[str, ...]) -> str:
    return f"linear-gradient(to right, {', '.join(palette[1:])})"


def _top(values: np.ndarray) -> float:
    """The scale's top: the largest value off the BOS token (BOS is an outlier)."""
    body = values[1:] if len(values) > 1 else values
    return float(body.max(initial=0.0))


def _watched_thresholds(view: TraceTokens) -> tuple[np.ndarray, np.ndarray]:
    """[tokens, top_k] each: the watch threshold of each kept latent, and whether it is
    watched at all (a threshold may be 0)."""
    if not view.watched:
        return np.zeros(view.top_idx.shape), np.zeros(view.top_idx.shape, bool)
    indices = np.array(sorted(view.watched), dtype=np.int64)
    thresholds = np.array([view.watched[int(i)] for i in indices], dtype=np.float64)
    at = np.clip(np.searchsorted(indices, view.top_idx), 0, len(indices) - 1)
    watched = indices[at] == view.top_idx
    return np.where(watched, thresholds[at], 0.0), watched


def trace_colouring(view: TraceTokens, mode: str, feature: int | None = None) -> Colouring:
    """Colours for every token of ``view``. ``mode`` is one of ``MODES``; "feature" needs
    ``feature``. Every mode marks tokens where a watched feature exceeds its threshold."""
    count = len(view)
    thresholds, watched = _watched_thresholds(view)
    over = ((view.top_val > thresholds) & watched).any(axis=1).tolist()
    if mode == "feature" and feature is not None:
        values = np.where(view.top_idx == feature, view.top_val, 0.0).max(axis=1, initial=0.0)
        top = _top(values)
        label = view.label(feature)
        legend = Legend(
            title=f"Feature {feature}" + (f" · {label}" if label else ""),
            gradient=_gradient(ORANGES),
            low="0",
            high=f"{top:.3g}",
            note="Activation where the feature is among the token's kept top-k; BOS left off "
            "the scale."
            if top > 0
            else "The feature is not among the kept features of any token after BOS.",
        )
        palette = ORANGES
    elif mode == "watched":
        ratios = np.zeros(view.top_val.shape, dtype=np.float64)
        np.divide(view.top_val, thresholds, out=ratios, where=watched & (thresholds != 0))
        values = ratios.max(axis=1, initial=0.0)
        top = WATCH_SCALE
        legend = Legend(
            title="Strongest watched feature (activation ÷ its threshold)",
            gradient=_gradient(ORANGES),
            low="0",
            mid="threshold",
            high=f"≥ {WATCH_SCALE:g}×",
            note="Outlined tokens exceed a watched feature's threshold."
            if view.watched
            else "This SAE has no watched features (a safety tag and a threshold).",
        )
        palette = ORANGES
    elif mode == "recon":
        values = view.err_ratio
        top = _top(values)
        legend = Legend(
            title="Reconstruction error (recon_err ÷ residual norm²)",
            gradient=_gradient(BLUES),
            low="0",
            high=f"{top:.3g}",
            note="BOS left off the scale.",
        )
        palette = BLUES
    else:
        return Colouring("none", None, [0.0] * count, [""] * count, over, None)
    listed = values.tolist()
    styles = [_style(palette, v, top) for v in listed]
    return Colouring(mode, feature, listed, styles, over, legend)
