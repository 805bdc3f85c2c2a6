from rest_framework import generics

from scopeweb.jobs.models import Job
from scopeweb.jobs.serializers import JobSerializer


class JobListApi(generics.ListAPIView[Job]):
    """Background jobs, newest first."""

    access_rule = "view_jobs"
    serializer_class = JobSerializer
    queryset = Job.objects.select_related("created_by")


class JobDetailApi(generics.RetrieveAPIView[Job]):
    """One job: poll it to follow an import."""

    access_rule = "view_jobs"
    serializer_class = JobSerializer
    queryset = Job.objects.select_related("created_by")
