"""Routes of this area; scopeweb/urls.py includes them. Every route declares who reaches it."""

from django.urls import URLPattern, path

from scopeweb.exports import api, views

urlpatterns: list[URLPattern] = [
    path("exports/", views.export_list_view, name="export_list"),
    path("exports/new/", views.export_create_view, name="export_create"),
    path("exports/<int:export_id>/", views.export_detail_view, name="export_detail"),
    path("exports/<int:export_id>/decide/", views.export_decide_view, name="export_decide"),
    path("exports/download/<str:token>/", views.export_download_view, name="export_download"),
    # API
    path("api/exports/", api.ExportListApi.as_view(), name="api_exports"),
    path("api/exports/<int:pk>/", api.ExportDetailApi.as_view(), name="api_export"),
    path(
        "api/exports/<int:pk>/approve/", api.ExportApproveApi.as_view(), name="api_export_approve"
    ),
    path("api/exports/<int:pk>/refuse/", api.ExportRefuseApi.as_view(), name="api_export_refuse"),
    path(
        "api/exports/download/<str:token>/",
        api.ExportDownloadApi.as_view(),
        name="api_export_download",
    ),
]
