"""Small server-rendered SVG plots: no JavaScript, no CDN, valid XML that a page inlines.

Colours come from the Okabe–Ito palette (as in ``scopeweb.css``): bars in blue, a reference band
in orange with dashed edges, so the two stay apart for colour-blind readers and in greyscale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import capfirst

from traces.selectors.run_metrics import METRICS, SHORT_NAMES, RunMetrics

BAR = "#0072b2"  # Okabe–Ito blue
BAND = "#e69f00"  # Okabe–Ito orange
INK = "#1d2330"
GRID = "#d9dde5"
MUTED = "#5b6475"


def nice_step(span: float, target: int = 5) -> float:
    """A 1-2-5 step that cuts ``span`` into about ``target`` intervals."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / target
    power: float = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return factor * power
    return 10 * power


def ticks(low: float, high: float, target: int = 5) -> list[float]:
    """Round values between ``low`` and ``high`` (both included when they fall on a step)."""
    step = nice_step(high - low, target)
    first = math.ceil(low / step - 1e-9) * step
    count = math.floor((high - first) / step + 1e-9) + 1
    return [round(first + i * step, 12) for i in range(max(count, 0))]


def tick_label(value: float) -> str:
    """A short axis label that still tells neighbouring ticks apart: 12500 is "12.5k" (not
    "1e+04" like its neighbours), 2.5e-05 stays in exponent form."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.4g}M"
    if magnitude >= 10_000:
        return f"{value / 1e3:.4g}k"
    if magnitude < 0.001:
        return f"{value:.2g}"
    return f"{value:.4g}"


def _n(value: float) -> str:
    """A coordinate with one decimal, without a trailing ``.0``."""
    return f"{value:.1f}".removesuffix(".0")


def histogram_svg(
    values: Sequence[float],
    bins: int = 20,
    label: str = "",
    *,
    title: str = "",
    band: tuple[float, float] | None = None,
    band_label: str = "baseline p1–p99",
    width: int = 360,
    height: int = 220,
    count_noun: str = "traces",
) -> str:
    """An SVG histogram of ``values`` in ``bins`` equal bins (``bins`` bars, empty ones drawn
    with no height), with x and y ticks, the axis ``label``, a ``title``, and optionally a
    shaded reference ``band`` (low, high). Every bar carries a tooltip (its range and count).
    Text is escaped here, so the result is safe to inline."""
    bins = max(1, int(bins))
    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    left, right, top, bottom = 46, 12, 26, 40  # margins: y ticks, -, title, x ticks + label
    plot_w, plot_h = width - left - right, height - top - bottom
    heading = title or label
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="histogram" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f"aria-label={quoteattr(f'{heading}: histogram of {len(data)} {count_noun}')}>",
        f"<title>{escape(heading)}</title>",
        f'<text x="{left}" y="16" font-size="13" font-weight="600" fill="{INK}">'
        f"{escape(heading)}</text>",
    ]
    if len(data) == 0:
        parts.append(
            f'<text x="{width / 2:.0f}" y="{top + plot_h / 2:.0f}" text-anchor="middle" '
            f'font-size="12" fill="{MUTED}">no data</text></svg>'
        )
        return "".join(parts)
    low, high = float(data.min()), float(data.max())
    if band is not None:
        low, high = min(low, band[0]), max(high, band[1])
    if high <= low:  # one value: a unit-wide range around it
        pad = abs(low) * 0.05 or 0.5
        low, high = low - pad, high + pad
    counts, edges = np.histogram(data, bins=bins, range=(low, high))
    peak = int(counts.max())
    y_step = max(int(nice_step(max(peak, 1), 4)), 1)  # counts: whole steps
    y_top = float(max(math.ceil(peak / y_step), 1) * y_step)
    y_ticks = [float(t) for t in range(0, int(y_top) + 1, y_step)]

    def x_at(value: float) -> float:
        return left + (value - low) / (high - low) * plot_w

    def y_at(count: float) -> float:
        return top + plot_h - count / y_top * plot_h

    for tick in y_ticks:  # horizontal grid lines and y labels
        y_pos = _n(y_at(tick))
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y_pos}" y2="{y_pos}" stroke="{GRID}"/>'
            f'<text x="{left - 5}" y="{y_pos}" dy="4" text-anchor="end" font-size="11" '
            f'fill="{MUTED}">{int(tick)}</text>'
        )
    if band is not None:
        bx0, bx1 = x_at(band[0]), x_at(band[1])
        parts.append(
            f'<g class="band"><title>{escape(band_label)}: '
            f"{escape(tick_label(band[0]))} to {escape(tick_label(band[1]))}</title>"
            f'<rect x="{_n(bx0)}" y="{top}" width="{_n(max(bx1 - bx0, 1))}" height="{plot_h}" '
            f'fill="{BAND}" fill-opacity="0.18"/>'
            f'<line x1="{_n(bx0)}" x2="{_n(bx0)}" y1="{top}" y2="{top + plot_h}" stroke="{BAND}" '
            f'stroke-width="1.5" stroke-dasharray="4 3"/>'
            f'<line x1="{_n(bx1)}" x2="{_n(bx1)}" y1="{top}" y2="{top + plot_h}" stroke="{BAND}" '
            f'stroke-width="1.5" stroke-dasharray="4 3"/></g>'
        )
    bar_w = plot_w / bins
    for count, start, stop in zip(counts.tolist(), edges[:-1], edges[1:], strict=True):
        x = left + (start - low) / (high - low) * plot_w
        y = y_at(count)
        tip = f"{tick_label(start)} to {tick_label(stop)}: {count} {count_noun}"
        parts.append(
            f'<rect class="bar" x="{_n(x + 0.5)}" y="{_n(y)}" width="{_n(max(bar_w - 1, 0.5))}" '
            f'height="{_n(top + plot_h - y)}" fill="{BAR}"><title>{escape(tip)}</title></rect>'
        )
    axis_y = top + plot_h
    parts.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{axis_y}" y2="{axis_y}" stroke="{INK}"/>'
    )
    for tick in ticks(low, high, 6):
        x_pos = _n(x_at(tick))
        text = tick_label(tick)
        # A label centred on a tick near the right edge would be cut off: end it there.
        anchor = "end" if x_at(tick) + 3.3 * len(text) > width else "middle"
        parts.append(
            f'<line x1="{x_pos}" x2="{x_pos}" y1="{axis_y}" y2="{axis_y + 4}" stroke="{INK}"/>'
            f'<text x="{x_pos}" y="{axis_y + 16}" text-anchor="{anchor}" font-size="11" '
            f'fill="{MUTED}">{escape(text)}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.0f}" y="{height - 4}" text-anchor="middle" '
        f'font-size="11" fill="{INK}">{escape(label)}</text></svg>'
    )
    return "".join(parts)


def histogram_html(values: Sequence[float], bins: int, label: str, **options: Any) -> SafeString:
    """``histogram_svg``, ready to inline in a template (it escapes every text it draws)."""
    return mark_safe(histogram_svg(values, bins, label, **options))  # noqa: S308


def metric_histograms(
    metrics: RunMetrics, *, bins: int = 20, width: int = 360, height: int = 220
) -> list[SafeString]:
    """One histogram per trace metric of a run (L0, FVU, residual norm), with the baseline's
    [p1, p99] band where the metrics have a baseline: the run page and the signed report draw
    these same plots."""
    bands = metrics.anomalies.bands if metrics.anomalies else {}
    return [
        histogram_html(
            metrics.values[name],
            bins,
            f"{capfirst(SHORT_NAMES[name])} of a trace (bar height: traces)",
            title=title,
            band=bands.get(name),
            width=width,
            height=height,
        )
        for name, title in METRICS.items()
    ]
