"""Traces routes: prompt sets, SAEs, runs, traces, triage, comparison, pasted text, features and
annotations, and their API. Every route declares who reaches it."""

from django.urls import URLPattern, path

from traces.api import compare as compare_api
from traces.api import features as features_api
from traces.api import ingest as ingest_api
from traces.api import prompt_sets as prompt_sets_api
from traces.api import runs as runs_api
from traces.api import traces as traces_api
from traces.api import triage as triage_api
from traces.views import (
    compare,
    features,
    home,
    ingest_pages,
    metrics,
    operations,
    prompt_sets,
    runs,
    saes,
    text_analysis,
    traces,
    triage,
)

urlpatterns: list[URLPattern] = [
    path("", home.home, name="home"),
    # prompt sets and the SAE registry
    path("prompt-sets/", prompt_sets.prompt_set_list_view, name="prompt_set_list"),
    path("prompt-sets/upload/", prompt_sets.prompt_set_upload_view, name="prompt_set_upload"),
    path(
        "prompt-sets/<int:prompt_set_id>/",
        prompt_sets.prompt_set_detail,
        name="prompt_set_detail",
    ),
    path(
        "prompt-sets/<int:prompt_set_id>/original/",
        prompt_sets.prompt_set_original_view,
        name="prompt_set_original",
    ),
    path("saes/", saes.sae_list_view, name="sae_list"),
    # runs
    path("prompt-sets/<int:prompt_set_id>/runs/new/", runs.run_start_view, name="run_start"),
    path("prompt-sets/<int:prompt_set_id>/runs/plan/", runs.run_plan_view, name="run_plan"),
    path("runs/", runs.run_list_view, name="run_list"),
    path("runs/<int:run_id>/", runs.run_detail, name="run_detail"),
    path("runs/<int:run_id>/cancel/", runs.run_cancel_view, name="run_cancel"),
    path("runs/<int:run_id>/reproduce/", runs.run_reproduce_view, name="run_reproduce"),
    path("runs/compare/", compare.run_compare, name="run_compare"),
    # traces
    path("runs/<int:run_id>/traces/", traces.trace_list_view, name="run_traces"),
    path("traces/", traces.trace_list_view, name="trace_list"),
    path("traces/<int:trace_id>/", traces.trace_detail, name="trace_detail"),
    path("triage/", triage.triage_queue_view, name="triage_queue"),
    path("triage/<int:trace_id>/", triage.triage_decide_view, name="triage_decide"),
    path("analyze-text/", text_analysis.text_analysis, name="text_analysis"),
    path(
        "analyze-text/<uuid:job_id>/",
        text_analysis.text_analysis_wait,
        name="text_analysis_wait",
    ),
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
    # API
    path("api/prompt-sets/", prompt_sets_api.PromptSetListApi.as_view(), name="api_prompt_sets"),
    path(
        "api/prompt-sets/<int:pk>/",
        prompt_sets_api.PromptSetDetailApi.as_view(),
        name="api_prompt_set",
    ),
    path(
        "api/prompt-sets/<int:pk>/prompts/",
        prompt_sets_api.PromptListApi.as_view(),
        name="api_prompts",
    ),
    path("api/runs/", runs_api.RunListApi.as_view(), name="api_runs"),
    path("api/runs/<int:pk>/", runs_api.RunDetailApi.as_view(), name="api_run"),
    path("api/runs/compare/", compare_api.RunCompareApi.as_view(), name="api_run_compare"),
    path("api/traces/", traces_api.TraceListApi.as_view(), name="api_traces"),
    path(
        "api/traces/<int:pk>/tokens/",
        traces_api.TraceTokensApi.as_view(),
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
    # production tracing: ingest keys post, the scrape token reads /metrics
    path("api/ingest/v1/traces", ingest_api.IngestPlainApi.as_view(), name="api_ingest"),
    path("api/ingest/otlp/v1/traces", ingest_api.IngestOtlpApi.as_view(), name="api_ingest_otlp"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("ingest/manifests/", ingest_pages.manifest_list_view, name="manifest_list"),
    path("ingest/manifests/new/", ingest_pages.manifest_create_view, name="manifest_create"),
    path(
        "ingest/manifests/<slug:service>/",
        ingest_pages.manifest_detail_view,
        name="manifest_detail",
    ),
    path(
        "ingest/manifests/<slug:service>/manifest.yaml",
        ingest_pages.manifest_export_view,
        name="manifest_export",
    ),
    path(
        "ingest/manifests/<slug:service>/tokens/new/",
        ingest_pages.ingest_token_create_view,
        name="ingest_token_create",
    ),
    path(
        "ingest/manifests/<slug:service>/tokens/<int:token_id>/revoke/",
        ingest_pages.ingest_token_revoke_view,
        name="ingest_token_revoke",
    ),
    path(
        "ingest/manifests/<slug:service>/windows/new/",
        ingest_pages.forensic_window_request_view,
        name="forensic_window_request",
    ),
    path(
        "ingest/manifests/<slug:service>/windows/<int:window_id>/approve/",
        ingest_pages.forensic_window_approve_view,
        name="forensic_window_approve",
    ),
    path("ingest/manifest.schema.json", ingest_pages.manifest_schema_view, name="manifest_schema"),
    path("operations/", operations.operations_view, name="operations"),
]
