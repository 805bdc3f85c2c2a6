from __future__ import annotations

from typing import Any

from rest_framework import serializers

from traces.models import FeatureAnnotation, FeatureAnnotationChange


class AnnotationSerializer(serializers.ModelSerializer[FeatureAnnotation]):
    """A feature's annotation; a feature nobody annotated has empty fields and no ``updated_at``."""

    sae = serializers.CharField(source="sae.name")
    updated_by = serializers.CharField(source="updated_by.username", default=None)
    updated_at = serializers.DateTimeField(allow_null=True)
    safety_tags = serializers.ListField(child=serializers.CharField())
    watched = serializers.BooleanField(
        help_text="A safety tag and a threshold: counts towards the flagged rate."
    )

    class Meta:
        model = FeatureAnnotation
        fields = [
            "sae",
            "index",
            "label",
            "description",
            "tags",
            "safety_tags",
            "watch_threshold",
            "watched",
            "updated_by",
            "updated_at",
        ]
        read_only_fields = fields


class AnnotationInputSerializer(serializers.Serializer[Any]):
    """PUT replaces the annotation (a field left out becomes empty); PATCH changes only the
    fields it names. Tags are normalised (lower case, ``-`` for spaces), safety tags first.

    Only the shape is checked here: ``annotation_values_clean`` (called by the service) is the
    one validator of the values, and its problems come back as a 400 naming each field."""

    label = serializers.CharField(  # type: ignore[assignment]  # a field, not Field.label
        allow_blank=True, required=False, trim_whitespace=False
    )
    description = serializers.CharField(allow_blank=True, required=False, trim_whitespace=False)
    tags = serializers.ListField(child=serializers.CharField(), required=False)
    watch_threshold = serializers.FloatField(allow_null=True, required=False)


class AnnotationChangeSerializer(serializers.ModelSerializer[FeatureAnnotationChange]):
    changed_by = serializers.CharField(source="changed_by.username", default=None)

    class Meta:
        model = FeatureAnnotationChange
        fields = ["changed_by", "changed_at", "via", "before", "after"]
        read_only_fields = fields


class RunTraceSerializer(serializers.Serializer[Any]):
    run = serializers.IntegerField(source="run_id")
    trace = serializers.IntegerField(source="trace_id")


class TopExampleSerializer(serializers.Serializer[Any]):
    """A prompt among the feature's strongest, once however many runs analysed it: its
    strongest trace, and the other runs where it fired for the feature."""

    run = serializers.IntegerField(source="row.trace.run_id")
    trace = serializers.IntegerField(source="row.trace_id")
    prompt_position = serializers.IntegerField(source="row.trace.prompt.position")
    max_activation = serializers.FloatField(source="row.max_activation")
    count = serializers.IntegerField(source="row.count")
    first_position = serializers.IntegerField(source="row.first_position")
    also_in = RunTraceSerializer(many=True, help_text="The prompt's traces in other runs.")


class LensTokenSerializer(serializers.Serializer[Any]):
    token_id = serializers.IntegerField()
    piece = serializers.CharField(help_text="The vocabulary piece (▁ marks a leading space).")
    value = serializers.FloatField()


class NeighbourSerializer(serializers.Serializer[Any]):
    index = serializers.IntegerField()
    cosine = serializers.FloatField()
    label = serializers.CharField()  # type: ignore[assignment]  # a field, not Field.label


class FeatureLensSerializer(serializers.Serializer[Any]):
    promoted = LensTokenSerializer(many=True)
    suppressed = LensTokenSerializer(many=True)
    neighbours = NeighbourSerializer(many=True)


class FeatureSerializer(serializers.Serializer[Any]):
    sae = serializers.CharField()
    index = serializers.IntegerField()
    traces = serializers.IntegerField(help_text="Stored traces where the feature fired.")
    runs = serializers.IntegerField()
    peak = serializers.FloatField(allow_null=True, help_text="Highest activation, BOS excluded.")
    top_examples = TopExampleSerializer(many=True)
    annotation = AnnotationSerializer()
    lens = FeatureLensSerializer(
        allow_null=True,
        help_text="Logit lens and decoder neighbours; null until computed for the SAE "
        "(POST the feature page's 'Compute the logit lens', or manage.py logit_lens).",
    )


class LabelSuggestionSerializer(serializers.Serializer[Any]):
    label = serializers.CharField(  # type: ignore[assignment]  # a field, not Field.label
        help_text="Empty when no stored trace holds the feature."
    )
    top_tokens = serializers.ListField(child=serializers.CharField())
    promoted = serializers.ListField(
        child=serializers.CharField(), help_text="Logit-lens tokens (not computed yet)."
    )


class ImportResultSerializer(serializers.Serializer[Any]):
    created = serializers.IntegerField()
    changed = serializers.IntegerField()
    unchanged = serializers.IntegerField()
