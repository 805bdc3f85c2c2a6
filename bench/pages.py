"""Page speed benchmark: the trace list, a 1000-token trace view and a feature page with its top
examples, each under 20 concurrent reviewers, against the SYNTHETIC database that
``bench/seed_synthetic.py`` makes (run that first; this script refuses any other database).

It starts gunicorn (``scopeweb.wsgi``, one sync worker per CPU by default) on the bench database
and data directory, signs 20 sessions in as the synthetic reviewer, and for each page runs 20
threads in a closed loop (no think time: each reviewer asks again as soon as it has its answer) for
``--seconds``, after a warm-up. Each request carries an ``X-Bench-Id`` header that gunicorn's
access log writes next to its ``%(D)s``, the microseconds from the worker reading the request to
the response written: that is the server time the targets are about. The client round trip on
localhost (server time plus waiting for a free worker) is reported beside it.

For every page whose server p95 misses its target, it renders the slowest URL of the page once
in this process, captures its SQL and prints ``EXPLAIN (ANALYZE, BUFFERS)`` of its slowest
queries.

Run::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/scopeweb_bench \\
        .venv/bin/python bench/pages.py [--seconds 60] [--workers 4] [--users 20]

Results go to stdout and to ``var/bench/pages-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scopeweb.settings")
os.environ.setdefault("SCOPEWEB_DATA_DIR", str(ROOT / "var" / "bench-data"))
os.environ.setdefault("SCOPEWEB_MODEL_CACHE_DIR", str(ROOT / "var" / "models"))

import django  # noqa: E402

django.setup()

import requests  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

TARGETS_MS = {"trace_list": 100.0, "trace_view": 150.0, "feature_page": 200.0}
LOG_LINE = re.compile(r"^BENCH (\S+) (\d+) (\d+)$")


@dataclass
class Sample:
    page: str
    variant: str
    url: str
    status: int
    client_ms: float
    server_ms: float | None = None
    request_id: str = ""  # the X-Bench-Id it was sent with, which the access log repeats


@dataclass
class PageResult:
    page: str
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    at = (len(ordered) - 1) * q
    low, high = int(at), min(int(at) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def url_makers(
    state: dict[str, Any], rng: random.Random
) -> dict[str, Callable[[], tuple[str, str]]]:
    """Per page, a function giving (variant, url): what reviewers open, in a fixed mix."""
    runs, features = state["runs"], state["bench_features"]
    watched = state["watched_features"]
    views = rng.sample(state["trace_views"], min(200, len(state["trace_views"])))
    sae = state["sae"]
    list_mix: list[tuple[float, Callable[[], tuple[str, str]]]] = [
        (0.30, lambda: ("all", "/traces/")),
        (0.15, lambda: ("all, page 2-10", f"/traces/?page={rng.randint(2, 10)}")),
        (0.15, lambda: ("one run", f"/runs/{rng.choice(runs)}/traces/")),
        (
            0.05,
            lambda: (
                "one run, page 2-10",
                f"/runs/{rng.choice(runs)}/traces/?page={rng.randint(2, 10)}",
            ),
        ),
        (0.10, lambda: ("sort -l0", "/traces/?sort=-l0")),
        (
            0.10,
            lambda: ("feature, by peak", f"/traces/?feature={rng.choice(features)}&sort=-feature"),
        ),
        (0.05, lambda: ("feature above", f"/traces/?feature={rng.choice(watched)}&above=5")),
        (0.07, lambda: ("flagged", "/traces/?flagged=yes")),
        (0.03, lambda: ("text search", f"/traces/?q=topic+{rng.randint(10, 96)}")),
    ]

    def trace_list() -> tuple[str, str]:
        pick, total = rng.random(), 0.0
        for weight, make in list_mix:
            total += weight
            if pick < total:
                return make()
        return list_mix[0][1]()

    def trace_view() -> tuple[str, str]:
        return "1000 tokens", f"/traces/{rng.choice(views)}/"

    def feature_page() -> tuple[str, str]:
        index = rng.randrange(len(features))
        rank = state["bench_feature_ranks"][index]
        return f"zipf rank {rank}", f"/saes/{sae}/features/{features[index]}/"

    return {"trace_list": trace_list, "trace_view": trace_view, "feature_page": feature_page}


def start_server(port: int, workers: int, access_log: Path) -> subprocess.Popen[bytes]:
    command = [
        str(ROOT / ".venv" / "bin" / "gunicorn"),
        "scopeweb.wsgi",
        f"--workers={workers}",
        f"--bind=127.0.0.1:{port}",
        "--timeout=120",
        f"--access-logfile={access_log}",
        "--access-logformat=BENCH %({x-bench-id}i)s %(s)s %(D)s",
    ]
    server = subprocess.Popen(command, cwd=ROOT, env=os.environ.copy(), start_new_session=True)
    for _ in range(120):
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=30)
            return server
        except requests.RequestException:
            time.sleep(0.5)
    os.killpg(server.pid, signal.SIGTERM)
    sys.exit("gunicorn did not start")


def signed_in(base: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base}/account/login/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, "no CSRF token on the login page"
    answer = session.post(
        f"{base}/account/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token.group(1)},
        headers={"Referer": f"{base}/account/login/"},
        timeout=30,
        allow_redirects=False,
    )
    assert answer.status_code == 302, f"sign-in failed ({answer.status_code})"
    return session


def hammer(
    base: str,
    page: str,
    make: Callable[[], tuple[str, str]],
    sessions: list[requests.Session],
    seconds: float,
    tag: str,
) -> PageResult:
    """``len(sessions)`` reviewers asking for ``page`` in a closed loop for ``seconds``."""
    result = PageResult(page)
    lock = threading.Lock()
    counter = iter(range(10**9))
    deadline = time.perf_counter() + seconds

    def reviewer(session: requests.Session) -> None:
        while time.perf_counter() < deadline:
            with lock:
                variant, url = make()
                request_id = f"{tag}-{next(counter)}"
            started = time.perf_counter()
            answer = session.get(base + url, headers={"X-Bench-Id": request_id}, timeout=120)
            _ = answer.content
            sample = Sample(
                page,
                variant,
                url,
                answer.status_code,
                (time.perf_counter() - started) * 1000,
                request_id=request_id,
            )
            with lock:
                result.samples.append(sample)

    began = time.perf_counter()
    with ThreadPoolExecutor(len(sessions)) as pool:
        for future in [pool.submit(reviewer, s) for s in sessions]:
            future.result()
    result.seconds = time.perf_counter() - began
    return result


def server_times(access_log: Path) -> dict[str, float]:
    """Milliseconds of server time by X-Bench-Id, from gunicorn's access log."""
    times = {}
    for line in access_log.read_text().splitlines():
        found = LOG_LINE.match(line.strip())
        if found:
            times[found.group(1)] = int(found.group(3)) / 1000
    return times


