from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "scopeweb.exports"
    label = "exports"
    verbose_name = "Controlled exports"
