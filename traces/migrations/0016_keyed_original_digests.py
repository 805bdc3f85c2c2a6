"""Key the digests of originals: ``Prompt.text_sha256`` of every prompt, and
``PromptSet.source_sha256`` of the prompt sets whose profile redacts before storage, held a plain
sha256, which lets anyone who reads it confirm a guess of the personal data in the original.
Each becomes ``keyed_digest(old)`` (HMAC-SHA256 under ``settings.HASH_KEY`` of that sha256),
exactly what the import now stores, so originals supplied again still match. One way only: a
keyed digest cannot be turned back into the sha256."""

from typing import Any

from django.db import migrations, models

from scopeweb.redaction.digests import keyed_digest

BATCH = 1000
REDACTED_BEFORE_STORAGE = ("required", "strong")


def _rekey(model: Any, rows: Any, field: str) -> None:
    pending = []
    for row in rows.exclude(**{field: ""}).only("pk", field).iterator(chunk_size=BATCH):
        setattr(row, field, keyed_digest(getattr(row, field)))
        pending.append(row)
        if len(pending) >= BATCH:
            model.objects.bulk_update(pending, [field])
            pending = []
    if pending:
        model.objects.bulk_update(pending, [field])


def forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    prompt = apps.get_model("traces", "Prompt")
    prompt_set = apps.get_model("traces", "PromptSet")
    _rekey(prompt, prompt.objects.all(), "text_sha256")
    redacted = prompt_set.objects.filter(profile__redaction__in=REDACTED_BEFORE_STORAGE)
    _rekey(prompt_set, redacted, "source_sha256")


class Migration(migrations.Migration):
    dependencies = [
        ("retention", "0006_backfill_expiry"),
        ("traces", "0015_stream_ingest"),
    ]

    operations = [
        migrations.AlterField(
            model_name="prompt",
            name="text_sha256",
            field=models.CharField(
                blank=True,
                help_text="Keyed digest (HMAC-SHA256 under SCOPEWEB_HASH_KEY) of the original "
                "text, redacted or not: it matches a supplied original, and confirms no guess.",
                max_length=64,
            ),
        ),
        migrations.AlterField(
            model_name="promptset",
            name="source_sha256",
            field=models.CharField(
                help_text="sha256 of the uploaded file; for a profile that redacts before "
                "storage, its keyed digest (HMAC-SHA256 under SCOPEWEB_HASH_KEY).",
                max_length=64,
            ),
        ),
        migrations.RunPython(forward, elidable=False),
    ]
