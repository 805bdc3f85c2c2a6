"""The operations page's plots: time series drawn as server-side SVG (no script), one per
figure of ``traces.selectors.operations.OperationsReport``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from django.utils.safestring import SafeString, mark_safe

from traces.display.plots import BAND, BAR, GRID, INK, MUTED, nice_step, tick_label
from traces.selectors.operations import OperationsReport


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]
    colour: str = BAR


def _n(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def series_svg(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    unit: str = "",
    bars: bool = False,
    whole: bool = False,
    width: int = 380,
    height: int = 210,
) -> SafeString:
    """A small time-series plot: one point per bucket (``labels``), as bars (one series) or
    lines (gaps where a value is None), y from 0 with 1-2-5 ticks (whole ones for counts), a
    tooltip on every point and a legend when there are several series. Text is escaped here:
    safe to inline."""
    left, right, top, bottom = 46, 10, 26, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    found = [v for s in series for v in s.values if v is not None and math.isfinite(v)]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="series" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" aria-label={quoteattr(title)}>',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="16" font-size="13" font-weight="600" fill="{INK}">'
        f"{escape(title)}</text>",
    ]
    if not found or not labels:
        parts.append(
            f'<text x="{width / 2:.0f}" y="{top + plot_h / 2:.0f}" text-anchor="middle" '
            f'font-size="12" fill="{MUTED}">no data</text></svg>'
        )
        return mark_safe("".join(parts))  # noqa: S308 (every text above is escaped)
    peak = max(max(found), 0.0)
    step = nice_step(peak or 1.0, 4)
    if whole:  # counts: whole ticks
        step = max(1.0, round(step))
    y_top = max(math.ceil(peak / step - 1e-9), 1) * step
    slot = plot_w / len(labels)

    def x_at(i: int) -> float:
        return left + slot * (i + 0.5)

    def y_at(value: float) -> float:
        return top + plot_h - value / y_top * plot_h

    for k in range(round(y_top / step) + 1):
        tick = round(k * step, 12)
        tick_y = _n(y_at(tick))
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{tick_y}" y2="{tick_y}" '
            f'stroke="{GRID}"/><text x="{left - 5}" y="{tick_y}" dy="4" text-anchor="end" '
            f'font-size="11" fill="{MUTED}">{escape(tick_label(tick))}</text>'
        )
    every = max(1, math.ceil(len(labels) / 6))
    axis_y = top + plot_h
    parts.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{axis_y}" y2="{axis_y}" stroke="{INK}"/>'
    )
    for i, label in enumerate(labels):
        if (len(labels) - 1 - i) % every == 0:  # the latest bucket always gets its label
            parts.append(
                f'<text x="{_n(x_at(i))}" y="{axis_y + 15}" text-anchor="middle" '
                f'font-size="11" fill="{MUTED}">{escape(label)}</text>'
            )
    suffix = f" {unit}" if unit else ""
    for line in series:
        if bars:
            for i, value in enumerate(line.values):
                if value is None:
                    continue
                bar_top = y_at(value)
                tip = f"{labels[i]}: {tick_label(value)}{suffix}"
                parts.append(
                    f'<rect class="bar" x="{_n(left + slot * i + 1)}" y="{_n(bar_top)}" '
                    f'width="{_n(max(slot - 2, 1))}" height="{_n(axis_y - bar_top)}" '
                    f'fill="{line.colour}"><title>{escape(tip)}</title></rect>'
                )
            continue
        runs: list[list[str]] = [[]]
        for i, value in enumerate(line.values):
            if value is None:
                runs.append([])
                continue
            runs[-1].append(f"{_n(x_at(i))},{_n(y_at(value))}")
            tip = f"{line.name}, {labels[i]}: {tick_label(value)}{suffix}"
            parts.append(
                f'<circle cx="{_n(x_at(i))}" cy="{_n(y_at(value))}" r="2.5" '
                f'fill="{line.colour}"><title>{escape(tip)}</title></circle>'
            )
        for points in runs:
            if len(points) > 1:
                parts.append(
                    f'<polyline points="{" ".join(points)}" fill="none" '
                    f'stroke="{line.colour}" stroke-width="1.8"/>'
                )
    if len(series) > 1:
        key_x = float(left + plot_w)
        for line in reversed(series):
            key_x -= 8 + 6.5 * len(line.name)
            parts.append(
                f'<rect x="{_n(key_x - 12)}" y="8" width="9" height="9" fill="{line.colour}"/>'
                f'<text x="{_n(key_x)}" y="16" font-size="11" fill="{INK}">'
                f"{escape(line.name)}</text>"
            )
            key_x -= 18
    parts.append(
        f'<text x="{left + plot_w / 2:.0f}" y="{height - 3}" text-anchor="middle" '
        f'font-size="11" fill="{MUTED}">{escape(unit)}</text></svg>'
    )
    return mark_safe("".join(parts))  # noqa: S308 (every text above is escaped)


def operations_labels(report: OperationsReport) -> list[str]:
    fmt = "%H:00" if report.span.key == "24h" else "%m-%d"
    return [bucket.start.strftime(fmt) for bucket in report.buckets]


def operations_plots(report: OperationsReport) -> list[SafeString]:
    labels = operations_labels(report)

    def values(pick: str) -> list[float | None]:
        found: list[float | None] = []
        for bucket in report.buckets:
            value = getattr(bucket, pick)
            found.append(None if value is None else float(value))
        return found

    return [
        series_svg(
            "Sampled requests a minute",
            labels,
            [Series("requests", values("per_minute"))],
            unit="requests / min",
            bars=True,
        ),
        series_svg(
            "Average trace size (as received)",
            labels,
            [Series("size", values("trace_kb"))],
            unit="KB",
        ),
        series_svg(
            "Tokens captured per request",
            labels,
            [Series("tokens", values("tokens_mean"))],
            unit="tokens",
        ),
        series_svg(
            "Queue depth at the end of the bucket",
            labels,
            [Series("waiting", values("queue_depth"))],
            unit="requests waiting",
            bars=True,
            whole=True,
        ),
        series_svg(
            "Analysis lag (longest wait)",
            labels,
            [Series("lag", values("lag_max_s"), BAND)],
            unit="seconds",
        ),
        series_svg(
            "Tracer overhead",
            labels,
            [Series("p50", values("overhead_p50")), Series("p90", values("overhead_p90"), BAND)],
            unit="ms",
        ),
        series_svg(
            "Failed batches",
            labels,
            [Series("failed", values("failed_batches"), BAND)],
            unit="batches",
            bars=True,
            whole=True,
        ),
    ]
