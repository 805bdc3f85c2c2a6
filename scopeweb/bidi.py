"""Bidirectional-text controls shown, never obeyed.

U+202A–U+202E (embeddings, overrides) and U+2066–U+2069 (isolates) reorder the text around
them: a prompt can use them to make a page or a report read differently from what was stored
("Trojan Source"). Every HTML page (``BidiVisibleMiddleware``) and every PDF
(``reports.pdf.render``) shows each one as a visible mark, ``⟦U+202E⟧``, in its place.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def show_bidi(text: str) -> str:
    """``text`` with each bidi control replaced by a visible mark naming it."""
    return BIDI_CONTROLS.sub(lambda m: f"⟦U+{ord(m.group()):04X}⟧", text)


class BidiVisibleMiddleware:
    """Shows bidi controls in every HTML page (the trace strip, the lists, the case pages)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        kind = response.get("Content-Type", "")
        if response.streaming or not kind.startswith("text/html"):
            return response
        charset = response.charset or "utf-8"
        text = response.content.decode(charset, errors="replace")
        if BIDI_CONTROLS.search(text):
            response.content = show_bidi(text).encode(charset)
            if response.has_header("Content-Length"):
                response["Content-Length"] = str(len(response.content))
        return response
