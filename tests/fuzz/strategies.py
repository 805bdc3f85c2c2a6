"""Hypothesis strategies the fuzz tests share: nasty text, JSON values (with what ``json.dumps``
will not write: duplicate keys, numbers of 5,000 digits, NaN, deep nesting), mutations of a
valid document that keep most of its shape, and the damage bytes suffer on the way (other
encodings, byte-order marks, truncation, stray bytes)."""

from __future__ import annotations

import json
import re
from typing import Any, Literal, TypeVar

from hypothesis import strategies as st

T = TypeVar("T")


class Raw(str):
    """JSON text written as it is (``dumps`` does not quote it)."""


class Pairs(list[tuple[str, Any]]):
    """A JSON object written pair by pair, so that a key may come twice."""


def dumps(value: Any, ascii_only: bool = True) -> str:
    """JSON text of ``value``; ``Raw`` and ``Pairs`` as they say."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict | Pairs):
        pairs = value.items() if isinstance(value, dict) else value
        inner = ", ".join(
            f"{json.dumps(str(key), ensure_ascii=ascii_only)}: {dumps(item, ascii_only)}"
            for key, item in pairs
        )
        return "{" + inner + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(dumps(item, ascii_only) for item in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def weighted(*options: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """One of ``options``, each drawn about ``weight`` times as often as a weight of 1.

    Hypothesis favours the first and the last of a ``sampled_from``, so the heaviest option
    takes both ends (and is what a failing example shrinks to)."""
    heaviest = max(range(len(options)), key=lambda index: options[index][0])
    weight = options[heaviest][0]
    others = [i for i, (w, _) in enumerate(options) if i != heaviest for _ in range(w)]
    indices = [heaviest] * (weight - weight // 2) + others + [heaviest] * (weight // 2)
    return st.sampled_from(indices).flatmap(lambda index: options[index][1])


# --- text ---------------------------------------------------------------------------------------

SPECIAL = (
    "\x00", "\x01", "\x1b", "\x7f", "\x85", "\xa0", "\u200b", "\u200d", "\u200e", "\u200f",
    "\u202a", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u2028", "\u2029", "\ufeff",
    "\ufffd", "\uffff", "\ud800", "\udfff", "\ud83d", "\ude00", "\ud83d\ude00", "\U0001f600",
    "\U0010ffff", "\r", "\n", "\r\n", "\t", "\x0b", "\x0c", '"', "'", "\\", ",", ";", "|", "{",
    "}", "[", "]", "<script>", "%s", "{0}", "é", "ß", "İ", "ﬁ", "𝒳", "e\u0301", "שלום", "مرحبا",
)  # fmt: skip
_SURROGATE = re.compile(r"[\ud800-\udfff]")
NOT_UNICODE: tuple[Literal["Cs"]] = ("Cs",)  # lone surrogates
LONG = ("a" * 201, "b " * 5_001, "c" * 50_001, "d" * 200_001)
SHAPED = ("", " ", "\t\n", "0", "-1", "null", "true", "NaN", "1e999", "user", "prompt")

# What a database, a tokenizer or an encoder chokes on, or a page shows otherwise than stored.
POISON = ("\x00", "\ud800", "\udfff", "\ud83d", "\u202e", "\u2066", "\ufeff", "\r\n")
# Text any field may hold: any Unicode but NUL and lone surrogates (bidi controls, BOMs, line
# separators, combining marks and all), short.
legal_text: st.SearchStrategy[str] = st.lists(
    st.characters(exclude_categories=NOT_UNICODE, exclude_characters="\x00")
    | st.sampled_from([c for c in SPECIAL if "\x00" not in c and not _SURROGATE.search(c)]),
    max_size=20,
).map("".join)
nasty_text: st.SearchStrategy[str] = weighted(
    (6, st.text(max_size=24)),
    (6, st.lists(st.sampled_from(SPECIAL) | st.text(max_size=4), max_size=8).map("".join)),
    (4, st.tuples(legal_text, st.sampled_from(POISON), legal_text).map("".join)),
    (2, st.sampled_from(SHAPED)),
    (1, st.sampled_from(LONG)),
)
short_text: st.SearchStrategy[str] = weighted(
    (3, st.text(max_size=12)),
    (2, st.lists(st.sampled_from(SPECIAL) | st.text(max_size=3), max_size=4).map("".join)),
)

# --- JSON ---------------------------------------------------------------------------------------

EDGE_INTEGERS = (
    0, 1, -1, 2**15, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**62, 2**63 - 1, 2**63, 2**64,
    -(2**63) - 1, 10**30, -(10**30),
)  # fmt: skip
RAW_NUMBERS = tuple(
    Raw(text)
    for text in ("1" * 5_000, "-" + "9" * 4_400, "1e400", "-1e400", "1.0e-400", "-0", "1E2")
)
json_integers: st.SearchStrategy[Any] = weighted(
    (3, st.integers()), (3, st.sampled_from(EDGE_INTEGERS)), (1, st.sampled_from(RAW_NUMBERS))
)
json_floats: st.SearchStrategy[Any] = weighted(
    (3, st.floats()),  # NaN and infinities too, which json.dumps writes as NaN and Infinity
    (1, st.sampled_from((0.0, -0.0, 1e-320, 1.5, 1e308, -1e308))),
    (1, st.sampled_from(RAW_NUMBERS)),
)
json_scalars: st.SearchStrategy[Any] = weighted(
    (1, st.none()),
    (1, st.booleans()),
    (2, json_integers),
    (1, json_floats),
    (4, nasty_text),
)
deep_json: st.SearchStrategy[Any] = st.sampled_from((32, 33, 200, 900, 5_000, 200_000)).flatmap(
    lambda depth: st.sampled_from(
        (
            Raw("[" * depth + "]" * depth),
            Raw('{"a": ' * depth + "1" + "}" * depth),
            Raw("[" * depth),
        )
    )
)
json_values: st.SearchStrategy[Any] = weighted(
    (
        12,
        st.recursive(
            json_scalars,
            lambda children: (
                st.lists(children, max_size=4) | st.dictionaries(short_text, children, max_size=4)
            ),
            max_leaves=10,
        ),
    ),
    (1, deep_json),
)


def near(value: Any) -> st.SearchStrategy[Any]:
    """A value like ``value``, of its type (or not), with the edge cases of that type."""
    if isinstance(value, bool) or value is None:
        return json_values
    if isinstance(value, int):
        return weighted((3, json_integers), (1, json_values))
    if isinstance(value, float):
        return weighted((3, json_floats | json_integers), (1, json_values))
    if isinstance(value, str):
        return weighted((4, nasty_text), (1, json_values))
    if isinstance(value, list):
        if not value:
            return st.lists(json_values, max_size=3)
        items = st.sampled_from(value) | st.one_of(*(mutated(item) for item in value[:4]))
        return weighted(
            (4, st.lists(items, max_size=len(value) + 2)),
            (1, json_values),
        )
    if isinstance(value, dict):
        return mutated(value)
    return json_values


@st.composite
def _mutated_fields(draw: st.DrawFn, template: dict[str, Any]) -> Any:
    pairs: list[tuple[str, Any]] = []
    twice = False
    for key, value in template.items():
        action = draw(st.sampled_from("kkkkkkknnrdt"))
        if action == "k":
            pairs.append((key, value))
        elif action == "n":
            pairs.append((key, draw(near(value))))
        elif action == "r":
            pairs.append((key, draw(json_values)))
        elif action == "t":  # a key twice: the parser keeps one of them
            pairs += [(key, draw(near(value))), (key, value)]
            twice = True
        # "d": left out
    for _ in range(draw(weighted((6, st.just(0)), (1, st.integers(1, 2))))):
        pairs.append(
            (draw(short_text | st.sampled_from(list(template) or ["x"])), draw(json_values))
        )
    return Pairs(pairs) if twice else dict(pairs)


def mutated(template: Any) -> st.SearchStrategy[Any]:
    """``template`` now and then as it is, mostly with some of its fields (at any depth) kept,
    changed to edge values, replaced, left out, given twice or joined by unknown ones, and now and
    then replaced whole."""
    if not isinstance(template, dict):
        return near(template)
    return weighted(
        (1, st.just(template)),
        (8, _mutated_fields(template)),
        (1, json_values),
    )


# --- bytes --------------------------------------------------------------------------------------


@st.composite
def damaged(draw: st.DrawFn, text: str, clean_weight: int = 10) -> bytes:
    """``text`` as bytes: mostly UTF-8 (lone surrogates kept as their invalid bytes), else with a
    byte-order mark, in UTF-16, Latin-1 or cp1252, cut short, or with stray bytes put in."""
    data = text.encode("utf-8", "surrogatepass")
    how = draw(
        weighted(
            (clean_weight, st.just("utf-8")),
            (1, st.just("bom")),
            (1, st.just("utf-16")),
            (1, st.just("latin-1")),
            (1, st.just("cp1252")),
            (2, st.just("cut")),
            (1, st.just("stray")),
        )
    )
    if how == "utf-8":
        return data
    if how == "bom":
        return b"\xef\xbb\xbf" + data
    if how in ("utf-16", "latin-1", "cp1252"):
        return text.encode(how, "replace") if how != "utf-16" else text.encode(how, "surrogatepass")
    if how == "cut":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    at = draw(st.integers(0, len(data)))
    stray = draw(st.binary(min_size=1, max_size=4) | st.sampled_from((b"\xff", b"\xc3", b"\x00")))
    return data[:at] + stray + data[at:]


def json_bytes(
    value_strategy: st.SearchStrategy[Any], clean_weight: int = 30
) -> st.SearchStrategy[bytes]:
    """A JSON document as bytes, escaped to ASCII or not, sometimes damaged; or raw garbage."""
    encoded = st.tuples(value_strategy, st.booleans()).flatmap(
        lambda pair: damaged(dumps(pair[0], ascii_only=pair[1]), clean_weight)
    )
    return weighted((14, encoded), (1, st.binary(max_size=300)))
