from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from scopeweb.retention.models import RetentionProfile, RetentionProfileChange
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def _form(profile: RetentionProfile, **changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": profile.name,
        "retention_days": profile.retention_days,
        "audit_extension_days": profile.audit_extension_days,
        "redaction": profile.redaction,
        "export_policy": profile.export_policy,
        "signoffs_required": profile.signoffs_required,
        "sampling_baseline": profile.sampling_baseline,
        "sampling_targeted": profile.sampling_targeted,
        "sampling_forensic": profile.sampling_forensic,
        "capture_limit": profile.capture_limit,
    }
    if profile.four_eyes:
        data["four_eyes"] = "on"
    data.update(changes)
    return data


def test_seeded_profiles_follow_the_design_table() -> None:
    profiles = {p.code: p for p in RetentionProfile.objects.all()}
    assert set(profiles) == {"US", "UK", "FR"}
    assert all(p.retention_days == 30 and p.audit_extension_days == 90 for p in profiles.values())
    assert profiles["US"].redaction == "best_effort" and profiles["US"].export_policy == "allowed"
    assert profiles["UK"].redaction == "required" and profiles["UK"].export_policy == "gdpr_review"
    assert profiles["FR"].redaction == "strong"
    assert profiles["FR"].export_policy == "cnil_documented"
    assert all(p.capture_limit == 1000 for p in profiles.values())
    assert all(
        (p.sampling_baseline, p.sampling_targeted) == (0.01, 0.05) for p in profiles.values()
    )


def test_admin_edit_is_recorded_with_before_and_after(admin: User) -> None:
    uk = RetentionProfile.objects.get(code="UK")
    url = reverse("retention_profile_edit", kwargs={"code": "UK"})
    response = client_for(admin).post(url, _form(uk, retention_days=90, sampling_baseline=0.02))
    assert response.status_code == 302
    uk.refresh_from_db()
    assert (uk.retention_days, uk.sampling_baseline) == (90, 0.02)
    change = RetentionProfileChange.objects.get(profile=uk)
    assert change.changed_by == admin
    assert change.before == {"retention_days": 30, "sampling_baseline": 0.01}
    assert change.after == {"retention_days": 90, "sampling_baseline": 0.02}
    history = client_for(admin).get(url).content.decode()
    assert "ada" in history and "retention_days" in history


def test_saving_without_changes_records_nothing(admin: User) -> None:
    us = RetentionProfile.objects.get(code="US")
    url = reverse("retention_profile_edit", kwargs={"code": "US"})
    assert client_for(admin).post(url, _form(us)).status_code == 302
    assert not RetentionProfileChange.objects.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("retention_days", 45, "Select a valid choice"),
        ("audit_extension_days", 400, "Select a valid choice"),
        ("sampling_baseline", 1.5, "less than or equal to 1.0"),
        ("sampling_targeted", -0.1, "greater than or equal to 0.0"),
        ("signoffs_required", 0, "greater than or equal to 1"),
    ],
)
def test_out_of_range_values_are_refused_with_a_reason(
    admin: User, field: str, value: object, message: str
) -> None:
    fr = RetentionProfile.objects.get(code="FR")
    url = reverse("retention_profile_edit", kwargs={"code": "FR"})
    response = client_for(admin).post(url, _form(fr, **{field: value}))
    assert response.status_code == 200
    assert message in response.content.decode()
    fresh = RetentionProfile.objects.get(code="FR")
    assert getattr(fresh, field) == getattr(fr, field)
    assert not RetentionProfileChange.objects.exists()


def test_api_patch_by_admin_is_recorded(admin: User) -> None:
    url = reverse("api_retention_profile", kwargs={"code": "US"})
    response = client_for(admin).patch(
        url, {"capture_limit": 2048}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["capture_limit"] == 2048
    assert response.json()["changes"][0]["after"] == {"capture_limit": 2048}


def test_api_patch_refuses_rates_outside_zero_to_one(admin: User) -> None:
    url = reverse("api_retention_profile", kwargs={"code": "US"})
    response = client_for(admin).patch(
        url, {"sampling_forensic": 2}, content_type="application/json"
    )
    assert response.status_code == 400
    assert "sampling_forensic" in response.json()
    assert RetentionProfile.objects.get(code="US").sampling_forensic == 1.0


@pytest.mark.parametrize("who", ["reviewer", "auditor", "outsider"])
def test_nobody_but_an_admin_may_edit_profiles(request: pytest.FixtureRequest, who: str) -> None:
    user = request.getfixturevalue(who)
    uk = RetentionProfile.objects.get(code="UK")
    page = client_for(user).post(
        reverse("retention_profile_edit", kwargs={"code": "UK"}), _form(uk, retention_days=365)
    )
    api = client_for(user).patch(
        reverse("api_retention_profile", kwargs={"code": "UK"}),
        {"retention_days": 365},
        content_type="application/json",
    )
    assert (page.status_code, api.status_code) == (403, 403)
    assert RetentionProfile.objects.get(code="UK").retention_days == 30
    assert not RetentionProfileChange.objects.exists()
