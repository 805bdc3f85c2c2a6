"""YAML documents checked against a published JSON Schema: instrumentation manifests and gates.

One reader for both, so that a bad document is refused the same way wherever it comes from (the
page's editor, an import, the API): YAML errors with their line and column, schema errors with
the path of each field at fault.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from scopeweb.refusals import Refused


@cache
def load_schema(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def parse_yaml_document(
    text: str,
    *,
    schema: dict[str, Any],
    what: str,
    example: str,
    refusal: type[Refused],
    max_bytes: int = 64 * 1024,
) -> dict[str, Any]:
    """A YAML (or JSON) document → a dict that matches ``schema``; otherwise ``refusal`` naming
    every problem with its line or field path. ``what`` names the document ("manifest"),
    ``example`` its first keys for the message when it is not a mapping."""
    if len(text.encode("utf-8")) > max_bytes:
        raise refusal(f"The {what} is over {max_bytes // 1024} KiB.", status=400)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise refusal(f"The {what} is not valid YAML: {where}{problem}", status=400) from None
    if not isinstance(document, dict):
        raise refusal(f"The {what} must be a mapping ({example}).", status=400)
    errors = Draft202012Validator(schema).iter_errors(document)
    problems = sorted(errors, key=lambda e: list(e.path))
    if problems:
        raise refusal(
            f"The {what} does not match its schema.",
            status=400,
            problems=[
                {"field": ".".join(str(p) for p in error.path) or "(top)", "problem": error.message}
                for error in problems
            ],
        )
    return document
