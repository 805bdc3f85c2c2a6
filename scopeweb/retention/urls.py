"""Routes of legal holds, expiries, the purge and storage cost (all admin-only). Included
before the profile routes, whose ``<code>`` would otherwise swallow these names."""

from django.urls import path

from scopeweb.retention import views_expiry, views_holds, views_storage

urlpatterns = [
    path("manage/retention/holds/", views_holds.hold_list, name="retention_holds"),
    path("manage/retention/holds/new/", views_holds.hold_place_view, name="retention_hold_place"),
    path(
        "manage/retention/holds/<int:hold_id>/lift/",
        views_holds.hold_lift_view,
        name="retention_hold_lift",
    ),
    path("manage/retention/expiries/", views_expiry.expiries, name="retention_expiries"),
    path("manage/retention/purge/", views_expiry.purge_now, name="retention_purge_now"),
    path(
        "manage/retention/purge/preview/",
        views_expiry.purge_preview_view,
        name="retention_purge_preview",
    ),
    path("manage/retention/<str:code>/reapply/", views_expiry.reapply, name="retention_reapply"),
    path("manage/storage/", views_storage.storage_cost, name="storage_cost"),
]
