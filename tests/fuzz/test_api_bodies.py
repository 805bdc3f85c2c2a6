"""Fuzzing the JSON bodies of the API's writes: cases (open, edit, move, comment, evidence,
sign-off), triage decisions, runs, retention profiles, exports and their review, and gate runs.

Each body starts from a valid one and is mutated (wrong types, edge numbers, nasty text, keys
left out, given twice or unknown, the whole body replaced, damaged bytes). A refused body
answers 4xx and changes nothing; an accepted one is what the resource reads back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from gates.models import Gate
from gates.services.definitions import gate_token_create
from governance.models import Export
from governance.services.exports import export_request
from reports.models import AuditCase
from reports.services.cases import case_open, case_transition
from scopeweb.accounts.actor import Actor
from scopeweb.retention.models import RetentionProfile
from tests.factories import make_prompt_set
from tests.fuzz.conftest import (
    Snapshot,
    example,
    fuzz_client,
    fuzz_settings,
    no_server_error,
    nothing_written,
    tried,
)
from tests.fuzz.strategies import json_bytes, mutated
from tests.gates.page_kit import make_gate
from tests.reports.conftest import PIECES, store_trace
from traces.models import Trace

pytestmark = pytest.mark.django_db
SURFACE = "API bodies"


@dataclass
class World:
    """What the bodies name: people, a trace, cases in two states, an export, a gate."""

    clients: dict[str, Client]
    trace: Trace
    case: AuditCase
    awaiting: AuditCase
    export: Export
    gate: Gate


@pytest.fixture
def world(
    reviewer: User, second_reviewer: User, admin: User, monkeypatch: pytest.MonkeyPatch
) -> World:
    monkeypatch.setattr("traces.tokens.tokenizer_decode", lambda ids: [PIECES[i] for i in ids])
    trace = store_trace()
    us = RetentionProfile.objects.get(code="US")
    opener = Actor.command(reviewer)
    case = case_open(actor=opener, title="Jailbreak", profile=us, summary="Seen twice.")
    awaiting = case_open(actor=opener, title="Leak", profile=us, summary="Checked.")
    case_transition(case=awaiting, actor=opener, to="in_review")
    case_transition(case=awaiting, actor=opener, to="awaiting_sign_off")
    uk_case = case_open(actor=opener, title="UK", profile=RetentionProfile.objects.get(code="UK"))
    export = export_request(kind="case", target_id=uk_case.pk, actor=opener, purpose="audit")
    gate = make_gate(admin)
    gate.prompt_set = make_prompt_set(prompts=["a gate prompt"])
    gate.save(update_fields=["prompt_set"])
    key = gate_token_create(gate=gate, name="ci", actor=Actor.command(admin))[1]
    return World(
        clients={
            "reviewer": fuzz_client(reviewer),
            "second reviewer": fuzz_client(second_reviewer),
            "admin": fuzz_client(admin),
            "gate key": fuzz_client(authorization=f"Bearer {key}"),
        },
        trace=trace,
        case=case,
        awaiting=awaiting,
        export=export,
        gate=gate,
    )


@dataclass(frozen=True)
class Endpoint:
    """A write of the API: who sends it, where, a valid body, and where it reads back (with the
    fields that must read back as the write answered them)."""

    who: str
    method: str
    url: Callable[[World], str]
    body: Callable[[World], dict[str, Any]]
    ok: tuple[int, ...]
    read: Callable[[World, dict[str, Any]], str] | None = None
    fields: tuple[str, ...] = ()


CASE_FIELDS = ("title", "description", "severity", "summary", "assignees", "profile", "state")
ENDPOINTS = {
    "open a case": Endpoint(
        "reviewer", "post", lambda w: reverse("api_cases"),
        lambda w: {"title": "Prompt injection", "description": "", "severity": "high",
                   "profile": "US", "assignees": ["rob"], "summary": ""},
        (201,), lambda w, a: reverse("api_case", args=[a["id"]]), CASE_FIELDS,
    ),
    "edit a case": Endpoint(
        "reviewer", "patch", lambda w: reverse("api_case", args=[w.case.pk]),
        lambda w: {"title": "Renamed", "severity": "low", "assignees": ["rita", "rob"],
                   "summary": "Now explained."},
        (200,), lambda w, a: reverse("api_case", args=[w.case.pk]), CASE_FIELDS,
    ),
    "move a case": Endpoint(
        "reviewer", "post", lambda w: reverse("api_case_transition", args=[w.case.pk]),
        lambda w: {"to": "in_review", "reason": ""},
        (200,), lambda w, a: reverse("api_case", args=[w.case.pk]), ("state", "close_reason"),
    ),
    "comment on a case": Endpoint(
        "reviewer", "post", lambda w: reverse("api_case_comments", args=[w.case.pk]),
        lambda w: {"body": "Looks like a jailbreak."}, (201,),
    ),
    "add evidence": Endpoint(
        "reviewer", "post", lambda w: reverse("api_case_evidence", args=[w.case.pk]),
        lambda w: {"trace": w.trace.pk, "token_start": 1, "token_end": 3, "features": [5],
                   "note": "peak"},
        (201,),
    ),
    "sign a case off": Endpoint(
        "second reviewer", "post", lambda w: reverse("api_case_sign_off", args=[w.awaiting.pk]),
        lambda w: {"statement": "I checked the evidence."}, (201,),
    ),
    "decide on a trace": Endpoint(
        "reviewer", "post", lambda w: reverse("api_triage_decide", args=[w.trace.pk]),
        lambda w: {"decision": "reviewed", "note": ""}, (201,),
    ),
    "start a run": Endpoint(
        "reviewer", "post", lambda w: reverse("api_runs"),
        lambda w: {"prompt_set": w.trace.run.prompt_set_id, "sae": w.trace.run.sae.name,
                   "top_k": 16, "capture_limit": 64, "dtype": "auto", "generate_tokens": 0,
                   "seed": 7},
        (202,), lambda w, a: reverse("api_run", args=[a["id"]]),
        ("prompt_set", "top_k", "capture_limit", "seed", "generate_tokens"),
    ),
    "edit a retention profile": Endpoint(
        "admin", "patch", lambda w: reverse("api_retention_profile", args=["US"]),
        lambda w: {"name": "United States", "retention_days": 90, "four_eyes": True,
                   "signoffs_required": 2, "sampling_baseline": 0.02, "capture_limit": 512,
                   "custom_patterns": [{"name": "ticket", "regex": "TCK-\\d{6}",
                                        "category": "TICKET"}]},
        (200,), lambda w, a: reverse("api_retention_profile", args=["US"]),
        ("name", "retention_days", "four_eyes", "signoffs_required", "sampling_baseline",
         "capture_limit", "custom_patterns"),
    ),
    "request an export": Endpoint(
        "reviewer", "post", lambda w: reverse("api_exports"),
        lambda w: {"kind": "case", "target_id": w.case.pk, "purpose": "A regulator asked."},
        (201,), lambda w, a: reverse("api_export", args=[a["id"]]),
        ("kind", "target_id", "purpose", "state"),
    ),
    "refuse an export": Endpoint(
        "admin", "post", lambda w: reverse("api_export_refuse", args=[w.export.pk]),
        lambda w: {"note": "No lawful basis."}, (200,),
        lambda w, a: reverse("api_export", args=[w.export.pk]), ("state", "decision_note"),
    ),
    "start a gate run": Endpoint(
        "gate key", "post", lambda w: reverse("api_gate_runs"),
        lambda w: {"gate": w.gate.name, "checkpoint": "/models/candidate", "label": "PR 7"},
        (201,), lambda w, a: reverse("api_gate_run", args=[a["id"]]),
        ("gate", "gate_version", "state"),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(ENDPOINTS))
@fuzz_settings(0.5)
@given(data=st.data())
def test_a_body_is_refused_naming_the_problem_or_saved_as_answered(
    world: World, name: str, data: st.DataObject
) -> None:
    tried(f"{SURFACE} ({name})")
    endpoint = ENDPOINTS[name]
    body = data.draw(json_bytes(mutated(endpoint.body(world))), label="body")
    client = world.clients[endpoint.who]
    send = getattr(client, endpoint.method)
    with example():
        before = Snapshot()
        answer = send(endpoint.url(world), body, content_type="application/json")
        status = no_server_error(SURFACE, answer, name)
        if status not in endpoint.ok:
            assert 400 <= status < 500, (status, answer.content[:500])
            nothing_written(SURFACE, before, Snapshot(), name)
            return
        if endpoint.read is None:
            return
        written = answer.json()
        read = client.get(endpoint.read(world, written))
        assert no_server_error(SURFACE, read, f"reading back ({name})") == 200
        back = read.json()
        assert {k: back[k] for k in endpoint.fields} == {k: written[k] for k in endpoint.fields}
