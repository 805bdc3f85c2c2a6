"""Every route declares who reaches it (see scopeweb.accounts.access)."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from scopeweb import health, views
from scopeweb.accounts import views as accounts
from scopeweb.accounts.access import SIGNED_IN
from scopeweb.accounts.services import user_roles
from scopeweb.jobs import api as jobs_api
from scopeweb.jobs import views as jobs
from scopeweb.retention import api as retention_api
from scopeweb.retention import views as retention
from traces import api as traces_api
from traces import api_compare as compare_api
from traces import api_features as features_api
from traces import api_runs as runs_api
from traces import api_traces as traces_api_traces
from traces import api_triage as triage_api
from traces import views as traces
from traces import views_compare as compare_views
from traces import views_features as features
from traces import views_runs as runs
from traces import views_text as text_views
from traces import views_traces as trace_views
from traces import views_triage as triage


class SchemaView(SpectacularAPIView):
    access_rule = SIGNED_IN


class DocsView(SpectacularSwaggerView):
    access_rule = SIGNED_IN


class MeApi(APIView):
    """Who the caller is and which roles they hold."""

    access_rule = SIGNED_IN

    def get(self, request: Request) -> Response:
        return Response(
            {
                "username": request.user.username,
                "roles": [r.value for r in user_roles(request.user)],
            }
        )


urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", health.healthz, name="healthz"),
    # accounts
    path("account/login/", accounts.login, name="login"),
    path("account/logout/", accounts.logout, name="logout"),
    path("account/password/", accounts.password_change, name="password_change"),
    path("account/password/done/", accounts.password_change_done, name="password_change_done"),
    path("account/tokens/", accounts.token_list, name="token_list"),
    path("account/tokens/<int:token_id>/revoke/", accounts.token_revoke, name="token_revoke"),
    path("manage/users/", accounts.user_list, name="user_list"),
    path("manage/users/new/", accounts.user_create, name="user_create"),
    path("manage/users/<int:user_id>/", accounts.user_edit, name="user_edit"),
    path("", include("scopeweb.retention.urls")),  # holds, expiries, purge, storage
    path("manage/retention/", retention.profile_list, name="retention_profile_list"),
    path("manage/retention/<str:code>/", retention.profile_edit, name="retention_profile_edit"),
    # prompt sets and jobs
    path("prompt-sets/", traces.prompt_set_list, name="prompt_set_list"),
    path("prompt-sets/upload/", traces.prompt_set_upload_view, name="prompt_set_upload"),
    path("prompt-sets/<int:prompt_set_id>/", traces.prompt_set_detail, name="prompt_set_detail"),
    path(
        "prompt-sets/<int:prompt_set_id>/original/",
        traces.prompt_set_original_view,
        name="prompt_set_original",
    ),
    path("saes/", traces.sae_list, name="sae_list"),
    path(
        "prompt-sets/<int:prompt_set_id>/runs/new/",
        runs.run_start_view,
        name="run_start",
    ),
    path("runs/", runs.run_list, name="run_list"),
    path("runs/<int:run_id>/", runs.run_detail, name="run_detail"),
    path("runs/<int:run_id>/cancel/", runs.run_cancel_view, name="run_cancel"),
    path("runs/<int:run_id>/reproduce/", runs.run_reproduce_view, name="run_reproduce"),
    # traces
    path("runs/<int:run_id>/traces/", trace_views.trace_list_view, name="run_traces"),
    path("traces/", trace_views.trace_list_view, name="trace_list"),
    path("traces/<int:trace_id>/", trace_views.trace_detail, name="trace_detail"),
    # triage of flagged traces
    path("triage/", triage.triage_queue_view, name="triage_queue"),
    path("triage/<int:trace_id>/", triage.triage_decide_view, name="triage_decide"),
    path("runs/compare/", compare_views.run_compare, name="run_compare"),
    path("analyze-text/", text_views.text_analysis, name="text_analysis"),
    path("analyze-text/<uuid:job_id>/", text_views.text_analysis_wait, name="text_analysis_wait"),
    # features and annotations
    path("features/", features.feature_index, name="feature_index"),
    path("saes/<slug:sae_name>/features/", features.feature_search, name="feature_search"),
    path(
        "saes/<slug:sae_name>/features/<int:index>/",
        features.feature_detail,
        name="feature_detail",
    ),
    path(
        "saes/<slug:sae_name>/features/<int:index>/annotate/",
        features.feature_annotate,
        name="feature_annotate",
    ),
    path(
        "saes/<slug:sae_name>/feature-stats/",
        features.feature_stats_start_view,
        name="feature_stats_start",
    ),
    path(
        "saes/<slug:sae_name>/annotations.json",
        features.annotations_export_view,
        name="annotations_export",
    ),
    path(
        "saes/<slug:sae_name>/annotations/import/",
        features.annotations_import_view,
        name="annotations_import",
    ),
    # audit log, cases, reports (each area keeps its own routes)
    path("", include("scopeweb.audit.urls")),
    path("", include("reports.urls_cases")),
    path("", include("reports.urls_reports")),
    path("", include("scopeweb.exports.urls")),
    path("jobs/", jobs.job_list, name="job_list"),
    path("jobs/<uuid:job_id>/", jobs.job_detail, name="job_detail"),
    # API
    path("api/schema/", SchemaView.as_view(), name="api_schema"),
    path("api/docs/", DocsView.as_view(url_name="api_schema"), name="api_docs"),
    path("api/me/", MeApi.as_view(), name="api_me"),
    path("api/prompt-sets/", traces_api.PromptSetListApi.as_view(), name="api_prompt_sets"),
    path(
        "api/prompt-sets/<int:pk>/",
        traces_api.PromptSetDetailApi.as_view(),
        name="api_prompt_set",
    ),
    path(
        "api/prompt-sets/<int:pk>/prompts/",
        traces_api.PromptListApi.as_view(),
        name="api_prompts",
    ),
    path("api/runs/", runs_api.RunListApi.as_view(), name="api_runs"),
    path("api/runs/<int:pk>/", runs_api.RunDetailApi.as_view(), name="api_run"),
    path("api/traces/", traces_api_traces.TraceListApi.as_view(), name="api_traces"),
    path("api/runs/compare/", compare_api.RunCompareApi.as_view(), name="api_run_compare"),
    path(
        "api/traces/<int:pk>/tokens/",
        traces_api_traces.TraceTokensApi.as_view(),
        name="api_trace_tokens",
    ),
    path("api/triage/", triage_api.TriageQueueApi.as_view(), name="api_triage"),
    path(
        "api/triage/<int:trace_id>/",
        triage_api.TriageDecideApi.as_view(),
        name="api_triage_decide",
    ),
    path(
        "api/saes/<slug:sae_name>/features/",
        features_api.FeatureSearchApi.as_view(),
        name="api_feature_search",
    ),
    path(
        "api/saes/<slug:sae_name>/features/<int:index>/",
        features_api.FeatureApi.as_view(),
        name="api_feature",
    ),
    path(
        "api/saes/<slug:sae_name>/features/<int:index>/annotation/",
        features_api.FeatureAnnotationApi.as_view(),
        name="api_feature_annotation",
    ),
    path(
        "api/saes/<slug:sae_name>/features/<int:index>/annotation/history/",
        features_api.FeatureAnnotationHistoryApi.as_view(),
        name="api_feature_annotation_history",
    ),
    path(
        "api/saes/<slug:sae_name>/features/<int:index>/label-suggestion/",
        features_api.FeatureLabelSuggestionApi.as_view(),
        name="api_feature_label_suggestion",
    ),
    path(
        "api/saes/<slug:sae_name>/annotations/export/",
        features_api.AnnotationsExportApi.as_view(),
        name="api_annotations_export",
    ),
    path(
        "api/saes/<slug:sae_name>/annotations/import/",
        features_api.AnnotationsImportApi.as_view(),
        name="api_annotations_import",
    ),
    path("api/jobs/", jobs_api.JobListApi.as_view(), name="api_jobs"),
    path("api/jobs/<uuid:pk>/", jobs_api.JobDetailApi.as_view(), name="api_job"),
    path(
        "api/retention-profiles/",
        retention_api.RetentionProfileListApi.as_view(),
        name="api_retention_profiles",
    ),
    path(
        "api/retention-profiles/<str:code>/",
        retention_api.RetentionProfileDetailApi.as_view(),
        name="api_retention_profile",
    ),
]
