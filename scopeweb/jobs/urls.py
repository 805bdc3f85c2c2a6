"""Background job routes: the list, one job (polled by htmx while it runs), and the API."""

from django.urls import URLPattern, path

from scopeweb.jobs import api, views

urlpatterns: list[URLPattern] = [
    path("jobs/", views.job_list, name="job_list"),
    path("jobs/<uuid:job_id>/", views.job_detail, name="job_detail"),
    path("api/jobs/", api.JobListApi.as_view(), name="api_jobs"),
    path("api/jobs/<uuid:pk>/", api.JobDetailApi.as_view(), name="api_job"),
]
