"""Comparing two runs of one SAE, as JSON (``GET /api/runs/compare/?a=&b=``)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from traces.forms_compare import RunCompareForm
from traces.selectors_compare import CompareError, runs_compare


class FeatureShiftSerializer(serializers.Serializer):
    feature = serializers.IntegerField()
    label = serializers.CharField()  # type: ignore[assignment]  # a field, not Field.label
    rate_a = serializers.FloatField()
    rate_b = serializers.FloatField()
    rate_change = serializers.FloatField()
    mean_a = serializers.FloatField(allow_null=True)
    mean_b = serializers.FloatField(allow_null=True)
    mean_change = serializers.FloatField(allow_null=True)


class TraceShiftSerializer(serializers.Serializer):
    prompt = serializers.CharField()
    trace_a = serializers.IntegerField()
    trace_b = serializers.IntegerField()
    distance = serializers.FloatField()
    gained = serializers.ListField(child=serializers.IntegerField())
    lost = serializers.ListField(child=serializers.IntegerField())


class RunComparisonSerializer(serializers.Serializer):
    a = serializers.IntegerField(source="a.pk")
    b = serializers.IntegerField(source="b.pk")
    traces_a = serializers.IntegerField()
    traces_b = serializers.IntegerField()
    shared_prompts = serializers.IntegerField()
    by_rate = FeatureShiftSerializer(many=True)
    by_mean = FeatureShiftSerializer(many=True)
    traces = TraceShiftSerializer(many=True)


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
