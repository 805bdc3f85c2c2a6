from django.apps import AppConfig


class GatesConfig(AppConfig):
    name = "gates"
    label = "gates"
    verbose_name = "CI gates: gate definitions, gate runs, sign-offs and attestations"
