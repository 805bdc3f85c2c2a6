"""The tracer's shipper against a real local HTTP server whose answers each test scripts."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from scopeweb_tracer.shipper import COUNTERS, Shipper

TOKEN = "s3cret-token"
SETTLED = 10.0  # seconds a test waits for the shipper to settle before it fails


@dataclass
class Answer:
    """What the ingest server answers to one request."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"accepted": true}'
    delay: float = 0.0  # seconds to wait before answering
    hold: threading.Event | None = None  # answer only once set


@dataclass(frozen=True)
class Seen:
    """One request the server received, and the status it answered."""

    headers: dict[str, str]
    body: dict[str, Any]
    status: int


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out has gone; that is what the test wanted."""


class Ingest:
    """A local stand-in for Scope Web's ingest API: answers from `script`, then `default`."""

    def __init__(self) -> None:
        self.script: list[Answer] = []
        self.default = Answer()
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                ingest.handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/traces/ingest"
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        with self._lock:
            answer = self.script.pop(0) if self.script else self.default
            self.requests.append(Seen(dict(handler.headers), body, answer.status))
        if answer.hold is not None:
            answer.hold.wait(SETTLED)
        time.sleep(answer.delay)
        handler.send_response(answer.status)
        for name, value in answer.headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(answer.body)))
        handler.end_headers()
        handler.wfile.write(answer.body)

    def accepted(self) -> list[dict[str, Any]]:
        """Every trace the server accepted, in arrival order."""
        with self._lock:
            return [
                trace
                for seen in self.requests
                if 200 <= seen.status < 300
                for trace in seen.body["traces"]
            ]

    def stop(self) -> None:
        """Close the port: from now on, connections are refused."""
        self.server.shutdown()
        self.server.server_close()


MakeShipper = Callable[..., Shipper]


@pytest.fixture
def ingest() -> Iterator[Ingest]:
    server = Ingest()
    yield server
    server.stop()


@pytest.fixture
def down() -> str:
    """The URL of an ingest server that has stopped."""
    server = Ingest()
    server.stop()
    return server.url


@pytest.fixture
def make_shipper() -> Iterator[MakeShipper]:
    """Shippers with test-sized delays, closed at the end of the test."""
    shippers: list[Shipper] = []

    def make(endpoint: str, **settings: Any) -> Shipper:
        # A long flush interval: a batch is full or cut short by flush() or close(), so the
        # tests count requests exactly however slowly the machine runs them.
        quick = {"flush_interval": SETTLED, "backoff": 0.01, "max_backoff": 0.05, "timeout": 2.0}
        shipper = Shipper(endpoint, TOKEN, **(quick | settings))
        shippers.append(shipper)
        return shipper

    yield make
    for shipper in shippers:
        shipper.close(timeout=1.0)


def items(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"trace_id": f"{i:032x}", "tokens": [i, i + 1]} for i in range(start, start + count)]


def by_id(trace: dict[str, Any]) -> str:
    return str(trace["trace_id"])


def submit_all(shipper: Shipper, payloads: list[dict[str, Any]]) -> None:
    assert all(shipper.submit(item) for item in payloads)


