"""The append-only audit log.

Each event stores the sha256 of the event before it (``prev_hash``) and its own (``hash``), taken
over a canonical JSON of its fields (``scopeweb.audit.chain``). Editing or deleting any row breaks
the chain at that row, which ``manage.py verify_audit_log`` finds; on PostgreSQL a trigger also
refuses UPDATE and DELETE on the table. No model method, view or admin edits an event.
"""

from __future__ import annotations

from django.db import models


class AuditEvent(models.Model):
    at = models.DateTimeField(db_index=True)
    # Plain columns, not foreign keys: deleting a user must not rewrite (or cascade into) the log.
    actor_id = models.BigIntegerField(null=True, blank=True)
    actor = models.CharField(
        max_length=150, blank=True, help_text="Username, or blank for the system."
    )
    via = models.CharField(max_length=40, help_text="web, api, api-token:<id>, worker, command")
    action = models.CharField(max_length=60, db_index=True)
    object_type = models.CharField(max_length=60, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=300, blank=True)
    source = models.CharField(max_length=100, blank=True, help_text="Client address, if any.")
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["object_type", "object_id", "id"], name="audit_object"),
            models.Index(fields=["actor", "id"], name="audit_actor"),
        ]
        # One chain, never a fork: no two events may follow the same event.
        constraints = [models.UniqueConstraint(fields=["prev_hash"], name="audit_one_successor")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor or 'system'} {self.action}"
