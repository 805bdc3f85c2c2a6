"""Reports routes: audit cases with their evidence, comments and sign-off, opening a case from
the triage queue, signed reports and their verification. Every route declares who reaches it."""

from django.urls import URLPattern, path

from reports.api import cases as cases_api
from reports.api import reports as reports_api
from reports.views import cases, evidence, reports, triage

urlpatterns: list[URLPattern] = [
    path("cases/", cases.case_list_view, name="case_list"),
    path("cases/new/", cases.case_create_view, name="case_create"),
    path("cases/<int:case_id>/", cases.case_detail_view, name="case_detail"),
    path("cases/<int:case_id>/edit/", cases.case_edit_view, name="case_edit"),
    path("cases/<int:case_id>/transition/", cases.case_transition_view, name="case_transition"),
    path("cases/<int:case_id>/comments/", cases.case_comment_view, name="case_comment"),
    path("cases/<int:case_id>/sign-off/", cases.case_sign_off_view, name="case_sign_off"),
    path(
        "cases/<int:case_id>/evidence/",
        evidence.case_evidence_add_view,
        name="case_evidence_add",
    ),
    path(
        "cases/<int:case_id>/evidence/<int:evidence_id>/remove/",
        evidence.case_evidence_remove_view,
        name="case_evidence_remove",
    ),
    path(
        "traces/<int:trace_id>/add-to-case/",
        evidence.trace_add_evidence_view,
        name="case_evidence_from_trace",
    ),
    path(
        "triage/<int:trace_id>/open-case/",
        triage.triage_open_case_view,
        name="triage_open_case",
    ),
    path("reports/verify/", reports.report_verify_view, name="report_verify"),
    path(
        "cases/<int:case_id>/report.pdf",
        reports.case_report_download_view,
        name="case_report_download",
    ),
    path(
        "cases/<int:case_id>/report/generate/",
        reports.case_report_generate_view,
        name="case_report_generate",
    ),
    # API
    path("api/cases/", cases_api.CaseListApi.as_view(), name="api_cases"),
    path("api/cases/<int:pk>/", cases_api.CaseDetailApi.as_view(), name="api_case"),
    path(
        "api/cases/<int:pk>/transition/",
        cases_api.CaseTransitionApi.as_view(),
        name="api_case_transition",
    ),
    path(
        "api/cases/<int:pk>/evidence/",
        cases_api.CaseEvidenceApi.as_view(),
        name="api_case_evidence",
    ),
    path(
        "api/cases/<int:pk>/evidence/<int:evidence_id>/",
        cases_api.CaseEvidenceItemApi.as_view(),
        name="api_case_evidence_item",
    ),
    path(
        "api/cases/<int:pk>/comments/",
        cases_api.CaseCommentApi.as_view(),
        name="api_case_comments",
    ),
    path(
        "api/cases/<int:pk>/sign-off/",
        cases_api.CaseSignOffApi.as_view(),
        name="api_case_sign_off",
    ),
    path("api/reports/verify/", reports_api.ReportVerifyApi.as_view(), name="api_report_verify"),
    path("api/cases/<int:pk>/report/", reports_api.CaseReportApi.as_view(), name="api_case_report"),
    path(
        "api/cases/<int:pk>/report.pdf",
        reports_api.CaseReportPdfApi.as_view(),
        name="api_case_report_pdf",
    ),
]
