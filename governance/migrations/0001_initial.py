"""Governance takes over the tables of legal holds and purge passes (made by ``retention``) and
of exports (made by the former ``exports`` app).

- On a database where ``exports.0001_initial`` ran, this migration counts as applied (it
  ``replaces`` that one), so nothing runs: the tables are there already.
- On a fresh database it creates the exports table; legal holds and purge passes exist already
  (``retention.0005``), so for them it only records the models in governance's state.

``retention.0007`` then drops them from retention's state, and ``0002`` renames the three tables
to governance's own names.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    replaces = [("exports", "0001_initial")]

    dependencies = [
        ("jobs", "0005_alter_job_kind"),
        ("retention", "0005_holds_and_purges"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Export",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kind",
                    models.CharField(choices=[("run", "Run"), ("case", "Case")], max_length=10),
                ),
                ("target_id", models.PositiveBigIntegerField()),
                ("target_repr", models.CharField(blank=True, max_length=300)),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("awaiting_approval", "Awaiting an admin's approval"),
                            ("queued", "Queued"),
                            ("building", "Building"),
                            ("ready", "Ready to download"),
                            ("downloaded", "Downloaded"),
                            ("refused", "Refused"),
                            ("failed", "Failed"),
                        ],
                        db_index=True,
                        max_length=20,
                    ),
                ),
                ("requested_at", models.DateTimeField(auto_now_add=True)),
                (
                    "purpose",
                    models.TextField(blank=True, help_text="Why the data leaves the system."),
                ),
                ("decided_at", models.DateTimeField(blank=True, null=True)),
                ("decision_note", models.TextField(blank=True)),
                ("artifact", models.CharField(blank=True, max_length=300)),
                ("sha256", models.CharField(blank=True, max_length=64)),
                ("size_bytes", models.PositiveBigIntegerField(default=0)),
                ("redaction_report", models.JSONField(blank=True, default=dict)),
                ("link_sha256", models.CharField(blank=True, db_index=True, max_length=64)),
                ("link_expires_at", models.DateTimeField(blank=True, null=True)),
                ("downloaded_at", models.DateTimeField(blank=True, null=True)),
                (
                    "expires_at",
                    models.DateTimeField(
                        blank=True,
                        db_index=True,
                        help_text="When the export's artifact is purged.",
                        null=True,
                    ),
                ),
                (
                    "decided_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "downloaded_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "job",
                    models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="export",
                        to="jobs.job",
                    ),
                ),
                (
                    "profile",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="retention.retentionprofile",
                    ),
                ),
                (
                    "requested_by",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-requested_at", "-id"],
                "db_table": "exports_export",
            },
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="PurgeRun",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("started_at", models.DateTimeField(auto_now_add=True)),
                        ("finished_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "as_of",
                            models.DateTimeField(help_text="The clock the purge judged expiry by."),
                        ),
                        ("dry_run", models.BooleanField(default=False)),
                        (
                            "trigger",
                            models.CharField(help_text="beat, command or web", max_length=20),
                        ),
                        (
                            "state",
                            models.CharField(
                                choices=[
                                    ("running", "Running"),
                                    ("succeeded", "Succeeded"),
                                    ("failed", "Failed"),
                                ],
                                default="running",
                                max_length=10,
                            ),
                        ),
                        (
                            "counts",
                            models.JSONField(
                                default=dict, help_text="kind -> items deleted (or listed)"
                            ),
                        ),
                        ("bytes_freed", models.PositiveBigIntegerField(default=0)),
                        ("error", models.TextField(blank=True)),
                        (
                            "triggered_by",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "ordering": ["-started_at", "-id"],
                        "db_table": "retention_purgerun",
                    },
                ),
                migrations.CreateModel(
                    name="LegalHold",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        (
                            "target_type",
                            models.CharField(
                                choices=[
                                    ("prompt_set", "Prompt set"),
                                    ("run", "Run"),
                                    ("case", "Case"),
                                ],
                                max_length=20,
                            ),
                        ),
                        ("target_id", models.PositiveBigIntegerField()),
                        ("target_repr", models.CharField(blank=True, max_length=300)),
                        ("reason", models.TextField()),
                        ("placed_at", models.DateTimeField(auto_now_add=True)),
                        ("lifted_at", models.DateTimeField(blank=True, null=True)),
                        ("lift_reason", models.TextField(blank=True)),
                        (
                            "lifted_by",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "placed_by",
                            models.ForeignKey(
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "ordering": ["-placed_at", "-id"],
                        "db_table": "retention_legalhold",
                        "indexes": [
                            models.Index(fields=["target_type", "target_id"], name="hold_target")
                        ],
                    },
                ),
            ],
        ),
    ]
