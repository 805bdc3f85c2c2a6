"""A first label for a feature, from the tokens it fires on and the tokens it promotes.

The reviewer sees the suggestion in the edit form and accepts or edits it; nothing is saved
without them. ``top_tokens`` come from the stored traces (``traces.selectors.feature_peaks``);
``promoted`` from the logit lens (the tokens whose logits the feature's decoder direction raises
most, ``traces.services.feature_stats``), ``[]`` while the SAE's logit lens is not computed.
"""

from __future__ import annotations

import re
from collections import Counter

from traces.models import SaeRecord

SHOWN_TOKENS = 3
_SPECIAL = re.compile(r"^<[^<>]*>$")  # <bos>, <pad>, <start_of_turn>, …
_BYTE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")


def _readable(token: str) -> str:
    """SentencePiece marks a leading space with ``▁``; the label shows the word itself."""
    return token.replace("▁", " ").strip()


def _most_common(tokens: list[str], limit: int) -> list[str]:
    """The most frequent distinct tokens (case-folded), each shown as most often written, ties
    broken by first appearance (the caller lists tokens by activation, strongest first)."""
    forms: dict[str, Counter[str]] = {}
    order: list[str] = []
    for token in tokens:
        text = _readable(token)
        if not text or _SPECIAL.match(text) or _BYTE.match(text):
            continue
        key = text.casefold()
        if key not in forms:
            forms[key] = Counter()
            order.append(key)
        forms[key][text] += 1
    ranked = sorted(order, key=lambda k: (-sum(forms[k].values()), order.index(k)))
    return [forms[key].most_common(1)[0][0] for key in ranked[:limit]]


def _quoted(tokens: list[str]) -> str:
    return ", ".join(f"“{token}”" for token in tokens)


def feature_label_suggestion(
    sae: SaeRecord, index: int, top_tokens: list[str], promoted: list[str]
) -> str:
    """A short label such as ``“bomb”, “explosive” → “detonate”``, or "" with nothing to go on.

    ``top_tokens``: token strings at the feature's strongest activations, strongest first,
    repeats allowed (a token that recurs ranks higher). ``promoted``: the logit lens's tokens,
    strongest first. ``sae`` and ``index`` identify the feature for implementations that need
    more than the tokens (the logit lens reads the SAE's decoder row ``index``).
    """
    fires_on = _most_common(top_tokens, SHOWN_TOKENS)
    raises = _most_common(promoted, SHOWN_TOKENS)
    if fires_on and raises:
        label = f"{_quoted(fires_on)} → {_quoted(raises)}"
    elif fires_on:
        label = _quoted(fires_on)
    elif raises:
        label = f"→ {_quoted(raises)}"
    else:
        return ""
    return label if len(label) <= 200 else label[:199] + "…"
