"""Ship trace payloads to Scope Web's ingest API from a background thread.

The serving thread calls `Shipper.submit`, which only puts the payload on a bounded queue: it
never waits on the network and never raises. A daemon thread sends batches as
``{"traces": [...]}``, retries what may succeed later, and spills what still fails to a JSON
Lines file that the next start (or the next success) replays.

What happens to a batch (each outcome is counted in `Shipper.stats`, in items):

- 2xx: ``sent`` (``replayed`` when it came from the spill file).
- 429, 503 (after ``Retry-After`` seconds, at most ``max_backoff``), 408, other 5xx,
  connection errors and timeouts: retried with capped, fully jittered exponential backoff;
  each retry counts one in ``retries``.
- any other status (400, 401, 403, 413, 422, a redirect): ``rejected``, logged at WARNING
  with the server's reason, never retried or spilled. An item that is not JSON-serialisable
  is rejected the same way.
- retries exhausted, or the server failing while closing: appended to the spill file
  (``spilled``); without a spill file, or with one at ``spill_max_bytes``,
  ``dropped_server_down``.
- the queue full at submit: ``dropped_queue_full``.

Delivery is at least once: a crash during a replay, or a close that gives up on a request
still in flight, may send a batch twice. One spill file belongs to one process.

The HTTP exchange and the sorting of replies live in `scopeweb_tracer.ingest_client`, the
spill file and its line format in `scopeweb_tracer.spill`; this module owns the queue, the
batching, the retries and the counters.

Standard library only: this module runs inside the serving process.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scopeweb_tracer.ingest_client import IngestClient, Outcome, Reply
from scopeweb_tracer.spill import SpillFile, batch_body, spilled_batch

logger = logging.getLogger("scopeweb_tracer")

COUNTERS = (
    "sent",
    "rejected",
    "dropped_queue_full",
    "dropped_server_down",
    "spilled",
    "replayed",
    "retries",
    "torn_lines",
)
_POLL = 0.05  # how often an idle worker looks at the close and flush flags, in seconds
_COMMIT_EVERY = 1.0  # seconds between rewrites of the spill file during a replay


class Shipper:
    """Sends trace payloads in batches from a daemon thread; see the module docstring.

    Lifecycle: running from construction (the worker first replays the spill file), then
    closing once `close` is called (no waiting for full batches, one attempt per batch and a
    failure spills at once), then closed (the worker has stopped; `submit` returns False).
    `close` is registered with `atexit`, so an interpreter exit flushes and spills too.
    """

    def __init__(
        self,
        endpoint: str,
        token: str,
        *,
        queue_size: int = 1000,
        batch_size: int = 32,
        flush_interval: float = 1.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        timeout: float = 5.0,
        spill_path: Path | None = None,
        spill_max_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        self._client = IngestClient(endpoint, token, timeout)
        _check_sizes(queue_size, batch_size, max_retries)
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_retries = max_retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._spill = None if spill_path is None else SpillFile(Path(spill_path), spill_max_bytes)
        self._jitter = random.Random()  # noqa: S311  (backoff jitter, not a secret)

        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=queue_size)
        # _state guards the counters, _pending (items submitted and not yet settled),
        # _hurry (flush callers waiting), _replaying and _closed; flush waits on it.
        self._state = threading.Condition()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._pending = 0
        self._hurry = 0
        self._replaying = self._spill is not None
        self._closed = False
        self._closing = threading.Event()
        self._replay_due = self._spill is not None  # touched by the worker only
        # _claim guards the batch the worker is sending, which a timed-out close spills.
        self._claim = threading.Lock()
        self._in_flight: tuple[bytes, int] | None = None
        self._abandoned = False

        self._thread = threading.Thread(
            target=self._run, name="scopeweb-tracer-shipper", daemon=True
        )
        self._thread.start()
        atexit.register(self._close_at_exit)

    # The caller's side: none of these waits on the network or raises.

    def submit(self, item: dict[str, Any]) -> bool:
        """Queue ``item`` for sending; False (and counted) when the queue is full or closed.

        The shipper owns ``item`` from here: the worker serialises it later.
        """
        try:
            with self._state:
                if self._closed:
                    return False
                try:
                    self._queue.put_nowait(item)
                except queue.Full:
                    self._counts["dropped_queue_full"] += 1
                    return False
                self._pending += 1
                return True
        except Exception:  # a tracer must never break the request it traces
            logger.exception("scopeweb_tracer: submit failed; the trace is dropped")
            return False

    def stats(self) -> dict[str, int]:
        """The queue's depth (``queued``) and every counter in `COUNTERS`, in items."""
        with self._state:
            counts = dict(self._counts)
        return {"queued": self._queue.qsize(), **counts}

    def flush(self, timeout: float) -> bool:
        """Wait until every submitted item is settled and no replay runs; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._state:
            self._hurry += 1
            try:
                while self._pending or self._replaying:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._state.wait(remaining)
                return True
            finally:
                self._hurry -= 1

    def close(self, timeout: float = 5.0) -> None:
        """Send what can be sent within ``timeout``, spill the rest and stop the worker.

        Past the timeout the worker is abandoned: the batch it is sending and everything
        still queued go to the spill file (the request in flight may still succeed, which
        then delivers that batch twice).
        """
        atexit.unregister(self._close_at_exit)
        with self._state:
            if self._closed:
                return
            self._closed = True
        self._closing.set()
        self._thread.join(max(0.0, timeout))
        if self._thread.is_alive():
            self._abandon()

    def _close_at_exit(self) -> None:
        self.close()

    def _abandon(self) -> None:
        with self._claim:
            self._abandoned = True
            in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            self._spill_or_drop(*in_flight)
        while items := self._take_now():
            try:
                lines = self._encode(items)
                if lines:
                    self._spill_or_drop(batch_body(lines), len(lines))
            finally:
                self._settle(len(items))

    # The worker's side.

    def _run(self) -> None:
        self._guarded(self._replay)
        while True:
            items = self._take_batch()
            if not items:
                if self._closing.is_set():
                    return
                continue
            try:
                self._guarded(functools.partial(self._ship, items))
            finally:
                self._settle(len(items))

    def _take_batch(self) -> list[dict[str, Any]]:
        """Up to batch_size items: those queued within flush_interval of the first one."""
        try:
            items = [self._queue.get(timeout=_POLL)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self._flush_interval
        while len(items) < self._batch_size:
            try:
                items.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closing.is_set() or self._hurry:
                break
            with contextlib.suppress(queue.Empty):
                items.append(self._queue.get(timeout=min(remaining, _POLL)))
        return items

    def _take_now(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while len(items) < self._batch_size:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _ship(self, items: list[dict[str, Any]]) -> None:
        lines = self._encode(items)
        if not lines:
            return
        body, count = batch_body(lines), len(lines)
        with self._claim:
            if self._abandoned:
                self._spill_or_drop(body, count)
                return
            self._in_flight = (body, count)
        reply = self._deliver(body)
        with self._claim:
            mine, self._in_flight = self._in_flight is not None, None
        if reply.outcome is Outcome.SENT:
            self._count("sent", count)
            if self._replay_due and not self._closing.is_set():
                self._replay()
        elif reply.outcome is Outcome.REJECTED:
            self._reject(count, reply.detail)
        elif mine:
            self._spill_or_drop(body, count)

    def _deliver(self, body: bytes) -> Reply:
        """POST ``body``, retrying transient failures; the last reply."""
        attempt = 0
        while True:
            reply = self._client.post(body)
            if reply.outcome is not Outcome.TRANSIENT:
                return reply
            self._replay_due = True
            if attempt >= self._max_retries or self._closing.is_set():
                return reply
            if self._closing.wait(self._delay(attempt, reply.retry_after)):
                return reply
            attempt += 1
            self._count("retries", 1)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Retry-After where the server gave one, else full jitter; never over max_backoff."""
        if retry_after is not None:
            return min(retry_after, self._max_backoff)
        ceiling = min(self._max_backoff, self._backoff * 2 ** min(attempt, 60))
        return self._jitter.uniform(0.0, ceiling)

    def _replay(self) -> None:
        """Send the spill file's batches in order, dropping each sent prefix from the file.

        Stops at the first transient failure (the rest waits for the next success) or when
        closing. The file is rewritten at most once a second and at the end, so a crash in
        between sends up to a second's batches again.
        """
        spill = self._spill
        if spill is None:
            self._replay_due = False
            return
        with self._state:
            self._replaying = True
        position, finished = 0, False
        committed_at = time.monotonic()
        try:
            while not self._closing.is_set():
                entry = spill.read_line(position)
                if entry is None:
                    finished = True
                    break
                line, following = entry
                if not self._replay_line(line):
                    break
                position = following
                if time.monotonic() - committed_at >= _COMMIT_EVERY:
                    spill.drop_prefix(position)
                    position, committed_at = 0, time.monotonic()
        finally:
            spill.drop_prefix(position)
            self._replay_due = not finished
            with self._state:
                self._replaying = False
                self._state.notify_all()

    def _replay_line(self, line: bytes) -> bool:
        """Send one spilled line; False when the server failed and the replay should stop."""
        batch = spilled_batch(line)
        if batch is None:
            self._count("torn_lines", 1)
            return True
        body, count = batch
        reply = self._client.post(body)
        if reply.outcome is Outcome.TRANSIENT:
            return False
        if reply.outcome is Outcome.SENT:
            self._count("replayed", count)
        else:
            self._reject(count, reply.detail)
        return True

    # Bookkeeping.

    def _encode(self, items: list[dict[str, Any]]) -> list[bytes]:
        lines = []
        for item in items:
            try:
                lines.append(json.dumps(item, allow_nan=False, separators=(",", ":")).encode())
            except (TypeError, ValueError, RecursionError) as error:
                self._reject(1, f"not JSON-serialisable: {error}")
        return lines

    def _spill_or_drop(self, body: bytes, count: int) -> None:
        self._replay_due = True
        if self._spill is not None and self._spill.append(body + b"\n"):
            self._count("spilled", count)
        else:
            self._count("dropped_server_down", count)

    def _reject(self, count: int, reason: str) -> None:
        self._count("rejected", count)
        logger.warning("scopeweb_tracer: %d trace(s) rejected: %s", count, reason)

    def _count(self, name: str, amount: int) -> None:
        with self._state:
            self._counts[name] += amount

    def _settle(self, count: int) -> None:
        with self._state:
            self._pending -= count
            self._state.notify_all()

    def _guarded(self, work: Callable[[], None]) -> None:
        # A bug here must not kill the worker, or every later trace would pile up and drop.
        try:
            work()
        except Exception:
            logger.exception("scopeweb_tracer: shipper error")


def _check_sizes(queue_size: int, batch_size: int, max_retries: int) -> None:
    if queue_size < 1 or batch_size < 1 or max_retries < 0:
        raise ValueError(
            "queue_size and batch_size must be at least 1 and max_retries at least 0, got "
            f"{queue_size}, {batch_size} and {max_retries}"
        )
