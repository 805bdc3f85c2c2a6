"""The gate API that ``scopeweb-gate`` speaks (docs/gates-ci.md): start a run, read its status,
download its attestation, and the deployment's certificate to verify it with.

A gate key (``Authorization: Bearer swg_…``) reaches its own gate's runs and nothing else; a key
of another gate gets 403, an unknown or revoked one 401.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gates.models import GateRun, GateToken
from gates.selectors import gate_run_status
from gates.services.runs import gate_run_start
from gates.signing import deployment_certificate_pem
from reports.pdf.signing import SigningError
from scopeweb.accounts.access import GATE_KEY, PUBLIC
from scopeweb.accounts.actor import Actor
from scopeweb.accounts.tokens import header_key, touch_last_used
from scopeweb.api_bodies import FormParser, JSONParser, MultiPartParser


class GateKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer swg_…`` (or ``Token swg_…``)."""

    def authenticate(self, request: Request) -> tuple[Any, GateToken] | None:
        key = header_key(request, ("Bearer", "Token"), "gate key")
        if key is None:
            return None
        token = (
            GateToken.objects.select_related("gate__profile", "created_by")
            .filter(key_sha256=GateToken.hash_key(key), revoked_at__isnull=True)
            .first()
        )
        if token is None:
            raise AuthenticationFailed("Unknown or revoked gate key.")
        touch_last_used(token)
        return token.created_by, token

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"


def _token(request: Request) -> GateToken:
    token = request.auth
    assert isinstance(token, GateToken)  # GateKeyAuthentication, checked by access_rule
    return token


def _actor(request: Request) -> Actor:
    token = _token(request)
    source = str(request.META.get("REMOTE_ADDR", "") or "")[:100]
    return Actor(user=token.created_by, via=f"gate-key:{token.pk}", source=source)


class _GateKeyApi(APIView):
    access_rule = GATE_KEY
    authentication_classes = [GateKeyAuthentication]

    def own_run(self, request: Request, run_id: int) -> GateRun:
        run = get_object_or_404(GateRun.objects.select_related("gate", "job", "profile"), pk=run_id)
        if run.gate_id != _token(request).gate_id:
            raise PermissionDenied(f"This key belongs to gate {_token(request).gate.name}.")
        return run


class GateRunStartInput(serializers.Serializer[Any]):
    gate = serializers.CharField(max_length=100)
    checkpoint = serializers.CharField(max_length=300, required=False, allow_blank=True)
    # Field.label is the field's display name; this input is named label all the same.
    label = serializers.CharField(  # type: ignore[assignment]
        max_length=200, required=False, allow_blank=True
    )
    prompts = serializers.FileField(required=False)


class GateRunStartApi(_GateKeyApi):
    """Start a run of the key's gate on a candidate (``scopeweb-gate run``)."""

    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(request=GateRunStartInput, responses={201: dict})
    def post(self, request: Request) -> Response:
        data = GateRunStartInput(data=request.data)
        if not data.is_valid():
            field, problems = next(iter(data.errors.items()))
            return Response({"detail": f"{field}: {problems[0]}", "field": field}, status=400)
        token = _token(request)
        if data.validated_data["gate"] != token.gate.name:
            raise PermissionDenied(
                f"This key belongs to gate {token.gate.name}, not {data.validated_data['gate']}."
            )
        upload = data.validated_data.get("prompts")
        run = gate_run_start(
            gate=token.gate,
            actor=_actor(request),
            checkpoint=data.validated_data.get("checkpoint", ""),
            prompts=upload.read() if upload is not None else None,
            prompts_name=upload.name if upload is not None else "",
            label=data.validated_data.get("label", ""),
        )
        return Response(gate_run_status(run), status=201)


class GateRunStatusApi(_GateKeyApi):
    """A run's state, progress, sign-off and, once measured, its result."""

    @extend_schema(responses={200: dict})
    def get(self, request: Request, run_id: int) -> Response:
        return Response(gate_run_status(self.own_run(request, run_id)))


class GateRunAttestationApi(_GateKeyApi):
    """The run's signed attestation (a DSSE envelope), once its verdict is in."""

    @extend_schema(responses={200: dict})
    def get(self, request: Request, run_id: int) -> Response:
        run = self.own_run(request, run_id)
        if not run.attestation:
            why = run.attestation_error or "the run has no verdict yet"
            return Response({"detail": f"No attestation: {why}."}, status=404)
        return Response(run.attestation)


class CertificateApi(APIView):
    """The deployment's signing certificate (PEM), to verify attestations offline."""

    access_rule = PUBLIC
    authentication_classes: list[type[BaseAuthentication]] = []

    @extend_schema(responses={200: str})
    def get(self, request: Request) -> HttpResponse | Response:
        try:
            pem = deployment_certificate_pem()
        except SigningError as exc:
            return Response({"detail": f"No signing certificate: {exc}"}, status=503)
        return HttpResponse(pem, content_type="application/x-pem-file")
