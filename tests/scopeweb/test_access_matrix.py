"""Every route declares who reaches it, and each role gets the answer the design gives it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from gates.models import GateRun
from gates.services.definitions import gate_save, gate_token_create, parse_gate_yaml
from governance.models import Export, ExportState, LegalHold
from reports.models import AuditCase, CaseState
from reports.pdf.signing import dev_key_create
from scopeweb.accounts.access import rule_of
from scopeweb.accounts.actor import Actor
from scopeweb.accounts.models import ApiToken
from scopeweb.accounts.services import api_token_create
from scopeweb.jobs.models import JobKind
from scopeweb.jobs.services import job_create
from tests.conftest import client_for
from tests.factories import make_prompt_set, make_trace
from traces.models import SaeRecord
from traces.services.manifests import manifest_save, parse_manifest_yaml
from traces.services.runs import run_start

ROLES = ("anonymous", "reviewer", "auditor", "admin", "outsider")


def _row(anonymous: int, reviewer: int, auditor: int, admin: int, outsider: int) -> dict[str, int]:
    return dict(zip(ROLES, (anonymous, reviewer, auditor, admin, outsider), strict=True))


SIGNED_IN_PAGE = _row(302, 200, 200, 200, 200)
REVIEWER_PAGE = _row(302, 200, 403, 200, 403)
ADMIN_PAGE = _row(302, 403, 403, 200, 403)
READER_PAGE = _row(302, 200, 200, 200, 403)  # reviewers, auditors and admins
SIGNED_IN_API = _row(401, 200, 200, 200, 200)
REVIEWER_API = _row(401, 200, 403, 200, 403)
ADMIN_API = _row(401, 403, 403, 200, 403)
READER_API = _row(401, 200, 200, 200, 403)

# The answer to a GET from each member of the cast. Written out by hand, not derived from the
# declarations, so a wrong declaration fails here.
EXPECTED: dict[str, dict[str, int]] = {
    "home": SIGNED_IN_PAGE,
    "healthz": _row(200, 200, 200, 200, 200),
    # keys, not people: no user reaches ingestion (401: it asks for an ingest key), and
    # /metrics is off (404) until SCOPEWEB_METRICS_TOKEN is set
    "api_ingest": _row(401, 401, 401, 401, 401),
    "api_ingest_otlp": _row(401, 401, 401, 401, 401),
    "metrics": _row(404, 404, 404, 404, 404),
    # tracing: manifests are the admins'; the operations page is for every reader
    "manifest_list": ADMIN_PAGE,
    "manifest_create": ADMIN_PAGE,
    "manifest_detail": ADMIN_PAGE,
    "manifest_export": ADMIN_PAGE,
    "ingest_token_create": _row(302, 403, 403, 405, 403),  # POST only, after the role check
    "ingest_token_revoke": _row(302, 403, 403, 405, 403),
    "forensic_window_request": _row(302, 403, 403, 405, 403),
    "forensic_window_approve": _row(302, 403, 403, 405, 403),
    "manifest_schema": SIGNED_IN_PAGE,
    "operations": READER_PAGE,
    "login": _row(200, 302, 302, 302, 302),
    "logout": _row(405, 405, 405, 405, 405),  # POST only
    "password_change": SIGNED_IN_PAGE,
    "password_change_done": SIGNED_IN_PAGE,
    "token_list": SIGNED_IN_PAGE,
    "token_revoke": _row(302, 405, 405, 405, 405),  # POST only, after the sign-in check
    "user_list": ADMIN_PAGE,
    "user_create": ADMIN_PAGE,
    "user_edit": ADMIN_PAGE,
    "user_unlock": _row(302, 403, 403, 405, 403),  # POST only, after the role check
    "retention_profile_list": ADMIN_PAGE,
    "retention_profile_edit": ADMIN_PAGE,
    # legal holds, expiries, the purge, storage cost (admins only)
    "retention_holds": ADMIN_PAGE,
    "retention_hold_place": ADMIN_PAGE,
    "retention_hold_lift": ADMIN_PAGE,
    "retention_expiries": ADMIN_PAGE,
    "retention_purge_now": _row(302, 403, 403, 405, 403),  # POST only, after the role check
    "retention_purge_preview": ADMIN_PAGE,
    "retention_reapply": ADMIN_PAGE,
    "storage_cost": ADMIN_PAGE,
    "prompt_set_list": REVIEWER_PAGE,
    "prompt_set_upload": REVIEWER_PAGE,
    "prompt_set_detail": REVIEWER_PAGE,
    "prompt_set_original": _row(302, 405, 403, 405, 403),  # POST only, after the role check
    "sae_list": REVIEWER_PAGE,
    "run_start": _row(302, 405, 403, 405, 403),  # POST only, after the role check
    "run_plan": REVIEWER_PAGE,  # the run form's htmx fragment
    "run_list": REVIEWER_PAGE,
    "run_detail": REVIEWER_PAGE,
    "run_cancel": _row(302, 405, 403, 405, 403),
    "run_reproduce": _row(302, 405, 403, 405, 403),
    "run_traces": REVIEWER_PAGE,
    "trace_list": REVIEWER_PAGE,
    "run_compare": REVIEWER_PAGE,
    "text_analysis": REVIEWER_PAGE,
    "text_analysis_wait": _row(302, 404, 403, 404, 403),  # the matrix's job is no quick analysis
    "trace_detail": REVIEWER_PAGE,  # auditors read cases, not traces
    "triage_queue": REVIEWER_PAGE,
    "triage_decide": _row(302, 405, 403, 405, 403),  # POST only, after the role check
    "feature_index": READER_PAGE,
    "feature_search": READER_PAGE,
    "feature_detail": READER_PAGE,
    "feature_annotate": _row(302, 405, 403, 405, 403),  # POST only, after the role check
    "feature_stats_start": _row(302, 405, 403, 405, 403),  # POST only, after the role check
    "annotations_export": READER_PAGE,
    "annotations_import": REVIEWER_PAGE,
    "job_list": REVIEWER_PAGE,
    "job_detail": REVIEWER_PAGE,
    "api_schema": SIGNED_IN_API,
    "api_docs": SIGNED_IN_API,
    "api_me": SIGNED_IN_API,
    "api_prompt_sets": REVIEWER_API,
    "api_prompt_set": REVIEWER_API,
    "api_prompts": REVIEWER_API,
    "api_runs": REVIEWER_API,
    "api_run": REVIEWER_API,
    "api_traces": REVIEWER_API,
    "api_run_compare": _row(401, 400, 403, 400, 403),  # without ?a=&b=: a 400 naming them
    # The matrix's trace has no stored arrays: 410 Gone for those who may read it.
    "api_trace_tokens": _row(401, 410, 403, 410, 403),
    "api_triage": REVIEWER_API,
    "api_triage_decide": _row(401, 405, 403, 405, 403),  # POST only
    "api_feature_search": READER_API,
    "api_feature": REVIEWER_API,
    "api_feature_annotation": READER_API,  # GET; PUT and PATCH need annotate_feature
    "api_feature_annotation_history": READER_API,
    "api_feature_label_suggestion": REVIEWER_API,
    "api_annotations_export": READER_API,
    "api_annotations_import": _row(401, 405, 403, 405, 403),  # POST only
    "api_jobs": REVIEWER_API,
    "api_job": REVIEWER_API,
    "api_retention_profiles": SIGNED_IN_API,
    "api_retention_profile": ADMIN_API,
    # audit cases; the matrix's case is signed off, so auditors read it
    "case_list": READER_PAGE,
    "case_create": REVIEWER_PAGE,
    "case_detail": READER_PAGE,
    "case_edit": _row(302, 302, 403, 302, 403),  # read-only now: back to the case, with why
    "case_transition": _row(302, 405, 403, 405, 403),  # POST only, after the role check
    "case_evidence_add": _row(302, 405, 403, 405, 403),
    "case_evidence_remove": _row(302, 405, 403, 405, 403),
    "case_comment": _row(302, 405, 403, 405, 403),
    "case_sign_off": _row(302, 405, 403, 405, 403),
    "case_evidence_from_trace": REVIEWER_PAGE,  # the trace view's "Add to case" form
    "triage_open_case": _row(302, 405, 403, 405, 403),
    "api_cases": READER_API,  # GET; POST needs work_case
    "api_case": READER_API,  # GET; PATCH needs work_case
    "api_case_transition": _row(401, 405, 403, 405, 403),  # POST only
    "api_case_evidence": _row(401, 405, 403, 405, 403),
    "api_case_evidence_item": _row(401, 405, 403, 405, 403),  # DELETE only
    "api_case_comments": READER_API,  # GET; POST needs work_case
    "api_case_sign_off": _row(401, 405, 403, 405, 403),
    # signed reports; the matrix's case has none yet: 404 for those who may read it
    "report_verify": READER_PAGE,
    "case_report_download": _row(302, 404, 404, 404, 403),
    "case_report_generate": _row(302, 405, 403, 405, 403),  # POST only, after the role check
    "api_report_verify": _row(401, 405, 405, 405, 403),  # POST only
    "api_case_report": _row(401, 404, 404, 404, 403),
    "api_case_report_pdf": _row(401, 404, 404, 404, 403),
    "audit_log": _row(302, 403, 200, 200, 403),  # auditors and admins
    "audit_events_csv": _row(302, 403, 200, 200, 403),
    "api_audit_events": _row(401, 403, 200, 200, 403),
    # exports; the matrix's export is the reviewer's, awaiting approval (others' are 404)
    "export_list": REVIEWER_PAGE,
    "export_create": REVIEWER_PAGE,
    "export_detail": _row(302, 200, 403, 200, 403),
    "export_decide": _row(302, 403, 403, 405, 403),  # POST only, after the role check
    "export_download": _row(302, 404, 404, 404, 403),  # anyone with a role; no such token
    "api_exports": REVIEWER_API,  # GET; POST requests one
    "api_export": _row(401, 200, 403, 200, 403),
    "api_export_approve": _row(401, 403, 403, 405, 403),  # POST only
    "api_export_refuse": _row(401, 403, 403, 405, 403),  # POST only
    "api_export_download": _row(401, 404, 404, 404, 403),
    # CI gates: admins write them and their keys; readers see them, their runs and the
    # attestations; reviewers run and sign them off. The matrix's run is queued: it has no
    # result, report or attestation yet (404 for those who may read it).
    "gate_list": READER_PAGE,
    "gate_new": ADMIN_PAGE,
    "gate_edit": ADMIN_PAGE,
    "gate_detail": READER_PAGE,
    "gate_schema": _row(200, 200, 200, 200, 200),  # public, like the certificate
    "gate_signoff_queue": READER_PAGE,
    "gate_verify": READER_PAGE,
    "gate_run": READER_PAGE,
    "gate_run_decide": _row(302, 405, 403, 405, 403),  # POST only, after the role check
    "gate_run_start": _row(302, 405, 403, 405, 403),
    "gate_key_create": _row(302, 403, 403, 405, 403),
    "gate_key_revoke": _row(302, 403, 403, 405, 403),
    "gate_run_attestation": _row(302, 404, 404, 404, 403),
    "gate_run_result": _row(302, 404, 404, 404, 403),
    "gate_run_report": _row(302, 404, 404, 404, 403),
    # a gate's key, not a person: no user reaches the gate API (401: it asks for the key)
    "api_gate_runs": _row(401, 401, 401, 401, 401),
    "api_gate_run": _row(401, 401, 401, 401, 401),
    "api_gate_run_attestation": _row(401, 401, 401, 401, 401),
    "api_gate_certificate": _row(200, 200, 200, 200, 200),
}


def _patterns(resolver: URLResolver | None = None) -> list[URLPattern]:
    found: list[URLPattern] = []
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            found.extend(_patterns(entry))
        else:
            found.append(entry)
    return found


def test_every_route_declares_an_access_rule() -> None:
    undeclared = [str(p.pattern) for p in _patterns() if rule_of(p.callback) is None]
    assert undeclared == []


def test_every_route_is_in_the_matrix() -> None:
    names = {p.name for p in _patterns()}
    assert None not in names, "every route needs a name to be checked"
    assert names == set(EXPECTED)


def _kwargs(name: str, objects: dict[str, Any]) -> dict[str, Any]:
    pattern = next(p for p in _patterns() if p.name == name)
    wanted = pattern.pattern.regex.groupindex
    return {
        key: objects[f"{name}:{key}"] if f"{name}:{key}" in objects else objects[key]
        for key in wanted
    }


@pytest.mark.django_db
def test_each_role_gets_its_answer_on_every_route(
    cast: dict[str, User | None], settings: Any, tmp_path: Path
) -> None:
    settings.SIGNING_P12_PATH = tmp_path / "key.p12"  # the gate API serves its certificate
    settings.SIGNING_P12_PASSPHRASE = None
    dev_key_create(settings.SIGNING_P12_PATH, common_name="matrix")
    prompt_set = make_prompt_set()
    assert prompt_set.import_job is not None
    token, _ = api_token_create(actor=Actor.command(cast["reviewer"]), name="t")
    sae = SaeRecord.objects.create(
        name="tiny", reference="/nowhere", model_name="m", site="resid_post", layer=2,
        width=128, hook_point="model.layers.2.output", params_sha256="0" * 64,
    )  # fmt: skip
    run = run_start(actor=Actor.command(), prompt_set=prompt_set, sae=sae, queue=False)
    trace = make_trace(run)
    case = AuditCase.objects.create(
        title="matrix", profile=prompt_set.profile, state=CaseState.SIGNED_OFF
    )
    manifest = manifest_save(
        document=parse_manifest_yaml("service: matrix\ncheckpoint: m\nsaes: [tiny]\nprofile: US\n"),
        actor=Actor.command(cast["admin"]),
    )
    export = Export.objects.create(
        kind="case", target_id=case.pk, profile=prompt_set.profile, requested_by=cast["reviewer"],
        state=ExportState.AWAITING_APPROVAL,
    )  # fmt: skip
    gate = gate_save(
        document=parse_gate_yaml(
            "name: matrix\nprofile: US\nsaes: [tiny]\nmetrics:\n"
            "  - {name: anomaly_rate, max: 0.1}\n  - {name: flagged_rate, max: 0.1}\n"
            "  - {name: safety_feature_drift, max: 0.1}\n"
        ),
        actor=Actor.command(cast["admin"]),
    )
    gate_run = GateRun.objects.create(
        gate=gate, gate_version=1, document=gate.document, profile=gate.profile,
        job=job_create(kind=JobKind.GATE, title="matrix gate", created_by=cast["admin"]),
    )  # fmt: skip
    gate_key, _ = gate_token_create(gate=gate, name="matrix", actor=Actor.command(cast["admin"]))
    objects: dict[str, Any] = {
        "prompt_set_id": prompt_set.pk,
        "api_prompt_set:pk": prompt_set.pk,
        "api_prompts:pk": prompt_set.pk,
        "api_job:pk": prompt_set.import_job.pk,
        "job_id": prompt_set.import_job.pk,
        "user_id": cast["reviewer"].pk,  # type: ignore[union-attr]
        "token_id": token.pk,
        "code": "UK",
        "run_id": run.pk,
        "api_run:pk": run.pk,
        "trace_id": trace.pk,
        "api_trace_tokens:pk": trace.pk,
        "sae_name": sae.name,
        "index": 7,
        "case_id": case.pk,
        "evidence_id": 1,
        "hold_id": LegalHold.objects.create(
            target_type="run", target_id=run.pk, reason="matrix"
        ).pk,
        "export_id": export.pk,
        "service": manifest.service,
        "window_id": 1,
        "token": "no-such-token",
        "name": gate.name,
        "fmt": "json",
        "gate_key_revoke:token_id": gate_key.pk,
        **{f"{name}:run_id": gate_run.pk for name in EXPECTED if "gate_run" in name},
        **{f"{name}:pk": export.pk for name in EXPECTED if name.startswith("api_export")},
        **{f"{name}:pk": case.pk for name in EXPECTED if name.startswith("api_case")},
    }
    wrong = []
    for name, expected in EXPECTED.items():
        url = reverse(name, kwargs=_kwargs(name, objects))
        for role, user in cast.items():
            status = client_for(user).get(url).status_code
            if status != expected[role]:
                wrong.append(f"{name} ({url}) as {role}: {status}, expected {expected[role]}")
    assert wrong == []
    assert ApiToken.objects.filter(revoked_at__isnull=True).count() == 1


@pytest.mark.django_db
def test_missing_objects_are_404_for_those_who_may_see_them(
    reviewer: User, auditor: User, admin: User
) -> None:
    cases: list[tuple[str, dict[str, Any], User]] = [
        ("prompt_set_detail", {"prompt_set_id": 999999}, reviewer),
        ("api_prompt_set", {"pk": 999999}, reviewer),
        ("trace_detail", {"trace_id": 999999}, reviewer),
        ("run_traces", {"run_id": 999999}, reviewer),
        ("api_trace_tokens", {"pk": 999999}, reviewer),
        ("retention_profile_edit", {"code": "XX"}, admin),
        ("api_retention_profile", {"code": "XX"}, admin),
    ]
    for name, kwargs, allowed in cases:
        url = reverse(name, kwargs=kwargs)
        assert client_for(allowed).get(url).status_code == 404, url
        # Those who may not reach the route learn nothing about what exists behind it.
        assert client_for(auditor).get(url).status_code == 403, url


@pytest.mark.django_db
def test_missing_features_are_404_for_readers_and_403_for_outsiders(
    auditor: User, outsider: User
) -> None:
    for name in ("feature_detail", "api_feature_annotation"):
        url = reverse(name, kwargs={"sae_name": "no-such-sae", "index": 1})
        assert client_for(auditor).get(url).status_code == 404, url
        assert client_for(outsider).get(url).status_code == 403, url
