"""Refusals: the one exception type a service raises to refuse an action in words a user can act
on, and the API's exception handler that answers it as JSON (never a bare 500 for bad input).

Apps subclass ``Refused`` (``CaseRefused``, ``PromptFileError``, ``LinkRefused`` …); this
module knows none of them. Pages show ``str(exc)`` as a message; the API answers
``{"detail": …, "field": …, "problems": […]}`` with the refusal's ``status``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import status as http
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def quotable(text: str) -> str:
    """``text`` as a refusal may quote it: a NUL or an unpaired surrogate (which a JSON escape
    such as ``"\\ud800"`` makes) written as its escape, so that every page, API answer and
    database column can carry the words."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


class Refused(Exception):
    """An action refused, with why.

    - ``status``: what the API answers with; 409 (the state of things refuses it) by default,
      400 for bad input, 404 or 410 for what is not (or no longer) there;
    - ``field``: the input at fault, when one is;
    - ``problems``: itemised problems (dicts, or objects with ``as_dict()``), e.g. each bad
      line of a file with its number.
    """

    status: int = http.HTTP_409_CONFLICT

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        field: str = "",
        problems: Sequence[Any] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.field = field
        self.problems = list(problems)

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"detail": self.message}
        if self.field:
            body["field"] = self.field
        if self.problems:
            body["problems"] = [p.as_dict() if hasattr(p, "as_dict") else p for p in self.problems]
        return body


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Refused):
        return Response(exc.as_dict(), status=exc.status)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        return Response(detail, status=http.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)
