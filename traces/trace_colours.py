"""How the token strip is coloured: by one feature, by the strongest watched feature, or by
reconstruction error, computed here as inline background colours with a legend.

The palettes are ColorBrewer's single-hue sequential scales (Oranges for activations, Blues for
reconstruction error): they vary in lightness, so they read the same for colour-blind reviewers
and in greyscale. A token whose value is zero keeps the page background. The BOS token's values
are outliers: they never set the top of the scale, and are clipped to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from traces.trace_tokens import TraceTokens

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
    strongest: list[int | None]  # [tokens] watched mode: the feature that sets the colour
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


def _style(palette: tuple[str, ...], value: float, top: float) -> str:
    if value <= 0 or top <= 0:
        return ""
    share = min(value / top, 1.0)
    # Start a little above the palette's near-white end so the faintest activation still shows.
    colour = palette_colour(palette, 0.12 + 0.88 * share)
    ink = ";color:#fff" if 0.12 + 0.88 * share > DARK_FROM else ""
    return f"background:{colour}{ink}"


def activation_style(value: float, top: float) -> str:
    """The strip's inline style for a feature activation on a scale from 0 to ``top``."""
    return _style(ORANGES, value, top)


def _gradient(palette: tuple[str, ...]) -> str:
    return f"linear-gradient(to right, {', '.join(palette[1:])})"


def _top(values: list[float]) -> float:
    """The scale's top: the largest value off the BOS token (BOS is an outlier)."""
    body = values[1:] or values
    return max(body, default=0.0)


def trace_colouring(view: TraceTokens, mode: str, feature: int | None = None) -> Colouring:
    """Colours for every token of ``view``. ``mode`` is one of ``MODES``; "feature" needs
    ``feature``. Every mode marks tokens where a watched feature exceeds its threshold."""
    tokens = view.tokens
    watched = view.watched
    over = (
        [any(v > watched[f] for f, v in t.features if f in watched) for t in tokens]
        if watched
        else [False] * len(tokens)
    )
    strongest: list[int | None] = [None] * len(tokens)
    if mode == "feature" and feature is not None:
        values = [dict(t.features).get(feature, 0.0) for t in tokens]
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
        values = []
        for index, t in enumerate(tokens):
            best, which = 0.0, None
            for f, v in t.features:
                if f in watched:
                    threshold = watched[f]
                    if threshold and v / threshold > best:
                        best, which = v / threshold, f
            values.append(best)
            strongest[index] = which
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
        values = [t.err_ratio for t in tokens]
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
        return Colouring(
            "none", None, [0.0] * len(tokens), [""] * len(tokens), over, strongest, None
        )
    styles = [_style(palette, v, top) for v in values]
    return Colouring(mode, feature, values, styles, over, strongest, legend)
