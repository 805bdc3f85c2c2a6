"""Signed reports over the API: their metadata, a verification upload, and its verdict."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from reports.models import CaseReport
from reports.pdf.verify import VerifyResult


class CaseReportSerializer(serializers.ModelSerializer[CaseReport]):
    class Meta:
        model = CaseReport
        fields = [
            "case",
            "sha256",
            "size_bytes",
            "pages",
            "signer_subject",
            "self_signed",
            "timestamped",
            "generated_at",
            "generation_seconds",
        ]


class VerifyUploadSerializer(serializers.Serializer[Any]):
    file = serializers.FileField(allow_empty_file=True)


def verify_payload(result: VerifyResult) -> dict[str, Any]:
    return {
        "verdict": result.verdict,
        "problem": result.problem,
        "sha256": result.sha256,
        "size_bytes": result.size_bytes,
        "signed": result.signed,
        "intact": result.intact,
        "valid": result.valid,
        "whole_file": result.whole_file,
        "trusted": result.trusted,
        "self_signed": result.self_signed,
        "deployment_key": result.deployment_key,
        "signer_subject": result.signer_subject,
        "signing_time": result.signing_time,
        "timestamp": result.timestamp,
        "timestamp_valid": result.timestamp_valid,
        "timestamp_authority": result.timestamp_authority,
        "issued_here": result.issued_here,
        "case": result.report.case_id if result.report is not None else None,
        "notes": result.notes,
    }
