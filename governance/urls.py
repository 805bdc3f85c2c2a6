"""Governance routes: legal holds, expiries and the purge, re-applying retention, storage cost,
exports. Every route declares who reaches it.

The root urls include these before retention's profile routes, whose ``<code>`` would
otherwise swallow ``holds``, ``expiries`` and ``purge``.
"""

from django.urls import URLPattern, path

from governance.api import exports as exports_api
from governance.views import exports, holds, purge, reapply, storage

urlpatterns: list[URLPattern] = [
    path("manage/retention/holds/", holds.hold_list, name="retention_holds"),
    path("manage/retention/holds/new/", holds.hold_place_view, name="retention_hold_place"),
    path(
        "manage/retention/holds/<int:hold_id>/lift/",
        holds.hold_lift_view,
        name="retention_hold_lift",
    ),
    path("manage/retention/expiries/", purge.expiries, name="retention_expiries"),
    path("manage/retention/purge/", purge.purge_now, name="retention_purge_now"),
    path(
        "manage/retention/purge/preview/",
        purge.purge_preview_view,
        name="retention_purge_preview",
    ),
    path("manage/retention/<str:code>/reapply/", reapply.reapply, name="retention_reapply"),
    path("manage/storage/", storage.storage_cost, name="storage_cost"),
    path("exports/", exports.export_list_view, name="export_list"),
    path("exports/new/", exports.export_create_view, name="export_create"),
    path("exports/<int:export_id>/", exports.export_detail_view, name="export_detail"),
    path("exports/<int:export_id>/decide/", exports.export_decide_view, name="export_decide"),
    path("exports/download/<str:token>/", exports.export_download_view, name="export_download"),
    # API
    path("api/exports/", exports_api.ExportListApi.as_view(), name="api_exports"),
    path("api/exports/<int:pk>/", exports_api.ExportDetailApi.as_view(), name="api_export"),
    path(
        "api/exports/<int:pk>/approve/",
        exports_api.ExportApproveApi.as_view(),
        name="api_export_approve",
    ),
    path(
        "api/exports/<int:pk>/refuse/",
        exports_api.ExportRefuseApi.as_view(),
        name="api_export_refuse",
    ),
    path(
        "api/exports/download/<str:token>/",
        exports_api.ExportDownloadApi.as_view(),
        name="api_export_download",
    ),
]
