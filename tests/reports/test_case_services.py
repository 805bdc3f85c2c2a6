"""The case state machine, sign-off rules per profile, evidence pins and immutability, through
the services."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.utils import timezone

from reports.models import AuditCase, CaseState, Evidence
from reports.services.cases import (
    CaseRefused,
    case_next_states,
    case_open,
    case_transition,
    case_update,
    comment_add,
)
from reports.services.evidence import evidence_add, evidence_remove
from reports.services.sign_off import case_sign_off
from scopeweb.accounts.actor import Actor
from scopeweb.audit.models import AuditEvent
from scopeweb.retention.models import RetentionProfile
from tests.factories import make_user
from tests.reports.conftest import make_case
from traces.bundle.format import chunk_name
from traces.models import Trace

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fake_tokenizer")]
S = CaseState
QUEUE = "reports.services.sign_off.report_queue"

# (from, to) -> None when allowed, else words the refusal must hold.
TRANSITIONS: list[tuple[str, str, str | None]] = [
    (S.OPEN, S.IN_REVIEW, None),
    (S.OPEN, S.CLOSED, None),
    (S.OPEN, S.OPEN, "from open to open: the case is already open"),
    (S.OPEN, S.AWAITING_SIGN_OFF, "from open to awaiting sign-off: it goes through in review"),
    (S.OPEN, S.SIGNED_OFF, "from open to signed off: a case is signed off by its sign-offs"),
    (S.IN_REVIEW, S.AWAITING_SIGN_OFF, None),
    (S.IN_REVIEW, S.CLOSED, None),
    (S.IN_REVIEW, S.OPEN, "from in review to open: a case never goes back to open"),
    (S.IN_REVIEW, S.IN_REVIEW, "the case is already in review"),
    (S.IN_REVIEW, S.SIGNED_OFF, "from in review to signed off: a case is signed off by its"),
    (S.AWAITING_SIGN_OFF, S.IN_REVIEW, None),
    (S.AWAITING_SIGN_OFF, S.CLOSED, None),
    (S.AWAITING_SIGN_OFF, S.OPEN, "never goes back to open"),
    (S.AWAITING_SIGN_OFF, S.SIGNED_OFF, "a case is signed off by its sign-offs"),
    (S.AWAITING_SIGN_OFF, S.AWAITING_SIGN_OFF, "already awaiting sign-off"),
    *[(S.SIGNED_OFF, to, "from signed off to") for to in S.values],
    *[(S.CLOSED, to, "from closed to") for to in S.values],
]


@pytest.mark.parametrize(("start", "to", "refusal"), TRANSITIONS)
def test_every_transition_is_allowed_or_refused_with_a_reason(
    reviewer: User, start: str, to: str, refusal: str | None
) -> None:
    case = make_case(reviewer, start)
    if refusal is None:
        assert to in case_next_states(case)
        case = case_transition(
            case=case, actor=Actor.command(reviewer), to=to, reason="duplicate of case 1"
        )
        assert case.state == to
        event = AuditEvent.objects.filter(action="case.transition").get()
        assert (event.object_type, event.object_id) == ("auditcase", str(case.pk))
        assert (event.before, event.after) == ({"state": start}, {"state": to})
    else:
        assert to not in case_next_states(case)
        with pytest.raises(CaseRefused) as refused:
            case_transition(case=case, actor=Actor.command(reviewer), to=to, reason="r")
        assert refusal in str(refused.value)
        if start in (S.SIGNED_OFF, S.CLOSED) and start != to:
            assert "read-only" in str(refused.value)
        assert AuditCase.objects.get(pk=case.pk).state == start
        assert not AuditEvent.objects.filter(action="case.transition").exists()


def test_the_table_covers_every_pair_of_states() -> None:
    assert {(a, b) for a, b, _ in TRANSITIONS} == {(a, b) for a in S.values for b in S.values}


def test_closing_needs_a_reason_and_holds_the_traces_for_the_audit_extension(
    reviewer: User,
) -> None:
    case = make_case(reviewer, S.IN_REVIEW, profile="FR")
    with pytest.raises(ValidationError, match="needs a reason"):
        case_transition(case=case, actor=Actor.command(reviewer), to=S.CLOSED)
    case = case_transition(
        case=case, actor=Actor.command(reviewer), to=S.CLOSED, reason="false positive"
    )
    days = RetentionProfile.objects.get(code="FR").audit_extension_days
    assert case.closed_at is not None and case.close_reason == "false positive"
    assert case.hold_until is not None
    assert abs(case.hold_until - (timezone.now() + timedelta(days=days))) < timedelta(minutes=1)


def test_awaiting_sign_off_needs_the_executive_summary(reviewer: User) -> None:
    case = make_case(reviewer, S.IN_REVIEW, summary="")
    with pytest.raises(CaseRefused, match="write the executive summary first"):
        case_transition(case=case, actor=Actor.command(reviewer), to=S.AWAITING_SIGN_OFF)
    case_update(
        case=case,
        actor=Actor.command(reviewer),
        summary="Two traces follow an injected instruction.",
    )
    assert case_transition(
        case=case, actor=Actor.command(reviewer), to=S.AWAITING_SIGN_OFF
    ).state == (S.AWAITING_SIGN_OFF)
    with pytest.raises(ValidationError, match="keeps its executive summary"):
        case_update(case=case, actor=Actor.command(reviewer), summary="  ")


def _sign(case: AuditCase, user: User) -> AuditCase:
    case_sign_off(case=case, actor=Actor.command(user), statement=f"Checked by {user.username}.")
    return AuditCase.objects.get(pk=case.pk)


@pytest.mark.parametrize(
    ("profile", "four_eyes", "required"), [("US", False, 1), ("UK", True, 1), ("FR", True, 2)]
)
def test_sign_off_counts_distinct_signers_per_profile(
    django_capture_on_commit_callbacks: Any,
    reviewer: User,
    second_reviewer: User,
    admin: User,
    profile: str,
    four_eyes: bool,
    required: int,
) -> None:
    seeded = RetentionProfile.objects.get(code=profile)
    assert (seeded.four_eyes, seeded.signoffs_required) == (four_eyes, required)
    case = make_case(reviewer, S.AWAITING_SIGN_OFF, profile=profile)
    signers = [second_reviewer, admin] if four_eyes else [reviewer, second_reviewer]
    with mock.patch(QUEUE) as queue, django_capture_on_commit_callbacks(execute=True):
        for number, signer in enumerate(signers[:required], start=1):
            assert case.state == S.AWAITING_SIGN_OFF
            case = _sign(case, signer)
            assert case.sign_offs.count() == number
    assert case.state == S.SIGNED_OFF and case.signed_off_at is not None
    assert case.hold_until is not None
    extension = timedelta(days=seeded.audit_extension_days)
    assert abs(case.hold_until - (case.signed_off_at + extension)) < timedelta(seconds=5)
    queue.assert_called_once_with(case=case, actor=Actor.command(signers[required - 1]))
    with pytest.raises(CaseRefused, match="signed off and read-only"):
        _sign(case, make_user("late", "reviewer"))


@pytest.mark.parametrize("profile", ["UK", "FR"])
def test_sign_off_by_case_opener_is_refused_under_four_eyes(
    reviewer: User, second_reviewer: User, profile: str
) -> None:
    case = make_case(reviewer, S.AWAITING_SIGN_OFF, profile=profile)
    with mock.patch(QUEUE) as queue:
        with pytest.raises(CaseRefused, match="four-eyes sign-off: the case's opener \\(rita\\)"):
            _sign(case, reviewer)
        assert not case.sign_offs.exists()
        if profile == "FR":  # two distinct signers besides the opener
            assert _sign(case, second_reviewer).state == S.AWAITING_SIGN_OFF
    queue.assert_not_called()


def test_four_eyes_switched_on_later_does_not_count_the_openers_sign_off(
    django_capture_on_commit_callbacks: Any, reviewer: User, second_reviewer: User, admin: User
) -> None:
    RetentionProfile.objects.filter(code="US").update(signoffs_required=2)
    case = make_case(reviewer, S.AWAITING_SIGN_OFF, profile="US")
    with mock.patch(QUEUE), django_capture_on_commit_callbacks(execute=True):
        _sign(case, reviewer)
        RetentionProfile.objects.filter(code="US").update(four_eyes=True)
        assert _sign(case, second_reviewer).state == S.AWAITING_SIGN_OFF  # 1 counted of 2
        assert _sign(case, admin).state == S.SIGNED_OFF


def test_sign_off_refusals(reviewer: User, second_reviewer: User, auditor: User) -> None:
    RetentionProfile.objects.filter(code="US").update(signoffs_required=2)
    case = make_case(reviewer, S.IN_REVIEW)
    with pytest.raises(CaseRefused, match="case that is in review: it must be awaiting sign-off"):
        _sign(case, second_reviewer)
    case.state = S.AWAITING_SIGN_OFF
    case.save()
    with pytest.raises(CaseRefused, match="audrey may not sign cases off"):
        _sign(case, auditor)
    with pytest.raises(ValidationError, match="statement must not be empty"):
        case_sign_off(case=case, actor=Actor.command(second_reviewer), statement=" ")
    _sign(case, second_reviewer)
    with pytest.raises(
        CaseRefused, match=r"already signed case \d+ off; a case needs distinct signers"
    ):
        _sign(case, second_reviewer)


def test_sending_back_withdraws_the_sign_offs_given_so_far(
    reviewer: User, second_reviewer: User
) -> None:
    case = make_case(reviewer, S.AWAITING_SIGN_OFF, profile="FR")
    _sign(case, second_reviewer)
    case_transition(case=case, actor=Actor.command(reviewer), to=S.IN_REVIEW)
    assert not case.sign_offs.exists()
    event = AuditEvent.objects.filter(action="case.transition").get()
    assert event.detail == {"withdrawn_sign_offs": ["rob"]}


def test_evidence_pins_the_manifest_chunk_files_and_token_text(
    reviewer: User, stored_trace: Trace
) -> None:
    case = case_open(
        actor=Actor.command(reviewer), title="Injection", profile=stored_trace.run.profile
    )
    evidence = evidence_add(
        case=case, actor=Actor.command(reviewer), trace=stored_trace, token_start=1, token_end=4,
        features=[5, 9, 5], note="follows the injected instruction",
    )  # fmt: skip
    assert evidence.token_text == " Ignore all rules"
    assert evidence.features == [5, 9]
    prefix = stored_trace.run.artifact_prefix
    expected = {}
    for name in (f"{prefix}/manifest.json", chunk_name(prefix, 0, "tokens"),
                 chunk_name(prefix, 0, "features")):  # fmt: skip
        with default_storage.open(name, "rb") as handle:
            expected[name] = hashlib.sha256(handle.read()).hexdigest()
    expected[f"trace {stored_trace.pk} arrays"] = stored_trace.arrays_sha256
    expected["token text"] = hashlib.sha256(b" Ignore all rules").hexdigest()
    assert evidence.pins == expected
    assert expected[f"{prefix}/manifest.json"] == stored_trace.run.manifest_sha256
    event = AuditEvent.objects.get(action="case.evidence_add")
    assert event.object_id == str(case.pk) and event.detail["pins"] == expected


@pytest.mark.parametrize(
    ("start", "end", "features", "problem"),
    [
        (3, 3, [], "empty or negative"),
        (4, 2, [], "empty or negative"),
        (0, 6, [], "has 5 tokens (0 to 4); the range ends at 6"),
        (1, 2, [64], "Feature 64 is outside the SAE's width (0 to 63)"),
        (1, 2, [-1], "Feature -1 is outside"),
    ],
)
def test_evidence_refuses_ranges_and_features_outside_the_trace(
    reviewer: User, stored_trace: Trace, start: int, end: int, features: list[int], problem: str
) -> None:
    case = make_case(reviewer)
    with pytest.raises(ValidationError, match=problem.replace("(", "\\(").replace(")", "\\)")):
        evidence_add(
            case=case,
            actor=Actor.command(reviewer),
            trace=stored_trace,
            token_start=start,
            token_end=end,
            features=features,
        )
    assert not Evidence.objects.exists()


def test_evidence_refuses_artifacts_that_changed_or_are_gone(
    reviewer: User, stored_trace: Trace
) -> None:
    case = make_case(reviewer)
    prefix = stored_trace.run.artifact_prefix
    features_file = chunk_name(prefix, 0, "features")
    with default_storage.open(features_file, "rb") as handle:
        data = handle.read()
    default_storage.delete(features_file)
    default_storage.save(features_file, __import__("io").BytesIO(data + b"x"))
    with pytest.raises(ValidationError, match="no longer matches the manifest"):
        evidence_add(
            case=case, actor=Actor.command(reviewer), trace=stored_trace, token_start=1, token_end=2
        )
    default_storage.delete(f"{prefix}/manifest.json")
    with pytest.raises(ValidationError, match="has no stored manifest"):
        evidence_add(
            case=case, actor=Actor.command(reviewer), trace=stored_trace, token_start=1, token_end=2
        )
    assert not Evidence.objects.exists()


@pytest.mark.parametrize("state", [S.SIGNED_OFF, S.CLOSED])
def test_read_only_cases_refuse_every_edit(reviewer: User, stored_trace: Trace, state: str) -> None:
    case = make_case(reviewer, S.IN_REVIEW)
    evidence = evidence_add(
        case=case, actor=Actor.command(reviewer), trace=stored_trace, token_start=1, token_end=2
    )
    AuditCase.objects.filter(pk=case.pk).update(state=state)
    name = "signed off" if state == S.SIGNED_OFF else "closed"
    edits: list[Callable[[], object]] = [
        lambda: case_update(case=case, actor=Actor.command(reviewer), title="new"),
        lambda: evidence_add(
            case=case, actor=Actor.command(reviewer), trace=stored_trace, token_start=1, token_end=2
        ),
        lambda: evidence_remove(case=case, actor=Actor.command(reviewer), evidence=evidence),
        lambda: comment_add(case=case, actor=Actor.command(reviewer), body="late"),
        lambda: case_transition(case=case, actor=Actor.command(reviewer), to=S.IN_REVIEW),
    ]
    for edit in edits:
        with pytest.raises(CaseRefused, match=f"{name}.*read-only"):
            edit()
    assert Evidence.objects.filter(case=case).count() == 1
    assert not case.comments.exists()
    assert AuditCase.objects.get(pk=case.pk).title == "Prompt injection"


def test_every_action_is_in_the_cases_history(
    reviewer: User, second_reviewer: User, stored_trace: Trace, auditor: User
) -> None:
    case = case_open(
        actor=Actor.command(reviewer),
        title="t",
        profile=stored_trace.run.profile,
        assignees=[second_reviewer],
    )
    with pytest.raises(ValidationError, match="audrey cannot"):
        case_update(case=case, actor=Actor.command(reviewer), assignees=[auditor])
    case_update(case=case, actor=Actor.command(reviewer), severity="high")
    evidence = evidence_add(
        case=case, actor=Actor.command(reviewer), trace=stored_trace, token_start=1, token_end=3
    )
    evidence_remove(case=case, actor=Actor.command(reviewer), evidence=evidence)
    comment_add(case=case, actor=Actor.command(second_reviewer), body="agree")
    actions = list(
        AuditEvent.objects.filter(object_type="auditcase", object_id=str(case.pk))
        .order_by("id")
        .values_list("action", "actor")
    )
    assert actions == [
        ("case.open", "rita"), ("case.update", "rita"), ("case.evidence_add", "rita"),
        ("case.evidence_remove", "rita"), ("case.comment", "rob"),
    ]  # fmt: skip
    update = AuditEvent.objects.get(action="case.update")
    assert (update.before, update.after) == ({"severity": "medium"}, {"severity": "high"})
