"""Feature annotations, their history, search, label suggestions, export and import."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from scopeweb.accounts.access import describe
from scopeweb.accounts.actor import Actor
from scopeweb.api_bodies import JSONParser, MultiPartParser
from traces.models import FeatureAnnotation, FeatureAnnotationChange, SaeRecord
from traces.selectors import features as selectors
from traces.selectors.feature_peaks import feature_peak_prompts, feature_top_tokens
from traces.serializers.features import (
    AnnotationChangeSerializer,
    AnnotationInputSerializer,
    AnnotationSerializer,
    FeatureSerializer,
    ImportResultSerializer,
    LabelSuggestionSerializer,
)
from traces.services.annotations import (
    annotation_save,
    annotation_snapshot,
    annotations_export,
    annotations_import,
    annotations_parse,
)
from traces.services.feature_labels import feature_label_suggestion
from traces.services.feature_stats import feature_lens, feature_promoted_pieces, feature_stats_ready

TOP_EXAMPLES = 10


def _sae(name: str) -> SaeRecord:
    return get_object_or_404(SaeRecord, name=name)


def _feature(name: str, index: int) -> tuple[SaeRecord, int]:
    sae = _sae(name)
    if index >= sae.width:
        raise Http404(f"{sae.name} has features 0 to {sae.width - 1}.")
    return sae, index


def _annotation(sae: SaeRecord, index: int) -> FeatureAnnotation:
    """The stored annotation, or an unsaved empty one: every feature of the SAE has one."""
    return selectors.annotation_for(sae, index) or FeatureAnnotation(sae=sae, index=index)


class FeatureSearchApi(generics.ListAPIView[FeatureAnnotation]):
    """Annotated features of an SAE whose label, description or tags hold every word of ``q``;
    a number also finds that feature. ``tag`` keeps those with the tag, ``watched=1`` the
    watched ones."""

    access_rule = "read_annotations"
    serializer_class = AnnotationSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("q", str, required=False),
            OpenApiParameter("tag", str, required=False),
            OpenApiParameter("watched", bool, required=False),
        ]
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[FeatureAnnotation]:
        params = self.request.query_params
        return selectors.feature_search(
            _sae(self.kwargs["sae_name"]),
            params.get("q", "")[:200],
            tag=params.get("tag", "")[:40],
            watched=params.get("watched", "") in ("1", "true", "on"),
        ).select_related("sae")


class FeatureApi(APIView):
    """What the trace index knows about a feature (traces where it fired, its peak, its
    strongest prompts, each once with the other runs where it fired) and its annotation."""

    access_rule = "browse_traces"

    @extend_schema(responses=FeatureSerializer)
    def get(self, request: Request, sae_name: str, index: int) -> Response:
        sae, index = _feature(sae_name, index)
        activity = selectors.feature_activity(sae, index)
        data = {
            "sae": sae.name,
            "index": index,
            "traces": activity.traces,
            "runs": activity.runs,
            "peak": activity.peak,
            "top_examples": feature_peak_prompts(sae, index, TOP_EXAMPLES),
            "annotation": _annotation(sae, index),
            "lens": feature_lens(sae, index) if feature_stats_ready(sae) else None,
        }
        return Response(FeatureSerializer(data).data)


class FeatureAnnotationApi(APIView):
    """Read a feature's annotation (reviewers, auditors, admins) or change it (reviewers and
    admins). Every change is kept in its history with who, when, before and after."""

    access_rule = "read_annotations"
    write_rule = "annotate_feature"

    def check_permissions(self, request: Request) -> None:
        super().check_permissions(request)
        if request.method not in SAFE_METHODS and not Actor.of(request).may(self.write_rule):
            self.permission_denied(
                request,
                message=f"Your role may not change annotations: {describe(self.write_rule)}",
            )

    @extend_schema(responses=AnnotationSerializer)
    def get(self, request: Request, sae_name: str, index: int) -> Response:
        sae, index = _feature(sae_name, index)
        return Response(AnnotationSerializer(_annotation(sae, index)).data)

    def _save(self, request: Request, sae_name: str, index: int, *, partial: bool) -> Response:
        sae, index = _feature(sae_name, index)
        data = AnnotationInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        if partial:
            values = {**annotation_snapshot(selectors.annotation_for(sae, index)), **values}
        annotation_save(
            sae=sae,
            index=index,
            actor=Actor.of(request),
            values=values,
            via=FeatureAnnotationChange.Via.API,
        )
        return Response(AnnotationSerializer(_annotation(sae, index)).data)

    @extend_schema(request=AnnotationInputSerializer, responses=AnnotationSerializer)
    def put(self, request: Request, sae_name: str, index: int) -> Response:
        return self._save(request, sae_name, index, partial=False)

    @extend_schema(request=AnnotationInputSerializer, responses=AnnotationSerializer)
    def patch(self, request: Request, sae_name: str, index: int) -> Response:
        return self._save(request, sae_name, index, partial=True)


class FeatureAnnotationHistoryApi(generics.ListAPIView[FeatureAnnotationChange]):
    """A feature's annotation changes, newest first: only the changed fields, before and after."""

    access_rule = "read_annotations"
    serializer_class = AnnotationChangeSerializer

    def get_queryset(self) -> QuerySet[FeatureAnnotationChange]:
        sae, index = _feature(self.kwargs["sae_name"], self.kwargs["index"])
        return selectors.annotation_history(sae, index)


class FeatureLabelSuggestionApi(APIView):
    """A label suggested from the tokens the feature fires on most strongly in stored traces;
    nothing is saved (PUT the annotation to accept it)."""

    access_rule = "annotate_feature"

    @extend_schema(responses=LabelSuggestionSerializer)
    def get(self, request: Request, sae_name: str, index: int) -> Response:
        sae, index = _feature(sae_name, index)
        top_tokens = feature_top_tokens(sae, index)
        promoted = feature_promoted_pieces(sae, index)
        label = feature_label_suggestion(sae, index, top_tokens, promoted)
        data = {"label": label, "top_tokens": top_tokens, "promoted": promoted}
        return Response(LabelSuggestionSerializer(data).data)


class AnnotationsExportApi(APIView):
    """Every annotation of the SAE, as the import reads it."""

    access_rule = "read_annotations"

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, sae_name: str) -> Response:
        return Response(annotations_export(_sae(sae_name), actor=Actor.of(request)))


class AnnotationsImportApi(APIView):
    """Import an export document: as the JSON body, or as ``file`` in a multipart upload.

    All or nothing: a document with any bad entry changes nothing and gets a 400 whose
    ``problems`` name each entry (1-based), feature and field.
    """

    access_rule = "annotate_feature"
    parser_classes = [JSONParser, MultiPartParser]

    @extend_schema(
        request={"application/json": OpenApiTypes.OBJECT},
        responses={200: ImportResultSerializer},
    )
    def post(self, request: Request, sae_name: str) -> Response:
        sae = _sae(sae_name)
        upload = request.FILES.get("file")
        data = annotations_parse(upload.read()) if upload is not None else request.data
        result = annotations_import(sae, data, actor=Actor.of(request))
        return Response(ImportResultSerializer(result).data)
