"""The purge really removes artifacts from an S3-compatible bucket (moto's server), and the
storage page sums what is stored, projects it, and warns past the thresholds."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.urls import reverse

from governance.selectors.storage import GB, storage_report
from governance.services.purge import retention_purge
from governance.services.storage import storage_cost_check
from scopeweb.audit.models import AuditEvent
from tests.conftest import client_for
from tests.governance.conftest import days, s3_keys, stored_export, stored_prompt_set, stored_run

pytestmark = pytest.mark.django_db


def test_purge_deletes_run_files_upload_and_export_from_s3(
    s3_endpoint: str, s3_storage: str
) -> None:
    expired = stored_run(stored_prompt_set(days(-1)), days(-1))
    stored_export(expired, days(-1))
    kept = stored_run(stored_prompt_set(days(5)), days(5))
    before = s3_keys(s3_endpoint, s3_storage)
    assert f"{expired.artifact_prefix}/manifest.json" in before
    assert len(before) == 3 + 1 + 1 + 3 + 1  # two runs' bundles, two uploads, one export

    record = retention_purge()

    assert (record.counts["runs"], record.counts["exports"]) == (1, 1)
    after = s3_keys(s3_endpoint, s3_storage)
    assert not [key for key in after if key.startswith(f"{expired.artifact_prefix}/")]
    assert not [key for key in after if key.startswith("exports/")]
    assert sorted(key for key in after if key.startswith("runs/")) == sorted(
        f"{kept.artifact_prefix}/{name}"
        for name in ("chunk-00000.features.parquet", "chunk-00000.tokens.parquet", "manifest.json")
    )
    assert len(after) == 4  # the kept run's bundle and its upload


def test_storage_report_sums_bytes_and_projects_by_rate_and_retention() -> None:
    run = stored_run(stored_prompt_set(days(30)), days(30))
    run.summary = {"bytes_stored": 200}  # the manifest's chunk sizes; the manifest adds 100
    run.save(update_fields=["summary"])
    us = next(p for p in storage_report().profiles if p.code == "US")
    assert us.run_bytes == 300 and us.upload_bytes == 120 and us.traces == 2
    assert us.bytes_per_trace == 150
    assert us.projected_bytes == int(2 / 30 * 150 * 30)


def test_cost_past_a_threshold_is_shown_logged_and_audited_once_a_day(
    admin: Any, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    stored_run(stored_prompt_set(days(30)), days(30))
    settings.STORAGE_PRICE_GB_MONTH = 1.0
    settings.STORAGE_COST_WARN_MONTHLY = 0.5 * 420 / GB
    settings.STORAGE_COST_ALERT_MONTHLY = 1000.0
    with caplog.at_level(logging.WARNING, logger="governance.services.storage"):
        page = client_for(admin).get(reverse("storage_cost"))
    assert page.status_code == 200
    assert 'id="cost-warning"' in page.content.decode()
    assert "storage cost warn" in caplog.text
    storage_cost_check()
    (event,) = AuditEvent.objects.filter(action="storage.cost_alert")
    assert event.detail["level"] == "warn" and event.detail["stored_bytes"] == 420
    settings.STORAGE_COST_WARN_MONTHLY = 500.0
    assert "cost-warning" not in client_for(admin).get(reverse("storage_cost")).content.decode()
