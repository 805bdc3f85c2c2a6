"""What the trace page draws: one row per token for the strip (text, classes, colour, tooltip)
and the data the side panel reads (every token's kept features and their labels).

The trace page takes both ready-made (``strip_html``, ``panel_json``): a 1,000-token strip
rendered by the template language costs about 40 ms against a few for one ``str.join`` with the
C-level ``html.escape``; the panel's 30,000 (token, feature) values as JSON lists cost about
25 ms to build and encode (and half a megabyte), against under 1 ms packed as base64 arrays.
"""

from __future__ import annotations

import base64
import json
from html import escape
from typing import Any, NamedTuple

import numpy as np
from django.utils.safestring import SafeString, mark_safe

from traces.display.colours import Colouring
from traces.selectors.trace_tokens import TraceTokens

TOOLTIP_FEATURES = 5
# JSON inside <script>: these three could end the element or open a comment; escaped as
# json_script does, the JSON parses to the same value.
_JSON_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"))
_VALUE_TEXT: dict[float, str] = {}  # activation -> "%.3g" (stored values take few values)
_VALUE_TEXT_LIMIT = 65536


class StripToken(NamedTuple):
    position: int
    shown: str
    classes: str
    style: str
    title: str
    breaks: int  # line breaks to draw after the token (its newlines)
    completion_starts: bool  # the first completion token: draw the divider before it
    turn: str = ""  # a chat turn starts here: its role, drawn as a label before the token


def _value_text(value: float) -> str:
    """``value`` to 3 significant digits. Stored activations are float16 with 5 mantissa bits,
    so a trace's 5,000 tooltip values are a few hundred distinct numbers, formatted once."""
    text = _VALUE_TEXT.get(value)
    if text is None:
        text = f"{value:.3g}"
        if len(_VALUE_TEXT) < _VALUE_TEXT_LIMIT:
            _VALUE_TEXT[value] = text
    return text


def strip_tokens(view: TraceTokens, colouring: Colouring) -> list[StripToken]:
    rows = []
    previous_completion = False
    # What follows a feature's value in a tooltip line: its label, when it has one.
    after = {index: f"  {found.label}" for index, found in view.labels.items() if found.label}
    coloured = colouring.mode != "none"
    tooltip_idx = view.top_idx[:, :TOOLTIP_FEATURES].tolist()
    tooltip_val = view.top_val[:, :TOOLTIP_FEATURES].tolist()
    kept, err_ratio = view.kept, view.err_ratio.tolist()
    template = view.template.tolist() if len(view.template) == len(view) else [False] * len(view)
    for position, (style, over, value) in enumerate(
        zip(colouring.styles, colouring.over, colouring.values, strict=True)
    ):
        is_bos, is_completion = position == 0, view.is_completion[position]
        redacted, text = view.redacted[position], view.texts[position]
        classes = "tok"
        if is_bos:
            classes += " bos"
        if is_completion:
            classes += " completion"
        if over:
            classes += " over"
        if redacted is not None:
            classes += " redacted"
        if template[position]:
            classes += " tpl"
        lines = [
            f"#{position}{' BOS' if is_bos else ''} {text!r}"
            f"{' (completion)' if is_completion else ''}"
            f"{' (chat template)' if template[position] else ''}",
            f"L0 {view.l0[position]} · recon error {err_ratio[position]:.3g}",
        ]
        if redacted is not None:
            lines.insert(1, f"redacted before storage: {redacted}")
        if coloured:
            lines.append(f"colour value {value:.3g}")
        lines += [
            f"{index}  {_value_text(activation)}{after.get(index, '')}"
            for index, activation in zip(
                tooltip_idx[position][: kept[position]], tooltip_val[position], strict=False
            )
        ]
        rows.append(
            StripToken(
                position,
                view.shown[position],
                classes,
                style,
                "\n".join(lines),
                text.count("\n"),
                is_completion and not previous_completion,
                view.turns.get(position, ""),
            )
        )
        previous_completion = is_completion
    return rows


def strip_html(view: TraceTokens, colouring: Colouring, *, choosable: bool = True) -> SafeString:
    """The strip as HTML: one ``<span class="tok">`` per token (colour, tooltip), the
    completion's divider, each chat turn's role label and the text's line breaks, as
    ``strip_tokens`` describes them.
    ``choosable`` tokens carry their position and the ``option`` role of the trace page's
    listbox."""
    parts: list[str] = []
    add = parts.append
    for row in strip_tokens(view, colouring):
        if row.completion_starts:
            add(
                '<span class="completion-mark" title="The model\'s completion starts here">'
                "completion ›</span>"
            )
        if row.turn:
            who = escape(row.turn)
            kind = f" turn-{who}" if who.isalpha() else ""
            add(f'<span class="turn-mark{kind}" title="A {who} turn starts here">{who}</span>')
        style = f' style="{escape(row.style)}"' if row.style else ""
        at, role = (f' data-i="{row.position}"', ' role="option"') if choosable else ("", "")
        add(
            f'<span class="{row.classes}"{at}{style} '
            f'title="{escape(row.title)}"{role}>{escape(row.shown)}</span>'
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


def _packed(values: np.ndarray | list[float], dtype: str) -> str:
    """``values`` as base64 of their little-endian bytes (``dtype``, e.g. ``<f4``)."""
    return base64.b64encode(np.ascontiguousarray(values, dtype=dtype).tobytes()).decode()


def panel_payload(view: TraceTokens, colouring: Colouring) -> dict[str, Any]:
    """The side panel's data, embedded once in the page (``panel_json``) and read by
    ``static/trace_view.js``. Columnar and packed on purpose, since a 1000-token trace keeps
    about 30,000 (token, feature) values: ``features`` and ``values`` are every token's kept
    latents, strongest first, token after token, as base64 of little-endian unsigned integers
    (``featureBytes`` each) and float32; ``kept`` says how many belong to each token. ``err``
    (recon_err ÷ residual norm²) and ``norm`` are float32 per token, ``l0`` a list; what the
    strip already shows (the token's text, BOS, completion) is read from the strip. Each
    label is given once, in ``labels``."""
    kept = view.top_idx >= 0
    wide = int(view.top_idx.max(initial=0)) >= 1 << 16
    return {
        "count": len(view),
        "kept": view.kept,
        "featureBytes": 4 if wide else 2,
        "features": _packed(view.top_idx[kept], "<u4" if wide else "<u2"),
        "values": _packed(view.top_val[kept], "<f4"),
        "l0": view.l0,
        "err": _packed(view.err_ratio, "<f4"),
        "norm": _packed(view.resid_norm, "<f4"),
        "redacted": {
            str(position): category
            for position, category in enumerate(view.redacted)
            if category is not None
        },
        "labels": {
            str(index): [label.label, label.tags, label.safety_tags]
            for index, label in view.labels.items()
        },
        "watched": {str(index): threshold for index, threshold in view.watched.items()},
        "colour": {"mode": colouring.mode, "feature": colouring.feature},
    }
