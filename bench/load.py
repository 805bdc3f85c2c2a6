"""Load benchmark (not a test): 20 reviewers browsing as people do while production traces come in
at a steady rate, for 10 minutes, against the SYNTHETIC database that ``bench/seed_synthetic.py``
makes (this script refuses any other database).

It starts gunicorn as ``bench/pages.py`` does (its helpers, one sync worker per CPU), on the bench
database, with Redis db 13 as broker and cache (``--redis``). Each reviewer is a user of their own
(``bench-load-01`` …, made here with the reviewer role), signed in once, and walks in a loop:

    trace list → trace view → (half the time) a feature page → (one time in eight) the triage
    queue and a decision (reviewed, or skipped one time in three) → the trace list again

with a think time drawn uniformly from 1–3 s (``--think``) before each request: time to read a
page and decide where to click. People spend longer on a trace view; 1–3 s is on the short side,
so the offered load (about 20 / 2.1 s ≈ 9.5 pages a second) is heavier than 20 real reviewers
give. The URLs are ``bench/pages.py``'s mix (list filters and sorts, 1000-token trace views,
Zipf-ranked features).

Ingestion runs beside them, open loop (a slow answer does not slow the sender): every
``--ingest-batch / --ingest-rate`` seconds one ``POST /api/ingest/v1/traces`` with
``--ingest-batch`` requests in the plain format (what the tracer sends: a batch per flush),
with a real ingest key of a manifest at sample rate 1 (the shipped SAE). By default no ingest
worker runs: on this 2-core machine it would take a core from the web server, and in production
it runs on machines of its own; the accepted batches wait in the queue, and the endpoint's
answer (202: durably stored and queued) is what is measured. ``--ingest-worker`` starts one.

Rate limits: the server runs with the environment's settings (the product's defaults unless
``SCOPEWEB_*_RATE`` are set); 429 answers are counted apart from errors.

Server time per request is gunicorn's ``%(D)s`` for its ``X-Bench-Id``, as in ``pages.py``; the
page targets are ``pages.TARGETS_MS`` (p95). Run::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/scopeweb_bench_load \\
        SCOPEWEB_DATA_DIR=var/bench-load-data .venv/bin/python bench/load.py [--seconds 600]

Results go to stdout and to ``var/bench/load-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REDIS_DEFAULT = "redis://127.0.0.1:6379/13"


def _early_environment() -> str:
    """Before Django starts (``pages`` starts it on import): the data directory and Redis."""
    redis_url = REDIS_DEFAULT
    for i, arg in enumerate(sys.argv):
        if arg == "--redis" and i + 1 < len(sys.argv):
            redis_url = sys.argv[i + 1]
        elif arg.startswith("--redis="):
            redis_url = arg.split("=", 1)[1]
    os.environ.setdefault("SCOPEWEB_DATA_DIR", str(ROOT / "var" / "bench-load-data"))
    os.environ["CELERY_BROKER_URL"] = redis_url
    os.environ["SCOPEWEB_CACHE_URL"] = redis_url
    return redis_url


REDIS_URL = _early_environment()
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pages  # noqa: E402  (bench/pages.py: starts Django)
import redis  # noqa: E402
import requests  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from scopeweb.accounts.actor import Actor  # noqa: E402
from scopeweb.accounts.roles import Role  # noqa: E402
from scopeweb.accounts.services import user_create  # noqa: E402

PASSWORD = "bench-load-" + uuid.uuid4().hex  # a fresh one each run; users are remade
FORM_ACTION = re.compile(r'action="(/triage/\d+/)"')
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclass
class Recorder:
    """Every request the bench sent, by page, with a shared counter for X-Bench-Id."""

    samples: list[pages.Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    counter: int = 0
    measure_from: float = 0.0  # monotonic time: requests sent before are the warm-up's

    def measured(self) -> list[pages.Sample]:
        return [s for s in self.samples if not s.request_id.startswith("warm-")]

    def next_id(self, page: str) -> str:
        warm = "warm-" if time.monotonic() < self.measure_from else ""
        with self.lock:
            self.counter += 1
            return f"{warm}load-{page}-{self.counter}"

    def send(
        self,
        session: requests.Session,
        page: str,
        variant: str,
        method: str,
        url: str,
        **kwargs: Any,
    ) -> requests.Response | None:
        request_id = self.next_id(page)
        measured = not request_id.startswith("warm-")
        headers = {"X-Bench-Id": request_id, **kwargs.pop("headers", {})}
        started = time.perf_counter()
        try:
            answer = session.request(
                method, url, headers=headers, timeout=120, allow_redirects=False, **kwargs
            )
            _ = answer.content
            status = answer.status_code
        except requests.RequestException as exc:
            answer, status = None, 0
            with self.lock:
                if measured:
                    self.failures.append(f"{page} {url}: {type(exc).__name__}: {exc}"[:300])
        sample = pages.Sample(
            page,
            variant,
            url.split("://", 1)[-1].split("/", 1)[-1],
            status,
            (time.perf_counter() - started) * 1000,
            request_id=request_id,
        )
        with self.lock:
            self.samples.append(sample)
        return answer


def make_reviewers(count: int) -> list[str]:
    """``count`` reviewers of their own (the synthetic database's reviewer is one person)."""
    from django.contrib.auth.models import User

    names = [f"bench-load-{i:02d}" for i in range(1, count + 1)]
    User.objects.filter(username__in=names).delete()
    for name in names:
        user_create(username=name, role=Role.REVIEWER, password=PASSWORD, actor=Actor.command())
    return names


def ingest_key() -> tuple[str, str]:
    """An ingest key of a manifest that samples every request (the shipped SAE)."""
    from traces.services.manifests import (
        ingest_token_create,
        manifest_save,
        parse_manifest_yaml,
    )
    from traces.services.saes import sae_register_shipped

    sae = sae_register_shipped()[0]
    document = parse_manifest_yaml(
        "service: bench-load\ncheckpoint: google/gemma-3-270m\n"
        f"saes: [{sae.name}]\nsample_rate: 1.0\nprofile: US\nmax_tokens_capture: 256\n"
        "top_k: 32\n"
    )
    with transaction.atomic():
        manifest = manifest_save(document=document, actor=Actor.command())
        _, key = ingest_token_create(manifest=manifest, name="bench-load", actor=Actor.command())
    return key, sae.name


def ingest_texts() -> list[tuple[str, str]]:
    """(prompt, completion) pairs cut from bench/prompts.jsonl."""
    pairs = []
    for line in (ROOT / "bench" / "prompts.jsonl").read_text(encoding="utf-8").splitlines():
        text = json.loads(line)["prompt"]
        pairs.append((text[:400], text[400:600]))
    return pairs


def ingest_body(rng: random.Random, texts: list[tuple[str, str]], count: int) -> bytes:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    traces = []
    for _ in range(count):
        prompt, completion = rng.choice(texts)
        traces.append(
            {
                "trace_id": uuid.uuid4().hex,
                "span_id": uuid.uuid4().hex[:16],
                "service": "bench-load",
                "model": "google/gemma-3-270m",
                "messages": [{"role": "user", "content": prompt}],
                "completion": completion,
                "tags": {"route": "/v1/chat", "tenant": f"t{rng.randint(1, 5)}"},
                "input_tokens": len(prompt) // 4,
                "output_tokens": len(completion) // 4,
                "started_at": now,
                "overhead_ms": round(rng.uniform(0.2, 2.0), 2),
            }
        )
    return json.dumps({"traces": traces}).encode()


def reviewer_loop(
    base: str,
    session: requests.Session,
    recorder: Recorder,
    makers: dict[str, Any],
    makers_lock: threading.Lock,
    think: tuple[float, float],
    deadline: float,
    seed: int,
) -> None:
    """One reviewer's walk: list, trace, feature page half the time, triage one time in eight."""
    rng = random.Random(seed)  # noqa: S311 (a reproducible walk, not a secret)

    def pause() -> bool:
        wait = rng.uniform(*think)
        if time.monotonic() + wait >= deadline:
            return False
        time.sleep(wait)
        return True

    def url(page: str) -> tuple[str, str]:
        with makers_lock:
            variant, path = makers[page]()
        return variant, path

    while True:
        steps = ["trace_list", "trace_view"]
        if rng.random() < 0.5:
            steps.append("feature_page")
        for page in steps:
            if not pause():
                return
            variant, path = url(page)
            recorder.send(session, page, variant, "GET", base + path)
        if rng.random() < 1 / 8:
            if not pause():
                return
            queue = recorder.send(session, "triage_queue", "queue", "GET", base + "/triage/")
            action = FORM_ACTION.search(queue.text) if queue is not None else None
            token = CSRF.search(queue.text) if queue is not None else None
            if action is None or token is None or not pause():
                continue
            decision = "skipped" if rng.random() < 1 / 3 else "reviewed"
            recorder.send(
                session,
                "triage_decide",
                decision,
                "POST",
                base + action.group(1),
                data={"decision": decision, "note": "", "csrfmiddlewaretoken": token.group(1)},
                headers={"Referer": base + "/triage/"},
            )


def ingest_loop(
    base: str,
    key: str,
    recorder: Recorder,
    rate: float,
    batch: int,
    deadline: float,
    accepted: list[int],
    measure_from: float,
) -> None:
    """Open loop: a batch every ``batch / rate`` seconds, whatever the answers' latency."""
    rng = random.Random(11)  # noqa: S311
    texts = ingest_texts()
    interval = batch / rate
    session = requests.Session()
    headers = {"Authorization": f"Token {key}", "Content-Type": "application/json"}
    lock = threading.Lock()

    def send(body: bytes) -> None:
        sent = time.monotonic()
        answer = recorder.send(
            session, "ingest", f"batch of {batch}", "POST", base + "/api/ingest/v1/traces",
            data=body, headers=headers,
        )  # fmt: skip
        if answer is not None and answer.status_code == 202 and sent >= measure_from:
            with lock:
                accepted.append(int(answer.json().get("sampled", 0)))

    with ThreadPoolExecutor(8) as pool:
        due = time.monotonic()
        while due < deadline:
            pool.submit(send, ingest_body(rng, texts, batch))
            due += interval
            time.sleep(max(0.0, due - time.monotonic()))


def page_summary(samples: list[pages.Sample], seconds: float) -> dict[str, Any]:
    server = [s.server_ms for s in samples if s.server_ms is not None]
    client = [s.client_ms for s in samples]
    statuses: dict[str, int] = defaultdict(int)
    for s in samples:
        statuses[str(s.status)] += 1
    return {
        "requests": len(samples),
        "per_second": len(samples) / seconds if seconds else 0.0,
        "errors": sum(not (200 <= s.status < 400) and s.status != 429 for s in samples),
        "throttled_429": sum(s.status == 429 for s in samples),
        "statuses": dict(sorted(statuses.items())),
        "server_ms": {f"p{q}": pages.percentile(server, q / 100) for q in (50, 95, 99)},
        "client_ms": {f"p{q}": pages.percentile(client, q / 100) for q in (50, 95, 99)},
    }


def start_ingest_worker(log: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "celery", "-A", "scopeweb", "worker", "--queues", "ingest",
        "--concurrency", "1", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
        "--hostname", f"bench-load-{uuid.uuid4().hex[:6]}@%h",
    ]  # fmt: skip
    with log.open("wb") as out:
        return subprocess.Popen(
            command, cwd=ROOT, env=os.environ.copy(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def ingest_backlog() -> dict[str, int]:
    from traces.ingest.models import IngestBatch

    counts: dict[str, int] = defaultdict(int)
    for state, records in IngestBatch.objects.values_list("state", "records"):
        counts[f"{state}_batches"] += 1
        counts[f"{state}_requests"] += records
    return dict(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="measured time")
    parser.add_argument("--warmup", type=float, default=30.0, help="unmeasured time before")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--think", type=float, nargs=2, default=(1.0, 3.0), metavar=("MIN", "MAX"))
    parser.add_argument("--ingest-rate", type=float, default=10.0, help="traces a second")
    parser.add_argument("--ingest-batch", type=int, default=5, help="traces a request")
    parser.add_argument("--ingest-worker", action="store_true", help="run an ingest worker too")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="gunicorn's")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--redis", default=REDIS_DEFAULT, help="broker and cache (its own db)")
    parser.add_argument("--client-nice", type=int, default=19)
    args = parser.parse_args()

    state = pages.bench_state()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)  # migrations newer than the seed (none, usually)
    broker = redis.Redis.from_url(REDIS_URL)
    broker.flushdb()  # the bench's own database (13): what an earlier run left queued

    names = make_reviewers(args.users)
    key, sae_name = ingest_key()
    backlog_before = ingest_backlog()
    rng = random.Random(7)  # noqa: S311
    makers = pages.url_makers(state, rng)
    makers_lock = threading.Lock()

    stamp = time.strftime("%Y%m%d-%H%M%S")
    access_log = ROOT / "var" / "bench" / f"access-load-{stamp}.log"
    access_log.parent.mkdir(parents=True, exist_ok=True)
    connection.close()  # gunicorn forks its own
    server = pages.start_server(args.port, args.workers, access_log)
    worker = (
        start_ingest_worker(ROOT / "var" / "bench" / f"ingest-worker-{stamp}.log")
        if args.ingest_worker
        else None
    )
    os.nice(args.client_nice)
    base = f"http://127.0.0.1:{args.port}"
    recorder = Recorder()
    accepted: list[int] = []
    load = [os.getloadavg()[0]]  # the machine's 1-minute load average: before, then each minute
    deadline = began = time.monotonic()
    try:
        sessions = [pages.signed_in(base, name, PASSWORD) for name in names]
        print(
            f"{len(sessions)} reviewers signed in; {args.seconds:.0f} s of browsing with "
            f"{args.think[0]:g}-{args.think[1]:g} s think time, ingestion at "
            f"{args.ingest_rate:g} traces/s in batches of {args.ingest_batch}",
            flush=True,
        )
        recorder.measure_from = time.monotonic() + args.warmup
        deadline = recorder.measure_from + args.seconds
        threads = [
            threading.Thread(
                target=reviewer_loop,
                args=(base, s, recorder, makers, makers_lock, tuple(args.think), deadline, i),
            )
            for i, s in enumerate(sessions)
        ]
        threads.append(
            threading.Thread(
                target=ingest_loop,
                args=(
                    base,
                    key,
                    recorder,
                    args.ingest_rate,
                    args.ingest_batch,
                    deadline,
                    accepted,
                    recorder.measure_from,
                ),
            )
        )
        for thread in threads:
            thread.start()
        began = recorder.measure_from
        while any(t.is_alive() for t in threads):
            time.sleep(min(60.0, max(1.0, deadline - time.monotonic())))
            load.append(os.getloadavg()[0])
            if time.monotonic() < deadline:
                print(
                    f"  {time.monotonic() - began:5.0f} s: {len(recorder.measured())} requests, "
                    f"{sum(accepted)} traces accepted, load average {load[-1]:.1f}",
                    flush=True,
                )
        for thread in threads:
            thread.join()
    finally:
        elapsed = min(time.monotonic(), deadline) - began
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        if worker is not None:
            worker.terminate()
            worker.wait(30)
    times = pages.server_times(access_log)
    for sample in recorder.samples:
        sample.server_ms = times.get(sample.request_id)
    backlog = ingest_backlog()
    broker.flushdb()

    by_page: dict[str, list[pages.Sample]] = defaultdict(list)
    for sample in recorder.measured():
        by_page[sample.page].append(sample)
    report: dict[str, Any] = {
        "machine": f"{os.cpu_count()} CPUs, gunicorn {args.workers} sync workers, "
        f"{args.users} reviewers with {args.think[0]:g}-{args.think[1]:g} s think time "
        f"(nice {args.client_nice}), PostgreSQL {pages._pg_version()}",
        "seconds": elapsed,
        "warmup_seconds": args.warmup,
        "load_average_1min": {"before": load[0], "during": load[1:]},
        "index_rows": state["index_rows"],
        "ingest": {
            "offered_traces_per_second": args.ingest_rate,
            "batch": args.ingest_batch,
            "worker": bool(args.ingest_worker),
            "sae": sae_name,
        },
        "throttle_rates": settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES"),
        "pages": {},
        "failures": recorder.failures[:50],
    }
    print(
        f"\n{report['machine']}; {state['index_rows']:,} index rows; {elapsed:.0f} s measured "
        f"after {args.warmup:.0f} s of warm-up; load average {load[0]:.1f} before, "
        f"{max(load[1:], default=0):.1f} at most during"
    )
    print(
        f"{'page':14} {'req':>6} {'req/s':>6} {'err':>4} {'429':>4} {'server p50':>10} "
        f"{'p95':>7} {'p99':>7} {'target':>7} {'client p50':>10} {'p95':>7}"
    )
    order = ["trace_list", "trace_view", "feature_page", "triage_queue", "triage_decide", "ingest"]
    for page in sorted(by_page, key=lambda p: order.index(p) if p in order else len(order)):
        row = page_summary(by_page[page], elapsed)
        target = pages.TARGETS_MS.get(page)
        row["target_p95_ms"] = target
        report["pages"][page] = row
        s, c = row["server_ms"], row["client_ms"]
        verdict = "" if target is None else ("ok" if s["p95"] <= target else "MISS")
        print(
            f"{page:14} {row['requests']:6d} {row['per_second']:6.2f} {row['errors']:4d} "
            f"{row['throttled_429']:4d} {s['p50']:10.1f} {s['p95']:7.1f} {s['p99']:7.1f} "
            f"{(f'{target:.0f}' if target else '-'):>7} {c['p50']:10.1f} {c['p95']:7.1f}  {verdict}"
        )
    ingest = report["pages"].get("ingest", {})
    report["ingest"] |= {
        "accepted_requests": len(accepted),
        "accepted_traces": sum(accepted),
        "accepted_traces_per_second": sum(accepted) / elapsed if elapsed else 0.0,
        "backlog_before": backlog_before,
        "backlog_after": backlog,
    }
    print(
        f"\ningestion: {args.ingest_rate:g} traces/s offered in batches of {args.ingest_batch}; "
        f"{sum(accepted)} traces accepted in {len(accepted)} requests "
        f"({report['ingest']['accepted_traces_per_second']:.2f} traces/s), "
        f"{ingest.get('errors', 0)} errors, {ingest.get('throttled_429', 0)} answered 429; "
        f"batches waiting for analysis after: {backlog.get('pending_batches', 0)}"
    )
    if recorder.failures:
        print(f"{len(recorder.failures)} requests got no answer; first: {recorder.failures[0]}")
    out = ROOT / "var" / "bench" / f"load-{stamp}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
