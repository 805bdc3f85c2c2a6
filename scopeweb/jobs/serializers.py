from rest_framework import serializers

from scopeweb.jobs.models import Job


class JobSerializer(serializers.ModelSerializer[Job]):
    created_by = serializers.CharField(source="created_by.username", default=None, read_only=True)
    percent = serializers.IntegerField(read_only=True)
    duration_s = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "state",
            "title",
            "created_by",
            "progress_done",
            "progress_total",
            "progress_note",
            "percent",
            "error",
            "error_details",
            "result",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
            "duration_s",
        ]
        read_only_fields = fields
