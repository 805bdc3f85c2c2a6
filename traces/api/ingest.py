"""The ingest API: sampled production requests in, for an ingest key of one manifest.

- ``POST /api/ingest/v1/traces``: the plain JSON format (``traces.ingest.plain``), which the
  tracer (``scopeweb_tracer``) sends.
- ``POST /api/ingest/otlp/v1/traces``: OTLP/HTTP spans, JSON or protobuf by ``Content-Type``,
  in the OpenTelemetry GenAI conventions (``traces.ingest.otlp``).

202 means every sampled request of the body is durable; 400 names what is wrong and stores
nothing; 429 (with ``Retry-After``) asks the sender to come back when the queue has drained.
The ingest key reaches these two routes only and reads nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from scopeweb.accounts.access import INGEST_KEY
from scopeweb.accounts.tokens import header_key, touch_last_used
from traces.ingest.models import IngestToken
from traces.ingest.otlp import records_from_otlp_json, records_from_otlp_protobuf
from traces.ingest.plain import records_from_plain_json
from traces.ingest.records import MAX_BODY_BYTES, ParseResult, PayloadError
from traces.services.ingest import IngestBusy, ingest_accept

PROTOBUF_TYPES = ("application/x-protobuf", "application/protobuf")


class IngestKeyAuthentication(BaseAuthentication):
    """``Authorization: Token swi_…`` (or ``Bearer``, as OTLP exporters send headers)."""

    def authenticate(self, request: Request) -> tuple[Any, IngestToken] | None:
        key = header_key(request, ("Token", "Bearer"), "ingest key")
        if key is None:
            return None
        token = (
            IngestToken.objects.select_related("manifest__profile")
            .filter(key_sha256=IngestToken.hash_key(key), revoked_at__isnull=True)
            .first()
        )
        if token is None:
            raise AuthenticationFailed("Unknown or revoked ingest key.")
        touch_last_used(token)
        return None, token

    def authenticate_header(self, request: Request) -> str:
        return "Token"


class RawBody(BaseParser):
    """Leaves the body to the view, which reads it within ``MAX_BODY_BYTES``."""

    media_type = "*/*"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        return None


class _IngestApi(APIView, ABC):
    """The two ingest routes; each subclass says how its body is read (``parse``)."""

    access_rule = INGEST_KEY
    authentication_classes = [IngestKeyAuthentication]
    parser_classes = [RawBody]
    via = ""

    @abstractmethod
    def parse(self, body: bytes, content_type: str) -> ParseResult:
        """The body's records, or ``PayloadError`` naming what is wrong."""

    @extend_schema(
        request={"application/json": OpenApiTypes.OBJECT},
        responses={202: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT, 429: OpenApiTypes.OBJECT},
    )
    def post(self, request: Request) -> Response:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > MAX_BODY_BYTES:
            return Response(
                {"detail": f"The body is {length:,} bytes; the limit is {MAX_BODY_BYTES:,}."},
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        body = request._request.read(MAX_BODY_BYTES + 1)
        content_type = (request.content_type or "").split(";")[0].strip().lower()
        try:
            parsed = self.parse(body, content_type)
        except PayloadError as exc:
            return Response({"detail": str(exc), "field": exc.path}, status=400)
        token = request.auth
        assert isinstance(token, IngestToken)  # IngestKeyAuthentication, checked by access_rule
        try:
            receipt = ingest_accept(
                token=token,
                records=parsed.records,
                via=self.via_for(content_type),
                skipped_spans=parsed.skipped_spans,
            )
        except IngestBusy as exc:
            return Response(
                exc.as_dict(), status=429, headers={"Retry-After": str(exc.retry_after)}
            )
        return Response(receipt.as_dict(), status=status.HTTP_202_ACCEPTED)

    def via_for(self, content_type: str) -> str:
        return self.via


class IngestPlainApi(_IngestApi):
    """Requests in Scope Web's plain JSON format (what the tracer sends)."""

    via = "json"

    def parse(self, body: bytes, content_type: str) -> ParseResult:
        if content_type != "application/json":
            raise PayloadError("Content-Type", "send application/json")
        return records_from_plain_json(body)


class IngestOtlpApi(_IngestApi):
    """OTLP/HTTP trace export: JSON or protobuf."""

    def parse(self, body: bytes, content_type: str) -> ParseResult:
        if content_type in PROTOBUF_TYPES:
            return records_from_otlp_protobuf(body)
        if content_type == "application/json":
            return records_from_otlp_json(body)
        raise PayloadError(
            "Content-Type", "send application/json or application/x-protobuf (OTLP/HTTP)"
        )

    def via_for(self, content_type: str) -> str:
        return "otlp-protobuf" if content_type in PROTOBUF_TYPES else "otlp-json"
