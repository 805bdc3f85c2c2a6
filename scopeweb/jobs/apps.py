from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "scopeweb.jobs"
    label = "jobs"
    verbose_name = "Background jobs"
