"""Case pages: the list, a new case, one case with its evidence, comments, sign-offs and history,
and the forms that act on it. Each action is one service call; a refusal becomes a message."""

from __future__ import annotations

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
    case_next_states,
    case_open,
    case_transition,
    case_update,
    case_viewed,
    comment_add,
)
from reports.services.sign_off import case_sign_off, counted_signers
from scopeweb.accounts.access import access
from scopeweb.accounts.actor import Actor
from scopeweb.feedback import attempt, problems_of, submit

CASES_PER_PAGE = 50


@access("read_signed_case")
def case_list_view(request: HttpRequest) -> HttpResponse:
    actor = Actor.of(request)
    form = CaseFilterForm(request.GET)
    filters = form.cleaned_data if form.is_valid() else {}
    cases = case_list(
        actor.person,
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
            "can_work": actor.may("work_case"),
            "signed_only": not actor.may("work_case"),
        },
    )


@access("work_case")
def case_create_view(request: HttpRequest) -> HttpResponse:
    form = CaseForm(request.POST or None, initial={"profile": "US"})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            case = case_open(
                actor=Actor.of(request),
                title=data["title"],
                description=data["description"],
                severity=data["severity"],
                profile=data["profile"],
                assignees=data["assignees"],
                summary=data["summary"],
            )
        except ValidationError as exc:
            for name, problems in problems_of(exc).items():
                form.add_error(name if name in form.fields else None, problems)
        else:
            messages.success(request, f"Case {case.pk} opened.")
            return redirect("case_detail", case_id=case.pk)
    return render(request, "reports/case_form.html", {"form": form, "case": None})


@access("read_signed_case")
def case_detail_view(request: HttpRequest, case_id: int) -> HttpResponse:
    actor = Actor.of(request)
    case = case_get(actor.person, case_id)
    case_viewed(case=case, actor=actor)
    can_work = actor.may("work_case")
    can_sign = actor.may("sign_off_case")
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
    actor = Actor.of(request)
    case = case_get(actor.person, case_id)
    if case.read_only:
        messages.error(request, f"Case {case.pk} is {STATE_NAMES[case.state]} and read-only.")
        return redirect("case_detail", case_id=case.pk)
    form = CaseEditForm(request.POST) if request.method == "POST" else CaseEditForm.for_case(case)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        fields = {k: data[k] for k in ("title", "description", "severity", "summary")}
        updated = attempt(
            request,
            lambda: case_update(case=case, actor=actor, assignees=data["assignees"], **fields),
            f"Case {case.pk} saved.",
        )
        if updated:
            return redirect("case_detail", case_id=case.pk)
    return render(request, "reports/case_form.html", {"form": form, "case": case})


@access("work_case")
@require_POST
def case_transition_view(request: HttpRequest, case_id: int) -> HttpResponse:
    actor = Actor.of(request)
    case = case_get(actor.person, case_id)
    submit(
        request,
        TransitionForm(request.POST),
        lambda data: case_transition(case=case, actor=actor, to=data["to"], reason=data["reason"]),
        lambda data: f"Case {case.pk} is now {STATE_NAMES[data['to']]}.",
    )
    return redirect("case_detail", case_id=case.pk)


@access("work_case")
@require_POST
def case_comment_view(request: HttpRequest, case_id: int) -> HttpResponse:
    actor = Actor.of(request)
    case = case_get(actor.person, case_id)
    submit(
        request,
        CommentForm(request.POST),
        lambda data: comment_add(case=case, actor=actor, body=data["body"]),
        "Comment added.",
    )
    return redirect("case_detail", case_id=case.pk)


@access("sign_off_case")
@require_POST
def case_sign_off_view(request: HttpRequest, case_id: int) -> HttpResponse:
    actor = Actor.of(request)
    case = case_get(actor.person, case_id)
    submit(
        request,
        SignOffForm(request.POST),
        lambda data: case_sign_off(case=case, actor=actor, statement=data["statement"]),
        "Signed.",
    )
    return redirect("case_detail", case_id=case.pk)
