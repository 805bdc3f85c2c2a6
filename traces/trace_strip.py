"""What the trace page draws: one row per token for the strip (text, classes, colour, tooltip)
and the JSON the side panel reads (every token's kept features and their labels).

The trace page takes both ready-made (``strip_html``, ``panel_json``): a 1,000-token strip
rendered by the template language costs about 40 ms and ``json_script``'s escaping of the
panel's half a megabyte another 35, against a few ms for one ``str.join`` with the C-level
``html.escape`` and three ``str.replace`` calls on ``json.dumps``' output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from typing import Any

from django.utils.safestring import SafeString, mark_safe

from traces.trace_colours import Colouring
from traces.trace_tokens import TraceTokens

TOOLTIP_FEATURES = 5
# JSON inside <script>: these three could end the element or open a comment; escaped as
# json_script does, the JSON parses to the same value.
_JSON_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"))
_SHORT: dict[float, float] = {}  # activation -> 3 significant digits (stored values are few)
_SHORT_LIMIT = 65536


@dataclass(frozen=True)
class StripToken:
    position: int
    shown: str
    classes: str
    style: str
    title: str
    breaks: int  # line breaks to draw after the token (its newlines)
    completion_starts: bool  # the first completion token: draw the divider before it


def _shortened(view: TraceTokens) -> dict[float, float]:
    """Every activation of the trace -> itself to 3 significant digits. Stored values take few
    distinct values (5 mantissa bits), so this formats a few hundred numbers, not 32,000."""
    distinct = {value for token in view.tokens for _, value in token.features}
    missing = distinct.difference(_SHORT)
    if missing:
        found = {value: float(f"{value:.3g}") for value in missing}
        if len(_SHORT) + len(found) <= _SHORT_LIMIT:
            _SHORT.update(found)
        return {value: _SHORT.get(value) or found[value] for value in distinct}
    return _SHORT


def strip_tokens(view: TraceTokens, colouring: Colouring) -> list[StripToken]:
    rows = []
    previous_completion = False
    labels = {index: found.label for index, found in view.labels.items() if found.label}
    coloured = colouring.mode != "none"
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
        if token.redacted is not None:
            classes.append("redacted")
        lines = [
            f"#{token.position}{' BOS' if token.is_bos else ''} {token.text!r}"
            f"{' (completion)' if token.is_completion else ''}",
            f"L0 {token.l0} · recon error {token.err_ratio:.3g}",
        ]
        if token.redacted is not None:
            lines.insert(1, f"redacted before storage: {token.redacted}")
        if coloured:
            lines.append(f"colour value {value:.3g}")
        for index, activation in token.features[:TOOLTIP_FEATURES]:
            label = labels.get(index)
            lines.append(
                f"{index}  {activation:.3g}  {label}" if label else f"{index}  {activation:.3g}"
            )
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


def strip_html(view: TraceTokens, colouring: Colouring) -> SafeString:
    """The strip as HTML: one ``<span class="tok">`` per token (``data-i``, colour, tooltip),
    the completion's divider and the text's line breaks, as ``strip_tokens`` describes them."""
    parts: list[str] = []
    add = parts.append
    for row in strip_tokens(view, colouring):
        if row.completion_starts:
            add(
                '<span class="completion-mark" title="The model\'s completion starts here">'
                "completion ›</span>"
            )
        style = f' style="{escape(row.style)}"' if row.style else ""
        add(
            f'<span class="{row.classes}" data-i="{row.position}"{style} '
            f'title="{escape(row.title)}" role="option">{escape(row.shown)}</span>'
        )
        if row.breaks:
            add("<br><br>" if row.breaks > 1 else "<br>")
    # Every text above went through html.escape; classes and positions are our own.
    return mark_safe("".join(parts))  # noqa: S308


def panel_json(payload: dict[str, Any]) -> SafeString:
    """``payload`` as the text of a ``<script type="application/json">`` element, escaped as
    ``json_script`` escapes it."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    for char, code in _JSON_ESCAPES:
        text = text.replace(char, code)
    return mark_safe(text)  # noqa: S308  # no "<", ">" or "&" left: it cannot end the script


def _panel_token(token: Any, short: dict[float, float]) -> dict[str, Any]:
    indices, values = zip(*token.features, strict=True) if token.features else ((), ())
    found: dict[str, Any] = {
        "s": token.shown,
        "l0": token.l0,
        "e": round(token.err_ratio, 4),
        "n": round(token.resid_norm, 1),
        "f": list(indices),
        "v": [short[value] for value in values],
    }
    # Flags only where set: false and null are what the page assumes when they are missing.
    if token.is_bos:
        found["b"] = True
    if token.is_completion:
        found["c"] = True
    if token.redacted is not None:
        found["r"] = token.redacted
    return found


def panel_payload(view: TraceTokens, colouring: Colouring) -> dict[str, Any]:
    """The side panel's data, embedded once in the page (``panel_json``). Compact on purpose:
    short keys, flags only where set, values to 3 significant digits (stored values hold about
    2), each label once in ``labels``."""
    short = _shortened(view)
    return {
        "tokens": [_panel_token(token, short) for token in view.tokens],
        "labels": {
            str(index): [label.label, label.tags, label.safety_tags]
            for index, label in view.labels.items()
        },
        "watched": {str(index): threshold for index, threshold in view.watched.items()},
        "colour": {"mode": colouring.mode, "feature": colouring.feature},
    }
