"""Retention profile routes (admin-only); the API lets every signed-in role read profiles."""

from django.urls import URLPattern, path

from scopeweb.retention import api, views

urlpatterns: list[URLPattern] = [
    path("manage/retention/", views.profile_list, name="retention_profile_list"),
    path("manage/retention/<str:code>/", views.profile_edit, name="retention_profile_edit"),
    path(
        "api/retention-profiles/",
        api.RetentionProfileListApi.as_view(),
        name="api_retention_profiles",
    ),
    path(
        "api/retention-profiles/<str:code>/",
        api.RetentionProfileDetailApi.as_view(),
        name="api_retention_profile",
    ),
]
