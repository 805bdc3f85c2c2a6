"""The gate pages; ``gates.urls`` names these."""

from gates.views.definitions import (
    gate_detail,
    gate_edit,
    gate_key_create_view,
    gate_key_revoke_view,
    gate_list,
    gate_run_start_view,
    gate_schema_view,
)
from gates.views.runs import (
    attestation_verify_view,
    gate_run_attestation_view,
    gate_run_decide_view,
    gate_run_report_view,
    gate_run_result_view,
    gate_run_view,
    signoff_queue_view,
)

__all__ = [
    "attestation_verify_view",
    "gate_detail",
    "gate_edit",
    "gate_key_create_view",
    "gate_key_revoke_view",
    "gate_list",
    "gate_run_attestation_view",
    "gate_run_decide_view",
    "gate_run_report_view",
    "gate_run_result_view",
    "gate_run_start_view",
    "gate_run_view",
    "gate_schema_view",
    "signoff_queue_view",
]
