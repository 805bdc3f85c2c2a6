"""Routes of this area; scopeweb/urls.py includes them. Every route declares who reaches it."""

from django.urls import URLPattern, path

from reports import api_reports as api
from reports import views_reports as views

urlpatterns: list[URLPattern] = [
    path("reports/verify/", views.report_verify_view, name="report_verify"),
    path(
        "cases/<int:case_id>/report.pdf",
        views.case_report_download_view,
        name="case_report_download",
    ),
    path(
        "cases/<int:case_id>/report/generate/",
        views.case_report_generate_view,
        name="case_report_generate",
    ),
    # API
    path("api/reports/verify/", api.ReportVerifyApi.as_view(), name="api_report_verify"),
    path("api/cases/<int:pk>/report/", api.CaseReportApi.as_view(), name="api_case_report"),
    path(
        "api/cases/<int:pk>/report.pdf", api.CaseReportPdfApi.as_view(), name="api_case_report_pdf"
    ),
]
