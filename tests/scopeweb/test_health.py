import pytest
from django.test import Client

from scopeweb import health


@pytest.mark.django_db
def test_health_reports_database_broker_and_storage() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker", "storage"}


@pytest.mark.django_db
def test_health_answers_503_naming_the_failing_part(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise ConnectionRefusedError("broker down")

    monkeypatch.setitem(health.CHECKS, "broker", broken)
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == {
        "ok": False,
        "error": "ConnectionRefusedError: broker down",
        "ms": response.json()["checks"]["broker"]["ms"],
    }
