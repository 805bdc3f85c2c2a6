"""The triage queue over the API: the queue, and a decision on one of its traces."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from scopeweb.accounts.actor import Actor
from traces.models import Trace
from traces.selectors.triage import triage_queue, tripped_features
from traces.serializers.triage import (
    TriageDecisionSerializer,
    TriageItemSerializer,
    TriageQueueSerializer,
    TriageReviewSerializer,
)
from traces.services.triage import triage_decide

LIMIT = 50
LIMIT_MAX = 500


class TriageQueueApi(APIView):
    """Your triage queue: traces where a watched feature exceeds its threshold and that nobody
    has marked reviewed, in the order you work them (those you skipped last), with the tripped
    features. ``count`` is the whole queue; ``results`` its first ``limit`` traces."""

    access_rule = "browse_traces"

    @extend_schema(
        parameters=[OpenApiParameter("limit", int, description=f"At most {LIMIT_MAX}.")],
        responses=TriageQueueSerializer,
    )
    def get(self, request: Request) -> Response:
        raw = request.query_params.get("limit", "")
        limit = min(int(raw), LIMIT_MAX) if raw.isdigit() else LIMIT
        queue = triage_queue(Actor.of(request).person)
        traces = list(queue[:limit])
        tripped = tripped_features(traces)
        for trace in traces:
            trace.tripped = tripped.get(trace.pk, [])  # type: ignore[attr-defined]
        return Response(
            {
                "count": queue.count(),
                "results": TriageItemSerializer(traces, many=True).data,
            }
        )


class TriageDecideApi(APIView):
    """Decide on a trace of the queue: ``reviewed`` takes it out of everyone's queue,
    ``skipped`` moves it to the back of yours. 409 when it is not (or no longer) in the queue."""

    access_rule = "browse_traces"

    @extend_schema(
        request=TriageDecisionSerializer,
        responses={
            201: TriageReviewSerializer,
            409: OpenApiResponse(description="Not in the triage queue, or already reviewed."),
        },
    )
    def post(self, request: Request, trace_id: int) -> Response:
        actor = Actor.of(request)
        trace = get_object_or_404(Trace.objects.select_related("run"), pk=trace_id)
        body = TriageDecisionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        review = triage_decide(  # TriageRefused: 409
            trace=trace,
            actor=actor,
            decision=body.validated_data["decision"],
            note=body.validated_data.get("note", ""),
        )
        queue = triage_queue(actor.person)
        upcoming = queue.values_list("pk", flat=True).first()
        review.next = upcoming  # type: ignore[attr-defined]
        review.queue_length = queue.count()  # type: ignore[attr-defined]
        return Response(TriageReviewSerializer(review).data, status=status.HTTP_201_CREATED)
