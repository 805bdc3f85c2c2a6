"""Audit cases over the API. Reading needs ``read_signed_case`` (auditors see signed-off cases
only, 404 for the rest); writing needs ``work_case``; signing ``sign_off_case``. An edit the
case's state refuses (read-only after sign-off or close, an illegal transition, a refused
sign-off) raises ``CaseRefused``, which the API's exception handler answers with 409 and the
reason; bad input answers 400 naming the field."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from reports.models import AuditCase, CaseState, Severity
from reports.selectors.cases import case_evidence, case_get, case_list
from reports.serializers.cases import (
    CaseCreateSerializer,
    CaseDetailSerializer,
    CaseSerializer,
    CaseUpdateSerializer,
    CommentCreateSerializer,
    CommentSerializer,
    EvidenceCreateSerializer,
    EvidenceSerializer,
    SignOffCreateSerializer,
    SignOffSerializer,
    TransitionSerializer,
)
from reports.services.cases import (
    case_next_states,
    case_open,
    case_transition,
    case_update,
    case_viewed,
    comment_add,
)
from reports.services.evidence import evidence_add, evidence_remove
from reports.services.sign_off import case_sign_off
from scopeweb.accounts.access import describe
from scopeweb.accounts.actor import Actor

REFUSED = OpenApiResponse(description="Refused by the case's state or the sign-off rules.")


if TYPE_CHECKING:  # the mixin is only ever mixed into API views
    _ApiViewMixinBase = APIView
else:
    _ApiViewMixinBase = object


class WriteRuleMixin(_ApiViewMixinBase):
    """Reading needs ``access_rule``; any other method also needs ``write_rule``."""

    write_rule = "work_case"

    def check_permissions(self, request: Request) -> None:
        super().check_permissions(request)
        if request.method not in SAFE_METHODS and not Actor.of(request).may(self.write_rule):
            self.permission_denied(
                request, message=f"Your role may not change cases: {describe(self.write_rule)}"
            )


def _detail(request: Request, case: AuditCase) -> dict[str, Any]:
    case = AuditCase.objects.select_related("profile", "opened_by").get(pk=case.pk)
    can_work = Actor.of(request).may("work_case")
    evidence = case_evidence(case, redact=not can_work)
    context = {
        "request": request,
        "shown_text": {item.evidence.pk: item.text for item in evidence},
        "shown_note": {item.evidence.pk: item.evidence.note for item in evidence},
        "next_states": case_next_states(case) if can_work else [],
    }
    return CaseDetailSerializer(case, context=context).data


class CaseListApi(WriteRuleMixin, generics.ListAPIView[AuditCase]):
    """Cases you may read, newest first (auditors: signed-off cases only); POST opens one."""

    access_rule = "read_signed_case"
    serializer_class = CaseSerializer

    def get_queryset(self) -> QuerySet[AuditCase]:
        params = self.request.query_params
        return case_list(
            Actor.of(self.request).person,
            state=params.get("state", "") if params.get("state") in CaseState.values else "",
            severity=params.get("severity", "")
            if params.get("severity") in Severity.values
            else "",
            profile=params.get("profile", ""),
        ).prefetch_related("assignees")

    @extend_schema(
        parameters=[
            OpenApiParameter("state", str, enum=CaseState.values),
            OpenApiParameter("severity", str, enum=Severity.values),
            OpenApiParameter("profile", str, description="Retention profile code"),
        ]
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(request=CaseCreateSerializer, responses={201: CaseDetailSerializer})
    def post(self, request: Request) -> Response:
        body = CaseCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        case = case_open(
            actor=Actor.of(request),
            title=data["title"],
            description=data.get("description", ""),
            severity=data["severity"],
            profile=data["profile"],
            assignees=data.get("assignees", []),
            summary=data.get("summary", ""),
        )
        return Response(_detail(request, case), status=status.HTTP_201_CREATED)


class CaseDetailApi(WriteRuleMixin, APIView):
    """One case with its evidence (redacted for auditors), comments, sign-offs and the states
    it may move to; PATCH changes title, description, severity, summary or assignees."""

    access_rule = "read_signed_case"

    @extend_schema(responses=CaseDetailSerializer)
    def get(self, request: Request, pk: int) -> Response:
        actor = Actor.of(request)
        case = case_get(actor.person, pk)
        case_viewed(case=case, actor=actor)
        return Response(_detail(request, case))

    @extend_schema(
        request=CaseUpdateSerializer, responses={200: CaseDetailSerializer, 409: REFUSED}
    )
    def patch(self, request: Request, pk: int) -> Response:
        actor = Actor.of(request)
        case = case_get(actor.person, pk)
        body = CaseUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        fields = dict(body.validated_data)
        assignees = fields.pop("assignees", None)
        case = case_update(
            case=case,
            actor=actor,
            assignees=assignees,
            **fields,
        )
        return Response(_detail(request, case))


class CaseTransitionApi(APIView):
    """Move the case to another state: open → in_review → awaiting_sign_off (needs the
    summary) → back to in_review; any of those → closed (needs a reason). Signed off comes
    from sign-offs only. 409 names the states when the move is not allowed."""

    access_rule = "work_case"

    @extend_schema(
        request=TransitionSerializer, responses={200: CaseDetailSerializer, 409: REFUSED}
    )
    def post(self, request: Request, pk: int) -> Response:
        actor = Actor.of(request)
        case = case_get(actor.person, pk)
        body = TransitionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        case = case_transition(
            case=case,
            actor=actor,
            to=body.validated_data["to"],
            reason=body.validated_data.get("reason", ""),
        )
        return Response(_detail(request, case))


class CaseEvidenceApi(APIView):
    """Add evidence: tokens ``[token_start, token_end)`` of a trace (BOS is 0) and features
    of its SAE, with a note; the answer holds the pinned sha256 of the cited artifacts."""

    access_rule = "work_case"

    @extend_schema(
        request=EvidenceCreateSerializer, responses={201: EvidenceSerializer, 409: REFUSED}
    )
    def post(self, request: Request, pk: int) -> Response:
        actor = Actor.of(request)
        case = case_get(actor.person, pk)
        body = EvidenceCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        evidence = evidence_add(
            case=case,
            actor=actor,
            trace=data["trace"],
            token_start=data["token_start"],
            token_end=data["token_end"],
            features=data["features"],
            note=data.get("note", ""),
            added_from="api",
        )
        return Response(EvidenceSerializer(evidence).data, status=status.HTTP_201_CREATED)


class CaseEvidenceItemApi(APIView):
    """Remove a piece of evidence from a case that is not read-only."""

    access_rule = "work_case"

    @extend_schema(responses={204: None, 409: REFUSED})
    def delete(self, request: Request, pk: int, evidence_id: int) -> Response:
        actor = Actor.of(request)
        case = case_get(actor.person, pk)
        evidence = get_object_or_404(case.evidence, pk=evidence_id)
        evidence_remove(
            case=case,
            actor=actor,
            evidence=evidence,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class CaseCommentApi(WriteRuleMixin, APIView):
    """The case's comments; POST adds one while the case is not read-only."""

    access_rule = "read_signed_case"

    @extend_schema(responses=CommentSerializer(many=True))
    def get(self, request: Request, pk: int) -> Response:
        actor = Actor.of(request)
        case = case_get(actor.person, pk)
        return Response(CommentSerializer(case.comments.select_related("author"), many=True).data)

    @extend_schema(
        request=CommentCreateSerializer, responses={201: CommentSerializer, 409: REFUSED}
    )
    def post(self, request: Request, pk: int) -> Response:
        actor = Actor.of(request)
        case = case_get(actor.person, pk)
        body = CommentCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        comment = comment_add(
            case=case,
            actor=actor,
            body=body.validated_data["body"],
        )
        return Response(CommentSerializer(comment).data, status=status.HTTP_201_CREATED)


class CaseSignOffApi(APIView):
    """Sign the case off with a statement. The case must await sign-off; each signer signs
    once; under four-eyes the opener is refused (409). Enough distinct signers make the case
    signed off and queue its report."""

    access_rule = "sign_off_case"

    @extend_schema(
        request=SignOffCreateSerializer, responses={201: SignOffSerializer, 409: REFUSED}
    )
    def post(self, request: Request, pk: int) -> Response:
        actor = Actor.of(request)
        case = case_get(actor.person, pk)
        body = SignOffCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        sign_off = case_sign_off(
            case=case,
            actor=actor,
            statement=body.validated_data["statement"],
        )
        data = SignOffSerializer(sign_off).data | {"case_state": AuditCase.objects.get(pk=pk).state}
        return Response(data, status=status.HTTP_201_CREATED)
