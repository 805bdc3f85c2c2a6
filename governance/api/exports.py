"""Exports over the API: list and request (``export_data``), read one (its link given once to
its requester), approve or refuse (``approve_export``), and the single-use download. A step the
export's state or the four-eyes rule refuses answers 409; a used or expired link 410."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.models import Export, ExportState
from governance.selectors.exports import export_get, export_list
from governance.serializers.exports import (
    ExportCreateSerializer,
    ExportDecisionSerializer,
    ExportDetailSerializer,
    ExportSerializer,
)
from governance.services.exports import (
    export_decide,
    export_download,
    export_link_issue,
    export_request,
)
from scopeweb.accounts.actor import Actor

REFUSED = OpenApiResponse(description="Refused by the export's state or the four-eyes rule.")


def _detail(request: Request, export: Export) -> dict[str, Any]:
    token = export_link_issue(export, actor=Actor.of(request))
    link = (
        request.build_absolute_uri(reverse("api_export_download", args=[token])) if token else None
    )
    return ExportDetailSerializer(export, context={"link": link}).data


class ExportListApi(generics.ListAPIView[Export]):
    """Your exports, newest first (admins: every export); POST requests one."""

    access_rule = "export_data"
    serializer_class = ExportSerializer

    def get_queryset(self) -> QuerySet[Export]:
        return export_list(
            Actor.of(self.request).person, state=self.request.query_params.get("state", "")
        )

    @extend_schema(parameters=[OpenApiParameter("state", str, enum=ExportState.values)])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(request=ExportCreateSerializer, responses={201: ExportDetailSerializer})
    def post(self, request: Request) -> Response:
        body = ExportCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        export = export_request(
            kind=data["kind"],
            target_id=data["target_id"],
            actor=Actor.of(request),
            purpose=data["purpose"],
        )
        return Response(_detail(request, export), status=status.HTTP_201_CREATED)


class ExportDetailApi(APIView):
    """One export. Its requester's first read after it is ready carries ``link``, once."""

    access_rule = "export_data"

    @extend_schema(responses=ExportDetailSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(_detail(request, export_get(Actor.of(request).person, pk)))


class _DecisionApi(APIView):
    access_rule = "approve_export"
    approve = True

    @extend_schema(
        request=ExportDecisionSerializer, responses={200: ExportSerializer, 409: REFUSED}
    )
    def post(self, request: Request, pk: int) -> Response:
        actor = Actor.of(request)
        export = export_get(actor.person, pk)
        body = ExportDecisionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        decided = export_decide(
            export, approve=self.approve, note=body.validated_data["note"], actor=actor
        )
        return Response(ExportSerializer(decided).data)


class ExportApproveApi(_DecisionApi):
    """Approve an export awaiting the GDPR review (an admin other than its requester)."""

    approve = True


class ExportRefuseApi(_DecisionApi):
    """Refuse an export awaiting the GDPR review, with a ``note`` saying why; it is never built."""

    approve = False


class ExportDownloadApi(APIView):
    """The single-use link: the export's zip, to anyone with a role (reviewer, auditor, admin)
    holding the token. A used or late link answers 410, an unknown one 404."""

    access_rule = "use_export_link"

    @extend_schema(
        responses={
            (200, "application/zip"): OpenApiResponse(description="The export's zip"),
            404: OpenApiResponse(description="No such link."),
            410: OpenApiResponse(description="The link was used or has expired."),
        }
    )
    def get(self, request: Request, token: str) -> FileResponse:
        found = export_download(token, actor=Actor.of(request))  # LinkRefused: 404 or 410
        return FileResponse(
            found.handle,
            as_attachment=True,
            filename=found.filename,
            content_type="application/zip",
        )
