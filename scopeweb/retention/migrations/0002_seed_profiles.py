"""Seed the US, UK and FR profiles of the design's table (admins edit them afterwards)."""

from django.db import migrations

PROFILES = [
    {
        "code": "US",
        "name": "United States",
        "retention_days": 30,
        "audit_extension_days": 90,
        "redaction": "best_effort",
        "export_policy": "allowed",
        "four_eyes": False,
        "signoffs_required": 1,
    },
    {
        "code": "UK",
        "name": "United Kingdom",
        "retention_days": 30,
        "audit_extension_days": 90,
        "redaction": "required",
        "export_policy": "gdpr_review",
        "four_eyes": True,
        "signoffs_required": 1,
    },
    {
        "code": "FR",
        "name": "France",
        "retention_days": 30,
        "audit_extension_days": 90,
        "redaction": "strong",
        "export_policy": "cnil_documented",
        "four_eyes": True,
        "signoffs_required": 2,
    },
]
SHARED = {
    "sampling_baseline": 0.01,
    "sampling_targeted": 0.05,
    "sampling_forensic": 1.0,
    "capture_limit": 1000,
}


def seed(apps, schema_editor):  # type: ignore[no-untyped-def]
    profile_model = apps.get_model("retention", "RetentionProfile")
    for values in PROFILES:
        profile_model.objects.update_or_create(code=values["code"], defaults={**SHARED, **values})


class Migration(migrations.Migration):
    dependencies = [("retention", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
