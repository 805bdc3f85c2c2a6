"""The values inside an OTLP/JSON document: proto3 JSON's message and repeated fields, KeyValue
lists (attributes) and AnyValue, read into Python values with the path of each for errors.

OTLP/JSON per the OTLP specification: 64-bit integers as numbers or decimal strings, bytes as
base64 (standard or URL-safe), absent or null fields as their empty value, unknown fields
ignored. An attribute's value is read only when a reader asks for it, so a malformed attribute
that nothing uses does not refuse the request.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from traces.ingest.records import PayloadError, fail

# An attribute's key -> (its raw AnyValue, its path for errors).
Attributes = dict[str, tuple[Any, str]]

DECIMAL_INTEGER = re.compile(r"-?[0-9]{1,20}")  # int64 and fixed64 in decimal, ASCII digits only
_DOUBLE = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|NaN|-?Infinity")
_ANY_VALUE_KINDS = (
    "stringValue",
    "boolValue",
    "intValue",
    "doubleValue",
    "arrayValue",
    "kvlistValue",
    "bytesValue",
)


def json_object(value: Any, path: str) -> dict[str, Any]:
    """``value`` when it is a JSON object; else a PayloadError at ``path``."""
    if not isinstance(value, dict):
        fail(path, "an object", value)
    return value


def message_field(value: Any, path: str) -> dict[str, Any]:
    """A message field: absent or null is an empty message, as in proto3 JSON."""
    return {} if value is None else json_object(value, path)


def repeated_field(value: Any, path: str) -> list[Any]:
    """A repeated field: absent or null is empty, as in proto3 JSON."""
    if value is None:
        return []
    if not isinstance(value, list):
        fail(path, "an array", value)
    return value


def key_values(value: Any, path: str) -> Attributes:
    """A KeyValue list as key -> (raw value, path); values are read only when used."""
    attributes: Attributes = {}
    for index, raw in enumerate(repeated_field(value, path)):
        entry = json_object(raw, f"{path}[{index}]")
        key = entry.get("key")
        if not isinstance(key, str):
            fail(f"{path}[{index}].key", "a string", key)
        attributes[key] = (entry.get("value"), f"{path}[{key}]")
    return attributes


def attribute_value(attributes: Attributes, key: str) -> Any:
    """The Python value of an attribute (see ``any_value``); None when absent."""
    if key not in attributes:
        return None
    raw, path = attributes[key]
    return any_value(raw, path)


def any_value(raw: Any, path: str) -> Any:
    """An OTLP AnyValue as a Python value: str, bool, int, float, bytes, list, dict or None.

    Recursion is bounded: the request nests no deeper than ``MAX_DEPTH`` by then.
    """
    value = message_field(raw, path)
    kinds = [kind for kind in _ANY_VALUE_KINDS if kind in value]
    if len(kinds) > 1:
        raise PayloadError(path, f"holds {' and '.join(kinds)}; an AnyValue holds one value")
    if not kinds:
        return None
    kind = kinds[0]
    return _READERS[kind](value[kind], f"{path}.{kind}")


def _string_value(value: Any, path: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        fail(path, "a string", value)
    return value


def _bool_value(value: Any, path: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        fail(path, "true or false", value)
    return value


def _int_value(value: Any, path: str) -> int:
    if value is None:
        return 0
    if isinstance(value, str) and DECIMAL_INTEGER.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
        fail(path, "a 64-bit integer (a number or a decimal string)", value)
    return value


def _double_value(value: Any, path: str) -> float:
    if value is None:
        return 0.0
    if isinstance(value, str) and _DOUBLE.fullmatch(value):
        return float(value)  # a string too big for a double is infinity
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(path, "a number", value)
    try:
        return float(value)
    except OverflowError:  # an integer beyond any double
        fail(path, "a number", value)


def _bytes_value(value: Any, path: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        fail(path, "base64 text", value)
    standard = value.replace("-", "+").replace("_", "/")  # proto3 JSON also takes URL-safe
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except binascii.Error:
        fail(path, "base64 text", value)


def _array_value(value: Any, path: str) -> list[Any]:
    array = message_field(value, path)
    values = repeated_field(array.get("values"), f"{path}.values")
    return [any_value(item, f"{path}.values[{index}]") for index, item in enumerate(values)]


def _kvlist_value(value: Any, path: str) -> dict[str, Any]:
    kvlist = message_field(value, path)
    entries = key_values(kvlist.get("values"), f"{path}.values")
    return {key: any_value(raw, entry_path) for key, (raw, entry_path) in entries.items()}


_READERS = {
    "stringValue": _string_value,
    "boolValue": _bool_value,
    "intValue": _int_value,
    "doubleValue": _double_value,
    "arrayValue": _array_value,
    "kvlistValue": _kvlist_value,
    "bytesValue": _bytes_value,
}
