"""Routes of this area; scopeweb/urls.py includes them. Every route declares who reaches it."""

from django.urls import URLPattern, path

from scopeweb.audit import api, views

urlpatterns: list[URLPattern] = [
    path("audit/", views.audit_log, name="audit_log"),
    path("audit/events.csv", views.audit_events_csv, name="audit_events_csv"),
    path("api/audit/events/", api.AuditEventListApi.as_view(), name="api_audit_events"),
]
