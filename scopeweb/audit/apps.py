from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "scopeweb.audit"
    label = "audit"
    verbose_name = "Audit log"
