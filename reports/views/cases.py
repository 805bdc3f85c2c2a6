"""Case pages: the list, a new case, one case with its evidence, comments, sign-offs and history,
and the forms that act on it. Each action is one service call; a refusal becomes a message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from reports.forms.cases import (
    CaseEditForm,
    CaseFilterForm,
    CaseForm,
    CommentForm,
    EvidenceForm,
    SignOffForm,
    TransitionForm,
)
from reports.models import CaseState
from reports.selectors.cases import (
    case_evidence,
    case_get,
    case_history,
    case_list,
)
from reports.services.cases import (
    STATE_NAMES,
    CaseRefused,
    case_next_states,
    case_open,
    case_transition,
    case_update,
    case_viewed,
    comment_add,
)
from reports.services.sign_off import case_sign_off, counted_signers
from scopeweb.accounts.access import access, user_may

CASES_PER_PAGE = 50


def _problems(request: HttpRequest, errors: dict[str, Any]) -> None:
    for name, problems in errors.items():
        text = " ".join(str(p) for p in problems) if isinstance(problems, list) else problems
        messages.error(request, text if name in ("__all__", "detail") else f"{name}: {text}")


def _act(request: HttpRequest, action: Callable[[], Any], done: str) -> bool:
    """Run one service call; its refusal (state, rules or input) becomes an error message."""
    try:
        action()
    except CaseRefused as exc:
        messages.error(request, str(exc))
    except ValidationError as exc:
        _problems(
            request, exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        )
    else:
        messages.success(request, done)
        return True
    return False


@access("read_signed_case")
def case_list_view(request: HttpRequest) -> HttpResponse:
    form = CaseFilterForm(request.GET)
    filters = form.cleaned_data if form.is_valid() else {}
    cases = case_list(
        request.user,
        state=filters.get("state", ""),
        severity=filters.get("severity", ""),
        profile=filters.get("profile", ""),
    )
    page = Paginator(cases, CASES_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "reports/case_list.html",
        {
            "form": form,
            "page": page,
            "can_work": user_may(request.user, "work_case"),
            "signed_only": not user_may(request.user, "work_case"),
        },
    )


@access("work_case")
def case_create_view(request: HttpRequest) -> HttpResponse:
    form = CaseForm(request.POST or None, initial={"profile": "US"})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            case = case_open(
                user=request.user,  # type: ignore[arg-type]
                title=data["title"],
                description=data["description"],
                severity=data["severity"],
                profile=data["profile"],
                assignees=data["assignees"],
                summary=data["summary"],
                request=request,
            )
        except ValidationError as exc:
            for name, problems in exc.message_dict.items():
                form.add_error(name if name in form.fields else None, problems)
        else:
            messages.success(request, f"Case {case.pk} opened.")
            return redirect("case_detail", case_id=case.pk)
    return render(request, "reports/case_form.html", {"form": form, "case": None})


@access("read_signed_case")
def case_detail_view(request: HttpRequest, case_id: int) -> HttpResponse:
    case = case_get(request.user, case_id)
    case_viewed(case=case, request=request)
    can_work = user_may(request.user, "work_case")
    can_sign = user_may(request.user, "sign_off_case")
    editable = can_work and not case.read_only
    sign_offs = list(case.sign_offs.select_related("signer"))
    context: dict[str, Any] = {
        "case": case,
        "evidence": case_evidence(case, redact=not can_work),
        "comments": case.comments.select_related("author"),
        "sign_offs": sign_offs,
        "counted": len(counted_signers(case)),
        "history": case_history(case),
        "assignees": case.assignees.order_by("username"),
        "editable": editable,
        "can_work": can_work,
        "next_states": [(s, STATE_NAMES[s]) for s in case_next_states(case)] if editable else [],
        "state_name": STATE_NAMES[case.state],
        "report_pending": case.state == CaseState.SIGNED_OFF,
    }
    if editable:
        context |= {"evidence_form": EvidenceForm(), "comment_form": CommentForm()}
        if can_sign and case.state == CaseState.AWAITING_SIGN_OFF:
            context["sign_off_form"] = SignOffForm()
    return render(request, "reports/case_detail.html", context)


@access("work_case")
def case_edit_view(request: HttpRequest, case_id: int) -> HttpResponse:
    case = case_get(request.user, case_id)
    if case.read_only:
        messages.error(request, f"Case {case.pk} is {STATE_NAMES[case.state]} and read-only.")
        return redirect("case_detail", case_id=case.pk)
    form = CaseEditForm(request.POST) if request.method == "POST" else CaseEditForm.for_case(case)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        fields = {k: data[k] for k in ("title", "description", "severity", "summary")}
        updated = _act(
            request,
            lambda: case_update(
                case=case,
                user=request.user,  # type: ignore[arg-type]
                assignees=data["assignees"],
                request=request,
                **fields,
            ),
            f"Case {case.pk} saved.",
        )
        if updated:
            return redirect("case_detail", case_id=case.pk)
    return render(request, "reports/case_form.html", {"form": form, "case": case})


@access("work_case")
@require_POST
def case_transition_view(request: HttpRequest, case_id: int) -> HttpResponse:
    case = case_get(request.user, case_id)
    form = TransitionForm(request.POST)
    if not form.is_valid():
        _problems(request, form.errors)
    else:
        to = form.cleaned_data["to"]
        _act(
            request,
            lambda: case_transition(
                case=case,
                user=request.user,  # type: ignore[arg-type]
                to=to,
                reason=form.cleaned_data["reason"],
                request=request,
            ),
            f"Case {case.pk} is now {STATE_NAMES[to]}.",
        )
    return redirect("case_detail", case_id=case.pk)


@access("work_case")
@require_POST
def case_comment_view(request: HttpRequest, case_id: int) -> HttpResponse:
    case = case_get(request.user, case_id)
    form = CommentForm(request.POST)
    if not form.is_valid():
        _problems(request, form.errors)
    else:
        _act(
            request,
            lambda: comment_add(
                case=case,
                user=request.user,  # type: ignore[arg-type]
                body=form.cleaned_data["body"],
                request=request,
            ),
            "Comment added.",
        )
    return redirect("case_detail", case_id=case.pk)


@access("sign_off_case")
@require_POST
def case_sign_off_view(request: HttpRequest, case_id: int) -> HttpResponse:
    case = case_get(request.user, case_id)
    form = SignOffForm(request.POST)
    if not form.is_valid():
        _problems(request, form.errors)
    else:
        _act(
            request,
            lambda: case_sign_off(
                case=case,
                signer=request.user,  # type: ignore[arg-type]
                statement=form.cleaned_data["statement"],
                request=request,
            ),
            "Signed.",
        )
    return redirect("case_detail", case_id=case.pk)
