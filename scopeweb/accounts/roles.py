"""The roles of the design and what each may do.

Roles are Django groups (made by a data migration). ``CAPABILITIES`` is the one place that says
which role may do what: the migration gives each group the matching permissions, and every route
declares the capability it needs (see ``scopeweb.accounts.access``).
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    REVIEWER = "reviewer"
    AUDITOR = "auditor"
    ADMIN = "admin"


R, A, AD = Role.REVIEWER, Role.AUDITOR, Role.ADMIN

# capability codename -> (description, roles that hold it)
CAPABILITIES: dict[str, tuple[str, frozenset[Role]]] = {
    "upload_prompt_set": ("Upload prompt sets", frozenset({R, AD})),
    "view_prompt_set": ("See prompt sets and their prompts", frozenset({R, AD})),
    "start_analysis": ("Start analyses", frozenset({R, AD})),
    "browse_traces": ("Browse runs, traces, tokens and features", frozenset({R, AD})),
    "annotate_feature": ("Annotate features", frozenset({R, AD})),
    "read_annotations": ("Read feature annotations and their history", frozenset({R, A, AD})),
    "work_case": ("Open and work audit cases", frozenset({R, AD})),
    "sign_off_case": ("Sign audit cases off", frozenset({R, AD})),
    "view_jobs": ("See background jobs", frozenset({R, AD})),
    "read_signed_case": ("Read signed-off cases and their reports", frozenset({R, A, AD})),
    "verify_report": ("Verify report signatures", frozenset({R, A, AD})),
    "read_audit_log": ("Read the audit log", frozenset({A, AD})),
    "manage_users": ("Manage users and roles", frozenset({AD})),
    "manage_retention": ("Edit retention profiles", frozenset({AD})),
    "manage_holds": ("Place and lift legal holds", frozenset({AD})),
    "manage_registry": ("Manage the model and SAE registry", frozenset({AD})),
    "purge": ("Purge expired data", frozenset({AD})),
    "export_data": ("Request exports of runs and cases", frozenset({R, AD})),
    "approve_export": ("Approve or refuse exports (GDPR review)", frozenset({AD})),
    "use_export_link": ("Download an export through its single-use link", frozenset({R, A, AD})),
    "manage_manifests": (
        "Edit instrumentation manifests, their ingest keys and forensic windows",
        frozenset({AD}),
    ),
    "view_operations": ("See ingestion's operations page", frozenset({R, A, AD})),
    "manage_gates": ("Edit CI gates and their keys", frozenset({AD})),
    "view_gates": ("See CI gates, their runs and attestations", frozenset({R, A, AD})),
    "run_gate": ("Start gate runs from Scope Web", frozenset({R, AD})),
    "sign_off_gate": ("Approve or reject passing gate runs", frozenset({R, AD})),
}


def roles_with(capability: str) -> frozenset[Role]:
    return CAPABILITIES[capability][1]
