"""The tables of holds, purge passes and exports take governance's own names."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0001_initial"),
        ("retention", "0007_holds_and_purges_to_governance"),
    ]

    operations = [
        migrations.AlterModelTable(name="export", table=None),
        migrations.AlterModelTable(name="legalhold", table=None),
        migrations.AlterModelTable(name="purgerun", table=None),
    ]
