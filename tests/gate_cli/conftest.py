"""A fake Scope Web gate API (/tmp/gate/CONTRACT.md's routes) in a thread, for the CLI's
tests: it answers from scripted replies and records every request it gets."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from scopeweb_gate import client
from scopeweb_gate.outputs import GateResult, MetricResult, result_dict

TOKEN = "swg_test_key"
API = "/api/gates/v1"
RUN_ID = 7
STARTED = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
FINISHED = {"passed", "failed", "rejected", "error"}


def result(verdict: str = "pass", signoff: str = "not required", error: str = "") -> dict[str, Any]:
    """A run's ``result`` as the server sends it (``scopeweb_gate.outputs.result_dict``)."""
    passed = verdict == "pass"
    metric = MetricResult(
        name="anomaly rate",
        value=0.02 if passed else 0.09,
        threshold=0.05,
        baseline=0.01,
        passed=passed,
        comparison="<=",
        unit="share",
        links=("http://scope.test/traces/1/",),
    )
    return result_dict(
        GateResult(
            gate="smoke",
            gate_version=2,
            run_url=f"http://scope.test/gates/runs/{RUN_ID}/",
            verdict=verdict,
            metrics=(metric,) if verdict != "error" else (),
            signoff=signoff,
            started_at=STARTED,
            finished_at=STARTED + timedelta(minutes=3),
            candidate="checkpoints/candidate",
            baseline="google/gemma-3-270m",
            error=error,
        )
    )


def status(
    state: str,
    verdict: str | None = None,
    *,
    note: str = "",
    done: int = 0,
    total: int = 0,
    signoff: str = "not required",
    error: str = "",
) -> dict[str, Any]:
    """A status object of the contract; ``result`` is set once ``verdict`` is."""
    return {
        "id": RUN_ID,
        "gate": "smoke",
        "gate_version": 2,
        "url": f"http://scope.test/gates/runs/{RUN_ID}/",
        "state": state,
        "finished": state in FINISHED,
        "verdict": verdict,
        "progress": {"done": done, "total": total, "note": note},
        "signoff": {"required": 1, "approvals": 0, "state": "pending", "text": signoff},
        "error": error,
        "result": None if verdict is None else result(verdict, signoff, error),
        "attestation_url": None,
    }


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeGate:
    """Replies: ``created`` to POST runs, ``statuses`` in turn to GET runs/7 (the last one
    repeats), ``certificate`` to GET certificate. A request without the key gets 401."""

    url: str = ""
    created: tuple[int, dict[str, Any]] = (201, {})
    statuses: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    certificate: bytes = b""
    seen: list[Seen] = field(default_factory=list)

    def then(self, *replies: dict[str, Any] | tuple[int, dict[str, Any]]) -> None:
        self.statuses += [r if isinstance(r, tuple) else (200, r) for r in replies]

    def reply(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes, str]:
        if method == "GET" and path == f"{API}/certificate":
            return 200, self.certificate, "application/x-pem-file"
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            return _json(401, {"detail": "Invalid token."})
        if method == "POST" and path == f"{API}/runs":
            return _json(*self.created)
        if method == "GET" and path == f"{API}/runs/{RUN_ID}" and self.statuses:
            code, body = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            return _json(code, body)
        return _json(404, {"detail": "Not found."})

    def requests(self, method: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method]


def _json(code: int, body: dict[str, Any]) -> tuple[int, bytes, str]:
    return code, json.dumps(body).encode(), "application/json"


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGate]:
    """The fake server, running; the key in SCOPEWEB_GATE_TOKEN and no retry delays."""
    fake = FakeGate(created=(201, status("queued")))

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers = dict(self.headers.items())
            fake.seen.append(Seen(self.command, self.path, headers, body))
            code, data, kind = fake.reply(self.command, self.path, headers)
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("SCOPEWEB_GATE_TOKEN", TOKEN)
    monkeypatch.delenv("SCOPEWEB_URL", raising=False)
    monkeypatch.setattr(client, "RETRY_DELAYS_S", (0.0, 0.0, 0.0))
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
