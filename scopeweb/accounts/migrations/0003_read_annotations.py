"""The ``read_annotations`` capability (reviewers, auditors and admins), given to the groups."""

from django.db import migrations


def grant(apps, schema_editor):  # type: ignore[no-untyped-def]
    from scopeweb.accounts.role_sync import sync_roles

    sync_roles(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_roles"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="rolecapability",
            options={
                "default_permissions": (),
                "managed": False,
                "permissions": [
                    ("upload_prompt_set", "Upload prompt sets"),
                    ("view_prompt_set", "See prompt sets and their prompts"),
                    ("start_analysis", "Start analyses"),
                    ("browse_traces", "Browse runs, traces, tokens and features"),
                    ("annotate_feature", "Annotate features"),
                    ("read_annotations", "Read feature annotations and their history"),
                    ("work_case", "Open and work audit cases"),
                    ("sign_off_case", "Sign audit cases off"),
                    ("view_jobs", "See background jobs"),
                    ("read_signed_case", "Read signed-off cases and their reports"),
                    ("verify_report", "Verify report signatures"),
                    ("read_audit_log", "Read the audit log"),
                    ("manage_users", "Manage users and roles"),
                    ("manage_retention", "Edit retention profiles"),
                    ("manage_holds", "Place and lift legal holds"),
                    ("manage_registry", "Manage the model and SAE registry"),
                    ("purge", "Purge expired data"),
                ],
            },
        ),
        migrations.RunPython(grant, migrations.RunPython.noop),
    ]
