from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0007_gate_jobs"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="deliveries",
            field=models.PositiveSmallIntegerField(
                default=0,
                help_text="Times a worker took the task message in delivery_key; above 1, a "
                "worker died while running it.",
            ),
        ),
        migrations.AddField(
            model_name="job",
            name="delivery_key",
            field=models.CharField(
                blank=True,
                help_text="The task message counted: its id and retry.",
                max_length=100,
            ),
        ),
    ]
