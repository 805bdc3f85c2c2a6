"""Comparing two runs of one SAE, as JSON (``GET /api/runs/compare/?a=&b=``)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from traces.forms.compare import RunCompareForm
from traces.selectors.compare import CompareError, runs_compare
from traces.serializers.compare import RunComparisonSerializer


class RunCompareApi(APIView):
    access_rule = "browse_traces"

    @extend_schema(
        responses=RunComparisonSerializer,
        parameters=[
            OpenApiParameter("a", int, required=True, description="The baseline run's id"),
            OpenApiParameter("b", int, required=True, description="The candidate run's id"),
        ],
    )
    def get(self, request: Request) -> Response:
        form = RunCompareForm(request.query_params)
        if not form.is_valid():
            raise ValidationError(form.errors.get_json_data())
        try:
            comparison = runs_compare(form.cleaned_data["a"], form.cleaned_data["b"])
        except CompareError as exc:
            raise ValidationError({"non_field_errors": [str(exc)]}) from None
        return Response(RunComparisonSerializer(comparison).data)
