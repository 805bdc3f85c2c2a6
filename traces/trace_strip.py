"""What the trace page draws: one row per token for the strip (text, classes, colour, tooltip)
and the JSON the side panel reads (every token's kept features and their labels)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from traces.trace_colours import Colouring
from traces.trace_tokens import TraceTokens

TOOLTIP_FEATURES = 5


@dataclass(frozen=True)
class StripToken:
    position: int
    shown: str
    classes: str
    style: str
    title: str
    breaks: int  # line breaks to draw after the token (its newlines)
    completion_starts: bool  # the first completion token: draw the divider before it


def _value(value: float) -> str:
    return f"{value:.3g}"


def strip_tokens(view: TraceTokens, colouring: Colouring) -> list[StripToken]:
    rows = []
    previous_completion = False
    for token, style, over, value in zip(
        view.tokens, colouring.styles, colouring.over, colouring.values, strict=True
    ):
        classes = ["tok"]
        if token.is_bos:
            classes.append("bos")
        if token.is_completion:
            classes.append("completion")
        if over:
            classes.append("over")
        lines = [
            f"#{token.position}{' BOS' if token.is_bos else ''} {token.text!r}"
            f"{' (completion)' if token.is_completion else ''}",
            f"L0 {token.l0} · recon error {token.err_ratio:.3g}",
        ]
        if colouring.mode != "none":
            lines.append(f"colour value {_value(value)}")
        for index, activation in token.features[:TOOLTIP_FEATURES]:
            label = view.label(index)
            lines.append(f"{index}  {_value(activation)}" + (f"  {label}" if label else ""))
        rows.append(
            StripToken(
                position=token.position,
                shown=token.shown,
                classes=" ".join(classes),
                style=style,
                title="\n".join(lines),
                breaks=token.newlines,
                completion_starts=token.is_completion and not previous_completion,
            )
        )
        previous_completion = token.is_completion
    return rows


def panel_payload(view: TraceTokens, colouring: Colouring) -> dict[str, Any]:
    """The side panel's data, embedded once in the page (``json_script``). Compact on
    purpose (values to 3 significant digits, as stored values hold about 2)."""
    return {
        "tokens": [
            {
                "s": token.shown,
                "b": token.is_bos,
                "c": token.is_completion,
                "l0": token.l0,
                "e": round(token.err_ratio, 4),
                "n": round(token.resid_norm, 1),
                "f": [index for index, _ in token.features],
                "v": [float(f"{value:.3g}") for _, value in token.features],
            }
            for token in view.tokens
        ],
        "labels": {
            str(index): [label.label, label.tags, label.safety_tags]
            for index, label in view.labels.items()
        },
        "watched": {str(index): threshold for index, threshold in view.watched.items()},
        "colour": {"mode": colouring.mode, "feature": colouring.feature},
    }