def eventually(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + SETTLED
    while not check():
        assert time.monotonic() < deadline, "the shipper did not settle in time"
        time.sleep(0.01)


def spill_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines() if path.exists() else []


# Delivery


def test_batches_arrive_once_each_with_the_token(ingest: Ingest, make_shipper: MakeShipper) -> None:
    shipper = make_shipper(ingest.url, batch_size=32)
    submit_all(shipper, items(100))

    assert shipper.flush(SETTLED)
    assert ingest.accepted() == items(100)
    assert all(len(seen.body["traces"]) <= 32 for seen in ingest.requests)
    assert {seen.headers["Authorization"] for seen in ingest.requests} == {f"Token {TOKEN}"}
    assert {seen.headers["Content-Type"] for seen in ingest.requests} == {"application/json"}
    assert shipper.stats() == dict.fromkeys(COUNTERS, 0) | {"queued": 0, "sent": 100}


def test_partial_batch_leaves_after_the_flush_interval(
    ingest: Ingest, make_shipper: MakeShipper
) -> None:
    shipper = make_shipper(ingest.url, batch_size=32, flush_interval=0.05)
    submit_all(shipper, items(3))

    eventually(lambda: ingest.accepted() == items(3))


def test_stats_list_the_queue_and_every_counter(ingest: Ingest, make_shipper: MakeShipper) -> None:
    shipper = make_shipper(ingest.url)
    assert set(shipper.stats()) == {"queued", *COUNTERS}


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_then_success_sends_once(
    status: int, ingest: Ingest, make_shipper: MakeShipper
) -> None:
    ingest.script = [Answer(status, headers={"Retry-After": "0"})]
    shipper = make_shipper(ingest.url, backoff=30.0, max_backoff=30.0)  # only Retry-After is short
    submit_all(shipper, items(5))

    assert shipper.flush(SETTLED)
    assert ingest.accepted() == items(5)
    assert len(ingest.requests) == 2
    assert shipper.stats()["sent"] == 5
    assert shipper.stats()["retries"] == 1


def test_server_error_is_retried_then_sent(ingest: Ingest, make_shipper: MakeShipper) -> None:
    ingest.script = [Answer(500), Answer(502)]
    shipper = make_shipper(ingest.url)
    submit_all(shipper, items(3))

    assert shipper.flush(SETTLED)
    assert ingest.accepted() == items(3)
    assert shipper.stats()["retries"] == 2


@pytest.mark.parametrize("status", [400, 401, 403, 413, 422])
def test_client_error_is_rejected_not_retried_nor_spilled(
    status: int,
    ingest: Ingest,
    make_shipper: MakeShipper,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ingest.default = Answer(status, body=b'{"detail": "trace 3 names no checkpoint"}')
    spill = tmp_path / "spill.jsonl"
    shipper = make_shipper(ingest.url, spill_path=spill)
    with caplog.at_level(logging.WARNING, logger="scopeweb_tracer"):
        submit_all(shipper, items(3))
        assert shipper.flush(SETTLED)

    assert len(ingest.requests) == 1
    assert shipper.stats() | {"queued": 0} == dict.fromkeys(COUNTERS, 0) | {
        "queued": 0,
        "rejected": 3,
    }
    assert spill_lines(spill) == []
    [record] = [r for r in caplog.records if r.name == "scopeweb_tracer"]
    assert record.levelno == logging.WARNING
    assert "trace 3 names no checkpoint" in record.getMessage()
    assert TOKEN not in record.getMessage()


def test_redirect_is_rejected_not_followed(ingest: Ingest, make_shipper: MakeShipper) -> None:
    ingest.default = Answer(302, headers={"Location": "/accounts/login/"})
    shipper = make_shipper(ingest.url)
    submit_all(shipper, items(2))

    assert shipper.flush(SETTLED)
    assert len(ingest.requests) == 1
    assert shipper.stats()["rejected"] == 2


def test_unserialisable_item_is_rejected_alone(ingest: Ingest, make_shipper: MakeShipper) -> None:
    shipper = make_shipper(ingest.url)
    assert shipper.submit({"bad": object()})
    assert shipper.submit({"nan": float("nan")})
    submit_all(shipper, items(2))

    assert shipper.flush(SETTLED)
    assert ingest.accepted() == items(2)
    assert shipper.stats()["rejected"] == 2


# Failing servers never reach the caller


@pytest.mark.parametrize("failure", ["down", "slow", "500", "429"])
def test_failing_server_never_raises_into_the_caller(
    failure: str, ingest: Ingest, down: str, make_shipper: MakeShipper
) -> None:
    answers = {
        "slow": Answer(delay=0.5),
        "500": Answer(500),
        "429": Answer(429, headers={"Retry-After": "0"}),
    }
    if failure in answers:
        ingest.default = answers[failure]
    endpoint = down if failure == "down" else ingest.url
    shipper = make_shipper(endpoint, max_retries=1, timeout=0.1, batch_size=50)

    submit_all(shipper, items(100))

    assert shipper.flush(SETTLED)
    stats = shipper.stats()
    assert stats["dropped_server_down"] == 100
    assert stats["sent"] == 0
    assert stats["retries"] == 2


def test_full_queue_drops_and_counts(ingest: Ingest, make_shipper: MakeShipper) -> None:
    release = threading.Event()
    ingest.script = [Answer(hold=release)]
    shipper = make_shipper(ingest.url, queue_size=5, batch_size=1)
    try:
        assert shipper.submit(items(1)[0])
        eventually(lambda: len(ingest.requests) == 1)  # the worker waits on the server now
        submit_all(shipper, items(5, start=1))
        assert [shipper.submit(item) for item in items(3, start=6)] == [False] * 3
        assert shipper.stats()["dropped_queue_full"] == 3
        assert shipper.stats()["queued"] == 5
    finally:
        release.set()

    assert shipper.flush(SETTLED)
    assert ingest.accepted() == items(6)


def test_submit_after_close_is_refused(ingest: Ingest, make_shipper: MakeShipper) -> None:
    shipper = make_shipper(ingest.url)
    shipper.close()
    assert not shipper.submit(items(1)[0])


# Spilling and replay


def test_spilled_traces_are_replayed_after_a_restart(
    down: str, make_shipper: MakeShipper, tmp_path: Path
) -> None:
    spill = tmp_path / "spill.jsonl"
    first = make_shipper(down, spill_path=spill, max_retries=1)
    submit_all(first, items(40))
    assert first.flush(SETTLED)
    first.close()
    assert first.stats()["spilled"] == 40
    assert spill_lines(spill)

    restarted = Ingest()
    try:
        second = make_shipper(restarted.url, spill_path=spill)
        assert second.flush(SETTLED)
        assert restarted.accepted() == items(40)
        assert second.stats()["replayed"] == 40
        assert spill.read_bytes() == b""
    finally:
        restarted.stop()


def test_spill_is_replayed_after_the_next_success(
    ingest: Ingest, make_shipper: MakeShipper, tmp_path: Path
) -> None:
    ingest.script = [Answer(500), Answer(500)]
    spill = tmp_path / "spill.jsonl"
    shipper = make_shipper(ingest.url, spill_path=spill, max_retries=1, batch_size=3)
    submit_all(shipper, items(3))
    assert shipper.flush(SETTLED)
    assert shipper.stats()["spilled"] == 3

    submit_all(shipper, items(2, start=3))
    assert shipper.flush(SETTLED)
    assert sorted(ingest.accepted(), key=by_id) == items(5)
    assert shipper.stats()["replayed"] == 3
    assert spill.read_bytes() == b""


def test_close_while_the_server_is_down_spills(
    down: str, make_shipper: MakeShipper, tmp_path: Path
) -> None:
    spill = tmp_path / "spill.jsonl"
    # Retries that would outlast the test: close must cut them short and spill.
    shipper = make_shipper(down, spill_path=spill, backoff=60.0, max_backoff=60.0)
    submit_all(shipper, items(10))
    shipper.close(timeout=SETTLED)

    assert shipper.stats()["spilled"] == 10
    batches = [json.loads(line)["traces"] for line in spill_lines(spill)]
    assert [trace for batch in batches for trace in batch] == items(10)


def test_close_abandons_a_hung_request_and_spills_it(
    ingest: Ingest, make_shipper: MakeShipper, tmp_path: Path
) -> None:
    release = threading.Event()
    ingest.default = Answer(500, hold=release)
    spill = tmp_path / "spill.jsonl"
    shipper = make_shipper(ingest.url, spill_path=spill, batch_size=2, timeout=SETTLED)
    try:
        submit_all(shipper, items(2))
        eventually(lambda: len(ingest.requests) == 1)
        submit_all(shipper, items(3, start=2))
        shipper.close(timeout=0.1)
    finally:
        release.set()

    assert shipper.stats()["spilled"] == 5
    batches = [json.loads(line)["traces"] for line in spill_lines(spill)]
    assert sorted((t for batch in batches for t in batch), key=by_id) == items(5)


def test_full_spill_file_drops_and_counts(
    down: str, make_shipper: MakeShipper, tmp_path: Path
) -> None:
    spill = tmp_path / "spill.jsonl"
    shipper = make_shipper(down, spill_path=spill, max_retries=0, spill_max_bytes=10)
    submit_all(shipper, items(4))

    assert shipper.flush(SETTLED)
    assert shipper.stats()["dropped_server_down"] == 4
    assert shipper.stats()["spilled"] == 0


def test_without_a_spill_file_a_failed_batch_is_dropped(
    down: str, make_shipper: MakeShipper
) -> None:
    shipper = make_shipper(down, max_retries=0)
    submit_all(shipper, items(4))

    assert shipper.flush(SETTLED)
    assert shipper.stats()["dropped_server_down"] == 4


def test_torn_last_line_is_skipped_and_counted(
    ingest: Ingest, make_shipper: MakeShipper, tmp_path: Path
) -> None:
    spill = tmp_path / "spill.jsonl"
    whole = json.dumps({"traces": items(2)}).encode()
    spill.write_bytes(whole + b"\n" + whole[: len(whole) // 2])

    shipper = make_shipper(ingest.url, spill_path=spill)
    assert shipper.flush(SETTLED)

    assert ingest.accepted() == items(2)
    assert shipper.stats()["replayed"] == 2
    assert shipper.stats()["torn_lines"] == 1
    assert spill.read_bytes() == b""


def test_spill_after_a_torn_line_starts_a_new_line(
    down: str, make_shipper: MakeShipper, tmp_path: Path
) -> None:
    spill = tmp_path / "spill.jsonl"
    # The server being down, the replay at start stops at the first line: the torn one stays.
    spill.write_bytes(json.dumps({"traces": items(2)}).encode() + b'\n{"traces":[{"torn')
    shipper = make_shipper(down, spill_path=spill, max_retries=0)
    submit_all(shipper, items(3, start=2))
    assert shipper.flush(SETTLED)
    shipper.close()
    assert shipper.stats()["torn_lines"] == 0

    restarted = Ingest()
    try:
        replayer = make_shipper(restarted.url, spill_path=spill)
        assert replayer.flush(SETTLED)
        assert restarted.accepted() == items(5)
        assert replayer.stats()["replayed"] == 5
        assert replayer.stats()["torn_lines"] == 1
    finally:
        restarted.stop()


# Settings


@pytest.mark.parametrize(
    ("endpoint", "token", "message"),
    [
        ("ftp://example.org/ingest", TOKEN, "http"),
        ("http://127.0.0.1/ingest", "a\r\nX-Evil: 1", "line breaks"),
    ],
)
def test_bad_settings_are_refused(endpoint: str, token: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Shipper(endpoint, token)
