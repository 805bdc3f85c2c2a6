"""Token ids as text: the tokenizer's pieces (``tokenizer_decode``), the text each piece stands
for (``piece_text``), how the trace strip draws it (``display_pieces``) and which tokens a chat
template wrote (``template_marks``).

Token strings come from the model's tokenizer (the ``tokenizers`` library, never torch),
loaded only when there is something to decode.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

Decode = Callable[[list[int]], list[str]]


def tokenizer_decode(ids: list[int]) -> list[str]:
    # Only the tokenizer, which needs no torch; imported here so the web process loads it only
    # when a reviewer asks for a suggestion.
    from traces.engine.tokenizer import load_tokenizer

    tokenizer = load_tokenizer()
    return [tokenizer.id_to_token(i) or "" for i in ids]


BOS_PIECE = "<bos>"
# Gemma's chat template writes "<start_of_turn>{role}\n" ... "<end_of_turn>\n" around each turn.
TURN_START, TURN_END, NEWLINE = 1, 2, 3  # ``Piece.kind``; 0 for any other piece
_KINDS = {"<start_of_turn>": TURN_START, "<end_of_turn>": TURN_END, "\n": NEWLINE}

_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")

# Whitespace made visible; the strip breaks its line after a newline, as the text does.
VISIBLE = {" ": "·", "\n": "↵", "\t": "→", "\r": "␍"}

# Token id -> how it reads, per process (the vocabulary has 262,144 pieces; this keeps the
# ones traces use, and starts over past the limit).
_PIECES_LIMIT = 100_000


def piece_text(piece: str) -> str:
    """The text a vocabulary piece stands for: SentencePiece's ``▁`` is a space, and a
    byte-fallback piece (``<0x0A>``) is its byte when that byte is ASCII."""
    return _BYTE.sub(
        lambda m: chr(int(m.group(1), 16)) if int(m.group(1), 16) < 0x80 else m.group(0),
        piece.replace("▁", " "),
    )


def visible_text(text: str) -> str:
    """``text`` with spaces, newlines and tabs drawn (· ↵ →); empty becomes ∅."""
    return "".join(VISIBLE.get(ch, ch) for ch in text) or "∅"


class Piece(NamedTuple):
    text: str  # what the piece stands for
    shown: str  # ``text`` with whitespace drawn
    is_bos: bool  # the BOS piece
    kind: int  # TURN_START, TURN_END, NEWLINE or 0 (what ``template_marks`` reads)


_PIECES: dict[Decode, dict[int, Piece]] = {}  # decode function -> token id -> Piece


def shown_text(text: str, category: str | None) -> str:
    """What the strip draws: whitespace made visible; a redacted span's category on its first
    token and ``…`` on the rest (so each keeps a place in the strip)."""
    if category is not None:
        return text or "…"
    return visible_text(text)


def display_pieces(ids: list[int], decode: Decode | None = None) -> list[Piece]:
    """How each token id reads (``Piece``), by ``decode`` (default: the model's tokenizer).
    Each id is worked out once per process and decode function: a 1000-token trace then costs
    dictionary lookups, not 1,000 tokenizer calls and regular expressions."""
    decode = decode or tokenizer_decode
    known = _PIECES.setdefault(decode, {})
    missing = sorted(set(ids).difference(known))
    if missing:
        if len(known) + len(missing) > _PIECES_LIMIT:
            known.clear()
        known.update(zip(missing, map(_piece, decode(missing)), strict=True))
    return [known[token_id] for token_id in ids]


def _piece(piece: str) -> Piece:
    text = piece_text(piece)
    return Piece(text, visible_text(text), piece == BOS_PIECE, _KINDS.get(text, 0))


def template_marks(pieces: Sequence[Piece]) -> tuple[np.ndarray, dict[int, str]]:
    """Which tokens the chat template wrote (``[tokens]`` bool): ``<start_of_turn>``, the role
    word after it and the newline after that, ``<end_of_turn>`` and the newline after it; and
    each turn's role by the position of its ``<start_of_turn>``."""
    kind = np.fromiter((piece.kind for piece in pieces), dtype=np.int8, count=len(pieces))
    marked = (kind == TURN_START) | (kind == TURN_END)
    starts = np.flatnonzero(kind == TURN_START)
    if not starts.size:
        return marked, {}
    roles = starts + 1
    roles = roles[roles < len(kind)]
    roles = roles[kind[roles] == 0]  # a word, not another template token
    marked[roles] = True
    after = np.concatenate([roles + 1, np.flatnonzero(kind == TURN_END) + 1])
    after = after[after < len(kind)]
    marked[after[kind[after] == NEWLINE]] = True
    return marked, {int(at) - 1: pieces[int(at)].text.strip() for at in roles}
