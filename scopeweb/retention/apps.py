from django.apps import AppConfig


class RetentionConfig(AppConfig):
    name = "scopeweb.retention"
    label = "retention"
    verbose_name = "Retention profiles"
