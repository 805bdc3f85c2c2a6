from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response

from scopeweb.accounts.actor import Actor
from traces.models import AnalysisRun
from traces.selectors.runs import run_list
from traces.serializers.runs import RunSerializer, RunStartSerializer
from traces.services.runs import run_start


class RunListApi(generics.ListAPIView[AnalysisRun]):
    """Analysis runs (GET), or start one on a prompt set (POST)."""

    access_rule = "start_analysis"
    serializer_class = RunSerializer

    def get_queryset(self) -> QuerySet[AnalysisRun]:
        return run_list()

    @extend_schema(request=RunStartSerializer, responses={202: RunSerializer})
    def post(self, request: Request) -> Response:
        data = RunStartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = run_start(actor=Actor.of(request), **data.validated_data)
        return Response(RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class RunDetailApi(generics.RetrieveAPIView[AnalysisRun]):
    """One run: poll it for progress; when it succeeds, its summary and pins."""

    access_rule = "browse_traces"
    serializer_class = RunSerializer

    def get_queryset(self) -> QuerySet[AnalysisRun]:
        return run_list()
