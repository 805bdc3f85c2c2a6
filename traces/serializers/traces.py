from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from traces.models import Trace
from traces.selectors.traces import FEATURE_SORTS, SORTS, TraceQuery


class TraceQuerySerializer(serializers.Serializer[Any]):
    """The trace list's filters, as query parameters (the same as the web list's)."""

    run = serializers.IntegerField(required=False, min_value=1)
    prompt_set = serializers.IntegerField(required=False, min_value=1)
    profile = serializers.CharField(required=False, max_length=8, help_text="e.g. US, UK, FR")
    q = serializers.CharField(
        required=False, max_length=200, help_text="Text in the prompt or the completion."
    )
    feature = serializers.IntegerField(
        required=False,
        min_value=0,
        help_text="Keep traces where this feature fired (BOS left out).",
    )
    above = serializers.FloatField(
        required=False, help_text="With feature: keep traces where its peak exceeds this."
    )
    flagged = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="true: a watched feature peaks above its threshold; false: none does.",
    )
    sort = serializers.ChoiceField(
        choices=[key for key in SORTS if key], required=False, help_text="- for descending."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("feature") is None:
            if attrs.get("above") is not None:
                raise serializers.ValidationError({"above": "Needs feature."})
            if attrs.get("sort") in FEATURE_SORTS:
                raise serializers.ValidationError({"sort": "Sorting by activation needs feature."})
        return attrs

    def query(self) -> TraceQuery:
        data = self.validated_data
        return TraceQuery(
            run=data.get("run"),
            prompt_set=data.get("prompt_set"),
            profile=data.get("profile", ""),
            text=data.get("q", "").strip(),
            feature=data.get("feature"),
            above=data.get("above"),
            flagged=data.get("flagged"),
            sort=data.get("sort", ""),
        )


class TraceSerializer(serializers.ModelSerializer[Trace]):
    prompt_position = serializers.IntegerField(source="prompt.position")
    prompt_text = serializers.CharField(source="prompt.text")
    sae = serializers.CharField(source="run.sae.name")
    profile = serializers.CharField(source="run.profile.code")
    flagged = serializers.BooleanField(
        help_text="A watched feature of the SAE peaks above its threshold in the trace."
    )
    feature_value = serializers.FloatField(
        allow_null=True, help_text="With feature: its peak in the trace."
    )

    class Meta:
        model = Trace
        fields = [
            "id",
            "run",
            "sae",
            "profile",
            "prompt",
            "prompt_position",
            "prompt_text",
            "completion",
            "tokens",
            "prompt_tokens",
            "truncated",
            "l0",
            "fvu",
            "resid_norm",
            "arrays_sha256",
            "flagged",
            "feature_value",
        ]
        read_only_fields = fields


class TokenFeatureSerializer(serializers.Serializer[Any]):
    index = serializers.IntegerField()
    value = serializers.FloatField()
    label = serializers.CharField(  # type: ignore[assignment]  # a field, not Field.label
        help_text="The annotation's label; empty when unannotated."
    )


class TokenSerializer(serializers.Serializer[Any]):
    position = serializers.IntegerField(help_text="0 is the BOS token.")
    id = serializers.IntegerField(source="token_id")
    text = serializers.CharField(trim_whitespace=False)
    is_bos = serializers.BooleanField()
    is_completion = serializers.BooleanField()
    redacted = serializers.CharField(
        allow_null=True,
        help_text="The PII category when the token was redacted before storage (UK, FR): its "
        "text is then [CATEGORY] on a span's first token and empty on the rest, and its id "
        "the pad id. Null when stored as given.",
    )
    l0 = serializers.IntegerField()
    recon_err = serializers.FloatField(help_text="Squared norm of the reconstruction error.")
    resid_norm = serializers.FloatField()
    features = serializers.SerializerMethodField()

    @extend_schema_field(TokenFeatureSerializer(many=True))
    def get_features(self, token: Any) -> list[dict[str, Any]]:
        labels = self.context["labels"]
        return [
            {"index": index, "value": value, "label": labels.get(index, "")}
            for index, value in token.features
        ]


class TraceTokensSerializer(serializers.Serializer[Any]):
    trace = serializers.IntegerField(source="trace.pk")
    run = serializers.IntegerField(source="trace.run_id")
    sae = serializers.CharField(source="trace.run.sae.name")
    tokens = serializers.SerializerMethodField()

    @extend_schema_field(TokenSerializer(many=True))
    def get_tokens(self, view: Any) -> list[dict[str, Any]]:
        labels = {index: label.label for index, label in view.labels.items()}
        # many=True makes a ListSerializer, whose .data is a list; the stubs type it a ReturnDict.
        return TokenSerializer(view.tokens, many=True, context={"labels": labels}).data  # type: ignore[return-value]
