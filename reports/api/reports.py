"""Reports over the API: a case's signed report (metadata and the PDF), and verification."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from reports.forms.reports import read_pdf_upload
from reports.models import CaseReport
from reports.selectors.cases import case_get
from reports.serializers.reports import CaseReportSerializer, VerifyUploadSerializer, verify_payload
from reports.services.reports import (
    ReportError,
    report_download,
    report_job,
    report_verify_recorded,
)
from reports.views.reports import pdf_response
from scopeweb.accounts.actor import Actor
from scopeweb.api_bodies import FormParser, MultiPartParser


class CaseReportApi(APIView):
    """The signed report of a case: its metadata, or (404) the state of the job making it."""

    access_rule = "read_signed_case"

    @extend_schema(responses={200: CaseReportSerializer, 404: OpenApiResponse()})
    def get(self, request: Request, pk: int) -> Response:
        case = case_get(Actor.of(request).person, pk)
        report = CaseReport.objects.filter(case=case).first()
        if report is None:
            job = report_job(case)
            return Response(
                {
                    "detail": f"Case {case.pk} has no signed report yet.",
                    "job": str(job.pk) if job else None,
                    "job_state": job.state if job else None,
                    "job_error": job.error if job else "",
                },
                status=status.HTTP_404_NOT_FOUND,
            )
        data = CaseReportSerializer(report).data
        data["download"] = request.build_absolute_uri(f"/api/cases/{case.pk}/report.pdf")
        return Response(data)


class CaseReportPdfApi(APIView):
    """The case's signed PDF (``application/pdf``)."""

    access_rule = "read_signed_case"

    @extend_schema(responses={(200, "application/pdf"): OpenApiResponse(description="The PDF")})
    def get(self, request: Request, pk: int) -> FileResponse:
        actor = Actor.of(request)
        case = case_get(actor.person, pk)
        try:
            found = report_download(case=case, actor=actor)
        except ReportError as exc:
            raise Http404(str(exc)) from exc
        if found is None:
            raise Http404(f"Case {case.pk} has no signed report yet.")
        return pdf_response(found[1], f"case-{case.pk}-report.pdf")


class ReportVerifyApi(APIView):
    """Verify a PDF (multipart field ``file``): whether its signature holds, who signed it and
    when, and whether it is a report this deployment issued. A file that is not a signed PDF
    gets 200 with ``problem`` saying why; a missing, empty or too large upload gets 400."""

    access_rule = "verify_report"
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": VerifyUploadSerializer},
        responses={200: OpenApiTypes.OBJECT},
    )
    def post(self, request: Request) -> Response:
        upload = request.FILES.get("file")
        try:
            data = read_pdf_upload(upload)
        except DjangoValidationError as exc:
            return Response({"file": exc.messages}, status=status.HTTP_400_BAD_REQUEST)
        assert upload is not None
        result = report_verify_recorded(data, filename=upload.name or "", actor=Actor.of(request))
        return Response(verify_payload(result))
