"""Comparing two runs over the API: feature shifts and the traces that changed most."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class FeatureShiftSerializer(serializers.Serializer[Any]):
    feature = serializers.IntegerField()
    label = serializers.CharField()  # type: ignore[assignment]  # a field, not Field.label
    rate_a = serializers.FloatField()
    rate_b = serializers.FloatField()
    rate_change = serializers.FloatField()
    mean_a = serializers.FloatField(allow_null=True)
    mean_b = serializers.FloatField(allow_null=True)
    mean_change = serializers.FloatField(allow_null=True)


class TraceShiftSerializer(serializers.Serializer[Any]):
    prompt = serializers.CharField()
    trace_a = serializers.IntegerField()
    trace_b = serializers.IntegerField()
    distance = serializers.FloatField()
    gained = serializers.ListField(child=serializers.IntegerField())
    lost = serializers.ListField(child=serializers.IntegerField())


class RunComparisonSerializer(serializers.Serializer[Any]):
    a = serializers.IntegerField(source="a.pk")
    b = serializers.IntegerField(source="b.pk")
    traces_a = serializers.IntegerField()
    traces_b = serializers.IntegerField()
    shared_prompts = serializers.IntegerField()
    by_rate = FeatureShiftSerializer(many=True)
    by_mean = FeatureShiftSerializer(many=True)
    traces = TraceShiftSerializer(many=True)
