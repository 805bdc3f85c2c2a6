"""The audit log over the API: events, filtered as on the page, newest first."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response

from scopeweb.audit.models import AuditEvent
from scopeweb.audit.selectors import audit_event_list
from scopeweb.audit.serializers import AuditEventSerializer, AuditQuerySerializer


class AuditEventListApi(generics.ListAPIView[AuditEvent]):
    """Audit events (auditors and admins), newest first, filtered by actor, action (or an action
    prefix), object type and id, and time. Each carries the hash of the event before it and its
    own; ``manage.py verify_audit_log`` checks the chain."""

    access_rule = "read_audit_log"
    serializer_class = AuditEventSerializer

    @extend_schema(parameters=[AuditQuerySerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[AuditEvent]:
        params = AuditQuerySerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        return audit_event_list(params.query())
