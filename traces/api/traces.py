"""Traces: the filtered list, and one trace's tokens with their kept features."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from scopeweb.accounts.actor import Actor
from traces.models import Trace
from traces.selectors.trace_tokens import ArraysGone, trace_token_view
from traces.selectors.traces import list_page, trace_list
from traces.serializers.traces import TraceQuerySerializer, TraceSerializer, TraceTokensSerializer
from traces.services.traces import trace_viewed


class NoCountPagination(BasePagination):
    """Page numbers without a total: one row more than the page says whether a next page
    exists, so a list over 100k traces never runs COUNT(*)."""

    page_size = 50
    max_page_size = 500

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any]:
        self.request = request
        number = request.query_params.get("page", "1")
        size = request.query_params.get("page_size", "")
        self.size = (
            min(int(size), self.max_page_size) if size.isdigit() and int(size) else self.page_size
        )
        self.page = list_page(queryset, int(number) if number.isdigit() else 1, self.size)
        return self.page.items

    def _link(self, number: int) -> str:
        url = self.request.build_absolute_uri()
        return (
            remove_query_param(url, "page")
            if number == 1
            else replace_query_param(url, "page", number)
        )

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {
                "next": self._link(self.page.number + 1) if self.page.has_next else None,
                "previous": self._link(self.page.number - 1) if self.page.has_previous else None,
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["results"],
            "properties": {
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "previous": {"type": "string", "nullable": True, "format": "uri"},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {"name": "page", "required": False, "in": "query", "schema": {"type": "integer"}},
            {
                "name": "page_size",
                "required": False,
                "in": "query",
                "schema": {"type": "integer", "maximum": self.max_page_size},
            },
        ]


class TraceListApi(generics.ListAPIView[Trace]):
    """Traces, filtered by run, prompt set, profile, text, a feature (above a value) or the
    flagged mark, and sorted by tokens, L0, FVU, residual norm or the feature's peak. Pages
    carry next/previous links and no total."""

    access_rule = "browse_traces"
    serializer_class = TraceSerializer
    pagination_class = NoCountPagination

    @extend_schema(parameters=[TraceQuerySerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Trace]:
        params = TraceQuerySerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        return trace_list(params.query())


class TraceTokensApi(APIView):
    """Every captured token of a trace (position 0 is BOS): its id and text, whether the model
    generated it, L0, reconstruction error, residual norm, and its kept features strongest
    first, with the annotation's label. 410 when the trace's arrays were purged."""

    access_rule = "browse_traces"

    @extend_schema(
        responses={200: TraceTokensSerializer, 410: OpenApiResponse(description="Arrays purged.")}
    )
    def get(self, request: Request, pk: int) -> Response:
        trace = get_object_or_404(Trace.objects.select_related("run__sae"), pk=pk)
        trace_viewed(trace=trace, actor=Actor.of(request))
        try:
            view = trace_token_view(trace)
        except ArraysGone:
            return Response(
                {"detail": "This trace's token arrays are no longer stored."},
                status=status.HTTP_410_GONE,
            )
        return Response(TraceTokensSerializer(view).data)