def attach_server_times(results: list[PageResult], access_log: Path) -> None:
    times = server_times(access_log)
    for result in results:
        for sample in result.samples:
            sample.server_ms = times.get(sample.request_id)


def summary(result: PageResult) -> dict[str, Any]:
    server = [s.server_ms for s in result.samples if s.server_ms is not None]
    client = [s.client_ms for s in result.samples]
    variants: dict[str, list[float]] = defaultdict(list)
    for s in result.samples:
        if s.server_ms is not None:
            variants[s.variant].append(s.server_ms)
    return {
        "requests": len(result.samples),
        "errors": sum(s.status != 200 for s in result.samples),
        "throughput_rps": len(result.samples) / result.seconds if result.seconds else 0.0,
        "server_ms": {f"p{q}": percentile(server, q / 100) for q in (50, 95, 99)},
        "client_ms": {f"p{q}": percentile(client, q / 100) for q in (50, 95, 99)},
        "target_p95_ms": TARGETS_MS[result.page],
        "variants": {
            name: {
                "n": len(values),
                "p50": percentile(values, 0.5),
                "p95": percentile(values, 0.95),
                "mean": statistics.fmean(values),
            }
            for name, values in sorted(variants.items())
        },
    }


def explain_url(url: str, username: str, top: int = 3) -> list[dict[str, Any]]:
    """Render ``url`` in this process, then EXPLAIN ANALYZE its ``top`` slowest queries."""
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(User.objects.get(username=username))
    with CaptureQueriesContext(connection) as captured:
        client.get(url)
    queries = sorted(captured.captured_queries, key=lambda q: -float(q["time"]))[:top]
    plans = []
    with connection.cursor() as cursor:
        for query in queries:
            if not query["sql"].lstrip().upper().startswith("SELECT"):
                continue
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + query["sql"])
            plan = "\n".join(row[0] for row in cursor.fetchall())
            plans.append({"ms": float(query["time"]) * 1000, "sql": query["sql"], "plan": plan})
    return plans


def _pg_version() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return str(cursor.fetchone()[0])


