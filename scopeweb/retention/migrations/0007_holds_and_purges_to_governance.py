"""Legal holds and purge passes now belong to the governance app (which took their tables over
in ``governance.0001``): drop them from retention's state only."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("retention", "0006_backfill_expiry"),
        ("governance", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="LegalHold"),
                migrations.DeleteModel(name="PurgeRun"),
            ],
        ),
    ]
