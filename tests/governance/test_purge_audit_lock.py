"""The purge never deletes stored files while it holds the audit log's lock: every audit event
of the deployment waits on that lock, and a delete on an object store can be slow. Each item's
files go first, its audit event (which takes the lock until the commit) last."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.storage import FileSystemStorage
from django.db import connection

from governance.services.purge import retention_purge
from scopeweb.audit.models import AuditEvent
from tests.governance.conftest import days, stored_export, stored_prompt_set, stored_run

# Real transactions: inside a test's own transaction the audit lock (PostgreSQL's
# pg_advisory_xact_lock) would be held from the first item's event to the end of the test.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def _audit_lock_held() -> bool:
    """Whether this connection holds an advisory lock (PostgreSQL; SQLite has none)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND pid = pg_backend_pid()"
        )
        row = cursor.fetchone()
    return bool(row and row[0])


class WatchedStorage(FileSystemStorage):
    """Local storage that notes, at each delete, whether the audit lock is held and which
    purge events are written (in this transaction too: the purge's own connection)."""

    deletes: list[tuple[str, bool, set[tuple[str, str]]]] = []

    def delete(self, name: str) -> None:
        events = AuditEvent.objects.filter(action__startswith="retention.purge")
        written = set(events.values_list("object_type", "object_id"))
        WatchedStorage.deletes.append((name, _audit_lock_held(), written))
        super().delete(name)


def test_storage_deletes_run_before_the_item_is_audited_never_under_the_audit_lock(
    settings: Any, tmp_path: Any
) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": f"{__name__}.WatchedStorage",
            "OPTIONS": {"location": tmp_path / "watched"},
        },
    }
    WatchedStorage.deletes = []
    prompt_set = stored_prompt_set(days(-1))
    run = stored_run(prompt_set, days(-1))
    export = stored_export(run, days(-1))
    original = stored_prompt_set(days(30), code="UK")  # its original upload expires first
    owner = {
        f"{run.artifact_prefix}/": ("analysisrun", str(run.pk)),
        export.artifact: ("export", str(export.pk)),
        str(prompt_set.import_job.params["upload_path"]): ("promptset", str(prompt_set.pk)),  # type: ignore[union-attr]
        str(original.import_job.params["upload_path"]): ("promptset", str(original.pk)),  # type: ignore[union-attr]
    }

    record = retention_purge(as_of=days(2))

    assert record.counts["runs"] == 1 and record.counts["exports"] == 1
    assert record.counts["prompt_sets"] == 1 and record.counts["originals"] == 1
    assert len(WatchedStorage.deletes) == 3 + 1 + 1 + 1  # a bundle, an export, two uploads
    for name, lock_held, written in WatchedStorage.deletes:
        assert not lock_held, f"{name} was deleted under the audit log's lock"
        item = next(key for prefix, key in owner.items() if name.startswith(prefix))
        assert item not in written, f"{name} was deleted after its item's audit event"
    audited = AuditEvent.objects.filter(action__startswith="retention.purge")
    assert set(audited.values_list("object_type", "object_id")) == set(owner.values())
