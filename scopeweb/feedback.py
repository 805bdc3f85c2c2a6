"""What a page tells its user after a form: the problems of bad input and the refusals of a
service, as messages naming the field at fault, and the success line when the action went
through. Every app's views use these, so a refusal reads the same everywhere."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.forms import Form
from django.http import HttpRequest

from scopeweb.refusals import Refused

WHOLE = ("__all__", "detail")


def problems_of(exc: ValidationError) -> dict[str, list[str]]:
    """A ``ValidationError``'s messages by field (``detail`` when it names none)."""
    if hasattr(exc, "error_dict"):
        return {name: list(found) for name, found in exc.message_dict.items()}
    return {"detail": list(exc.messages)}


def show_problems(request: HttpRequest, errors: Mapping[str, Sequence[Any] | str]) -> None:
    """One error message per field: ``field: problem problem``, or the problem alone when it
    concerns the whole form."""
    for name, found in errors.items():
        text = found if isinstance(found, str) else " ".join(str(p) for p in found)
        messages.error(request, text if name in WHOLE else f"{name}: {text}")


def attempt(request: HttpRequest, action: Callable[[], object], done: str) -> bool:
    """Run one service call: its refusal (state, rules or input) becomes an error message, its
    success the message ``done``. Returns whether it went through."""
    try:
        action()
    except Refused as exc:
        messages.error(request, str(exc))
    except ValidationError as exc:
        show_problems(request, problems_of(exc))
    else:
        messages.success(request, done)
        return True
    return False


def submit(
    request: HttpRequest,
    form: Form,
    action: Callable[[dict[str, Any]], object],
    done: str | Callable[[dict[str, Any]], str],
) -> bool:
    """A posted form and the one service call it asks for: bad input and the service's refusal
    become error messages, success the message ``done`` (or ``done(cleaned_data)``)."""
    if not form.is_valid():
        show_problems(request, form.errors)
        return False
    data = form.cleaned_data
    return attempt(request, lambda: action(data), done if isinstance(done, str) else done(data))
