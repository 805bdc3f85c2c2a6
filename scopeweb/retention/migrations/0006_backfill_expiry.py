"""Give every prompt set, run and export made before expiries existed its expiry: when it was
made plus its profile's retention. Rows that already have one keep it."""

from datetime import timedelta

from django.db import migrations

BATCH = 1000


def backfill(apps, schema_editor):
    made_field = {
        ("traces", "PromptSet"): "created_at",
        ("traces", "AnalysisRun"): "created_at",
        ("governance", "Export"): "requested_at",
    }
    for (app, name), made in made_field.items():
        model = apps.get_model(app, name)
        rows = model.objects.filter(expires_at__isnull=True).select_related("profile")
        pending = []
        for row in rows.iterator(chunk_size=BATCH):
            row.expires_at = getattr(row, made) + timedelta(days=row.profile.retention_days)
            pending.append(row)
            if len(pending) >= BATCH:
                model.objects.bulk_update(pending, ["expires_at"])
                pending = []
        if pending:
            model.objects.bulk_update(pending, ["expires_at"])


class Migration(migrations.Migration):
    dependencies = [
        ("retention", "0005_holds_and_purges"),
        ("traces", "0011_expiry_and_redaction"),
        ("governance", "0001_initial"),  # formerly exports.0001_initial
    ]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
