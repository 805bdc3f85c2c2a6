from rest_framework import generics

from scopeweb.jobs.models import Job
from scopeweb.jobs.serializers import JobSerializer


class JobListApi(generics.ListAPIView):
    """Background jobs, newest first."""

    access_rule = "view_jobs"
    serializer_class = JobSerializer
    queryset = Job.objects.select_related("created_by")


class JobDetailApi(generics.RetrieveAPIView):
    """One job: poll it to follow an import."""

    access_rule = "view_jobs"
    serializer_class = JobSerializer
    queryset = Job.objects.select_related("created_by")
