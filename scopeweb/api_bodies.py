"""What the API reads and writes: DRF's parsers and JSON renderer, answering what bad input can
hold with a 400 instead of a 500.

- ``json.load`` recurses once per level of arrays and objects, so a body such as ``[[[[…`` a few
  thousand levels deep ends in ``RecursionError``, which DRF's parser lets through.
- A JSON escape such as ``"\\ud800"`` parses to an unpaired surrogate, which UTF-8 cannot encode;
  an error message quoting it (``"\\ud800" is not a valid choice``) made DRF's renderer fail.
- NUL (``"\\u0000"`` in JSON, ``%00`` in a form) cannot be held by any PostgreSQL text or jsonb
  value: a field that looks a value up (a profile's code, a user's name) or keeps JSON as given
  failed in the database. A body holding one is refused, naming where.
- ``1e400`` parses to infinity, which DRF refuses as ``Infinity`` but not as a number: a lookup of
  a row by that id failed converting it. A body holding one is refused, naming where.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from django.http import QueryDict
from rest_framework import parsers, renderers
from rest_framework.exceptions import ParseError

if TYPE_CHECKING:
    from django.http.request import _ImmutableQueryDict


class JSONParser(parsers.JSONParser):
    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - arrays and objects nested too deeply") from None
        refusal = _unfit_value(data)
        if refusal is not None:
            raise ParseError(f"JSON parse error - {refusal}")
        return data


def _unfit_value(value: Any) -> str | None:
    """What in a parsed body no field may take, and where (``assignees[1]``), or None: a key or
    a string holding NUL, or a number beyond a double's range (``1e400`` parses to infinity,
    which a lookup of a row by its id cannot convert)."""
    pending: list[tuple[Any, str]] = [(value, "")]
    while pending:
        item, path = pending.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                where = f"{path}.{key}" if path else key
                if "\x00" in key:
                    shown = where.replace("\x00", "\\u0000")
                    return f"{shown} holds a NUL (\\u0000)"
                pending.append((child, where))
        elif isinstance(item, list):
            pending += [(child, f"{path}[{index}]") for index, child in enumerate(item)]
        elif isinstance(item, str) and "\x00" in item:
            return f"{path or 'the body'} holds a NUL (\\u0000)"
        elif isinstance(item, float) and not math.isfinite(item):
            return f"{path or 'the body'} is a number beyond the range of a double"
    return None


def _refuse_nul_fields(data: QueryDict) -> None:
    for key, values in data.lists():
        if "\x00" in key or any("\x00" in value for value in values):
            shown = key.replace("\x00", "%00")
            raise ParseError(f"Form parse error - the field {shown} holds a NUL (%00)")


class FormParser(parsers.FormParser):
    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> _ImmutableQueryDict:
        data = super().parse(stream, media_type, parser_context)
        _refuse_nul_fields(data)
        return data


class MultiPartParser(parsers.MultiPartParser):
    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> parsers.DataAndFiles[Any, Any]:
        parsed = super().parse(stream, media_type, parser_context)
        _refuse_nul_fields(parsed.data)
        return parsed


class _AsciiJSONRenderer(renderers.JSONRenderer):
    ensure_ascii = True


class JSONRenderer(renderers.JSONRenderer):
    """Writes UTF-8 JSON, or ASCII JSON (``\\ud800`` escaped) when the answer holds what UTF-8
    cannot encode."""

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            return _AsciiJSONRenderer().render(data, accepted_media_type, renderer_context)
