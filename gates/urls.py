from __future__ import annotations

from django.urls import URLPattern, path

from gates import api, views

urlpatterns: list[URLPattern] = [
    path("gates/", views.gate_list, name="gate_list"),
    path("gates/new/", views.gate_edit, name="gate_new"),
    path("gates/gate.schema.json", views.gate_schema_view, name="gate_schema"),
    path("gates/signoff/", views.signoff_queue_view, name="gate_signoff_queue"),
    path("gates/verify/", views.attestation_verify_view, name="gate_verify"),
    path("gates/runs/<int:run_id>/", views.gate_run_view, name="gate_run"),
    path("gates/runs/<int:run_id>/decide/", views.gate_run_decide_view, name="gate_run_decide"),
    path(
        "gates/runs/<int:run_id>/attestation.json",
        views.gate_run_attestation_view,
        name="gate_run_attestation",
    ),
    path(
        "gates/runs/<int:run_id>/result.<str:fmt>",
        views.gate_run_result_view,
        name="gate_run_result",
    ),
    path("gates/runs/<int:run_id>/report.pdf", views.gate_run_report_view, name="gate_run_report"),
    path("gates/<slug:name>/", views.gate_detail, name="gate_detail"),
    path("gates/<slug:name>/edit/", views.gate_edit, name="gate_edit"),
    path("gates/<slug:name>/run/", views.gate_run_start_view, name="gate_run_start"),
    path("gates/<slug:name>/keys/", views.gate_key_create_view, name="gate_key_create"),
    path(
        "gates/<slug:name>/keys/<int:token_id>/revoke/",
        views.gate_key_revoke_view,
        name="gate_key_revoke",
    ),
    path("api/gates/v1/runs", api.GateRunStartApi.as_view(), name="api_gate_runs"),
    path("api/gates/v1/runs/<int:run_id>", api.GateRunStatusApi.as_view(), name="api_gate_run"),
    path(
        "api/gates/v1/runs/<int:run_id>/attestation",
        api.GateRunAttestationApi.as_view(),
        name="api_gate_run_attestation",
    ),
    path("api/gates/v1/certificate", api.CertificateApi.as_view(), name="api_gate_certificate"),
]