def bench_state() -> dict[str, Any]:
    """What seed_synthetic.py recorded; exits unless Django points at its bench database."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql" or "bench" not in str(db["NAME"]):
        sys.exit("Refused: point DATABASE_URL at the synthetic bench database (seed_synthetic.py).")
    state_file = Path(settings.DATA_DIR) / "bench-state.json"
    if not state_file.exists():
        sys.exit(f"No {state_file}: run bench/seed_synthetic.py first.")
    state: dict[str, Any] = json.loads(state_file.read_text())
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured time per page")
    parser.add_argument("--warmup", type=float, default=10.0, help="unmeasured time per page")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 2,
        help="gunicorn workers (default: one per CPU; these pages are CPU-bound, and more workers "
        "than cores only time-slice each request)",
    )
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--pages", default=",".join(TARGETS_MS), help="comma-separated pages")
    parser.add_argument("--explain", choices=("misses", "all", "none"), default="misses")
    parser.add_argument(
        "--client-nice",
        type=int,
        default=19,
        help="niceness of the load generator once the server runs (0: compete with it as equals)",
    )
    args = parser.parse_args()

    state = bench_state()
    rng = random.Random(7)  # noqa: S311 (a reproducible mix of pages, not a secret)
    makers = url_makers(state, rng)
    pages = [p for p in args.pages.split(",") if p in makers]

    # Under var/bench, not /tmp: a shared machine's /tmp may be cleaned while the run goes on.
    access_log = ROOT / "var" / "bench" / f"access-{time.strftime('%Y%m%d-%H%M%S')}.log"
    access_log.parent.mkdir(parents=True, exist_ok=True)
    server = start_server(args.port, args.workers, access_log)
    # The clients run on the server's two cores. Niced, they take only the CPU the server leaves,
    # so the server time measures the server, as with clients on machines of their own.
    os.nice(args.client_nice)
    base = f"http://127.0.0.1:{args.port}"
    results = []
    try:
        sessions = [
            signed_in(base, state["reviewer"], state["password"]) for _ in range(args.users)
        ]
        for page in pages:
            print(f"{page}: warm-up {args.warmup:.0f} s, then {args.seconds:.0f} s", flush=True)
            hammer(base, page, makers[page], sessions, args.warmup, f"warm-{page}")
            results.append(hammer(base, page, makers[page], sessions, args.seconds, page))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    attach_server_times(results, access_log)

    report: dict[str, Any] = {
        "machine": f"{os.cpu_count()} CPUs, gunicorn {args.workers} sync workers, "
        f"{args.users} reviewers in a closed loop (nice {args.client_nice}), "
        f"PostgreSQL {_pg_version()}",
        "index_rows": state["index_rows"],
        "pages": {},
    }
    print(f"\n{report['machine']}; {state['index_rows']:,} index rows, 100,000 traces")
    print(
        f"{'page':14} {'req':>6} {'req/s':>6} {'server p50':>10} {'p95':>7} {'p99':>7} "
        f"{'target':>7} {'client p50':>10} {'p95':>7} {'p99':>7}"
    )
    for result in results:
        row = summary(result)
        report["pages"][result.page] = row
        s, c = row["server_ms"], row["client_ms"]
        verdict = "ok" if s["p95"] <= row["target_p95_ms"] else "MISS"
        print(
            f"{result.page:14} {row['requests']:6d} {row['throughput_rps']:6.1f} "
            f"{s['p50']:10.1f} {s['p95']:7.1f} {s['p99']:7.1f} {row['target_p95_ms']:6.0f} "
            f"{c['p50']:10.1f} {c['p95']:7.1f} {c['p99']:7.1f}  {verdict}"
            + (f"  ({row['errors']} errors)" if row["errors"] else "")
        )
        for name, v in row["variants"].items():
            print(
                f"    {name:24} n={v['n']:5d}  p50 {v['p50']:7.1f}  p95 {v['p95']:7.1f}  "
                f"mean {v['mean']:7.1f}"
            )

    for result in results:
        row = report["pages"][result.page]
        missed = row["server_ms"]["p95"] > row["target_p95_ms"]
        if args.explain == "none" or (args.explain == "misses" and not missed):
            continue
        slowest = max(
            (s for s in result.samples if s.server_ms is not None), key=lambda s: s.server_ms or 0
        )
        print(f"\n=== {result.page}: query plans of its slowest URL, {slowest.url} ===")
        row["plans"] = explain_url(slowest.url, state["reviewer"])
        row["plans_url"] = slowest.url
        for plan in row["plans"]:
            print(f"\n-- {plan['ms']:.1f} ms: {plan['sql'][:2000]}\n{plan['plan']}")

    out = ROOT / "var" / "bench" / f"pages-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
