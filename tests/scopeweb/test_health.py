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
def test_health_answers_503_naming_the_failing_part_but_not_its_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise ConnectionRefusedError("redis://:s3cret@broker.internal:6379 refused")

    monkeypatch.setitem(health.CHECKS, "broker", broken)
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == {
        "ok": False,
        "error": "unavailable (see the server log)",
        "ms": response.json()["checks"]["broker"]["ms"],
    }
    assert "s3cret" not in response.content.decode()  # public: no exception text
    assert "s3cret" in caplog.text  # the operator's log has it
