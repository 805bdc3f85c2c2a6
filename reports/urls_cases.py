"""Routes of this area; scopeweb/urls.py includes them. Every route declares who reaches it."""

from django.urls import URLPattern, path

from reports import api_cases as api
from reports import views_cases as views
from traces import views_triage

urlpatterns: list[URLPattern] = [
    path("cases/", views.case_list_view, name="case_list"),
    path("cases/new/", views.case_create_view, name="case_create"),
    path("cases/<int:case_id>/", views.case_detail_view, name="case_detail"),
    path("cases/<int:case_id>/edit/", views.case_edit_view, name="case_edit"),
    path("cases/<int:case_id>/transition/", views.case_transition_view, name="case_transition"),
    path("cases/<int:case_id>/evidence/", views.case_evidence_add_view, name="case_evidence_add"),
    path(
        "cases/<int:case_id>/evidence/<int:evidence_id>/remove/",
        views.case_evidence_remove_view,
        name="case_evidence_remove",
    ),
    path("cases/<int:case_id>/comments/", views.case_comment_view, name="case_comment"),
    path("cases/<int:case_id>/sign-off/", views.case_sign_off_view, name="case_sign_off"),
    path(
        "traces/<int:trace_id>/add-to-case/",
        views.trace_add_evidence_view,
        name="case_evidence_from_trace",
    ),
    path(
        "triage/<int:trace_id>/open-case/",
        views_triage.triage_open_case_view,
        name="triage_open_case",
    ),
    # API
    path("api/cases/", api.CaseListApi.as_view(), name="api_cases"),
    path("api/cases/<int:pk>/", api.CaseDetailApi.as_view(), name="api_case"),
    path(
        "api/cases/<int:pk>/transition/",
        api.CaseTransitionApi.as_view(),
        name="api_case_transition",
    ),
    path("api/cases/<int:pk>/evidence/", api.CaseEvidenceApi.as_view(), name="api_case_evidence"),
    path(
        "api/cases/<int:pk>/evidence/<int:evidence_id>/",
        api.CaseEvidenceItemApi.as_view(),
        name="api_case_evidence_item",
    ),
    path("api/cases/<int:pk>/comments/", api.CaseCommentApi.as_view(), name="api_case_comments"),
    path("api/cases/<int:pk>/sign-off/", api.CaseSignOffApi.as_view(), name="api_case_sign_off"),
]
