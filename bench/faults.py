"""Fault benchmark (not a test): real analysis runs of Gemma 3 270M on PostgreSQL and Redis with a
real Celery worker, each hit by one fault in its middle, checked against a clean run.

It starts its OWN PostgreSQL cluster (``initdb`` into ``var/bench/faults-pg``, port 5440) and its
own Redis (port 6390, no persistence, as ``make run``'s production Redis is restarted), so the
restarts disturb nobody else's tests. In them: a fresh database ``scopeweb_faults``, the shipped
SAE, a prompt set of ``--prompts`` passages of ``bench/prompts.jsonl`` imported by the worker, and
one worker started as ``python -m scopeweb.serve`` starts it (prefork, concurrency 1, acks late,
reject on worker lost). Then one run after another of the same prompts and settings
(``--new-tokens`` generated, ``--chunk-prompts`` per chunk), each started with ``run_start`` as the
run form does:

- ``none``: the clean reference run;
- ``postgres``: PostgreSQL stopped (fast shutdown: open connections are cut) mid-chunk, held down
  ``--down`` seconds, started again;
- ``redis``: Redis shut down without saving mid-chunk (the queue and the unacknowledged task are
  lost with it), held down ``--down`` seconds, started again;
- ``pool-kill``: the worker's pool process, the one computing the chunk, SIGKILLed (what the
  kernel's OOM killer does); the worker's main process hands the task back to the broker;
- ``worker-kill``: the whole worker (main and pool process) SIGKILLed mid-chunk (the machine or
  container gone), a new worker started at once; Redis hands the unacknowledged task to it once
  the task was delivered ``--visibility-timeout`` seconds ago (default 60; the product's is
  6 h 35 min). Through ``bench/faults_settings.py``, only this replacement worker has the short
  timeout; the others keep an hour, so no live run is handed out twice.

A warm-up run of 2 prompts comes first, unmeasured (the first run on a fresh database records the
SAE's dataset mean and the CPU's matmul peak). The fault comes after the run's first committed
chunk, half a chunk's time later (measured on the reference), so mid-chunk. After each run: the
job's state and attempts; traces expected (one per prompt), found, missing and doubled; whether
each trace's ``arrays_sha256``, every chunk file's sha256, the index rows (``TraceFeature``) and
the run digest (sha256 of the manifest's chunks and traces, which leave out the run's id and time)
equal the reference's; whether the stored manifest matches the sha256 the run recorded and the
stored chunk files match the manifest; files under the run's folder that the manifest does not
name; the time from the fault to the next committed chunk (recovery) and the run's wall time
against the reference's.

    .venv/bin/python bench/faults.py [--prompts 12] [--new-tokens 16] [--chunk-prompts 2]
        [--faults none,postgres,redis,pool-kill,worker-kill] [--down 5] [--keep]

Prints a table and writes ``var/bench/faults-<time>.json``. About 8 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
FAULTS = ("none", "postgres", "redis", "pool-kill", "worker-kill")
FINISHED = ("succeeded", "failed", "cancelled")
LONG_VISIBILITY_S = 3600
T = TypeVar("T")


# --- the bench's own PostgreSQL and Redis -----------------------------------------------------


@dataclass
class Services:
    """A PostgreSQL cluster and a Redis server of the bench's own, on ports nobody else uses."""

    pg_dir: Path
    pg_port: int
    redis_port: int
    log_dir: Path

    @property
    def pg_bin(self) -> Path:
        found = shutil.which("initdb") or shutil.which("pg_ctl")
        if found:
            return Path(found).resolve().parent
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        if not candidates:
            sys.exit("No PostgreSQL server binaries (initdb, pg_ctl) on this machine.")
        return candidates[-1]

    def _as_owner(self, command: list[str]) -> list[str]:
        # PostgreSQL refuses to run as root; the system's clusters belong to "postgres".
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command

    def pg_start(self) -> None:
        if not (self.pg_dir / "PG_VERSION").exists():
            self.pg_dir.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(self.pg_dir, "postgres", "postgres")
            subprocess.run(
                self._as_owner(
                    [
                        str(self.pg_bin / "initdb"),
                        "-D",
                        str(self.pg_dir),
                        "-U",
                        "postgres",
                        "-A",
                        "trust",
                        "-E",
                        "UTF8",
                        "--no-instructions",
                    ]
                ),
                check=True,
                stdout=subprocess.DEVNULL,
            )
        options = f"-p {self.pg_port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        subprocess.run(
            self._as_owner(
                [
                    str(self.pg_bin / "pg_ctl"),
                    "-D",
                    str(self.pg_dir),
                    "-l",
                    str(self.pg_dir / "server.log"),
                    "-o",
                    options,
                    "-w",
                    "start",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def pg_stop(self) -> None:
        """Fast shutdown, as a service manager's restart does: sessions are cut, not waited on."""
        subprocess.run(
            self._as_owner(
                [str(self.pg_bin / "pg_ctl"), "-D", str(self.pg_dir), "-m", "fast", "-w", "stop"]
            ),
            check=False,
            stdout=subprocess.DEVNULL,
        )

    def pg_running(self) -> bool:
        return (self.pg_dir / "postmaster.pid").exists()

    def psql(self, sql: str) -> None:
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres", "-q",
             "-d", "postgres", "-c", sql],
            check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip

    def redis_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.redis_port), *args],
            capture_output=True,
            text=True,
            check=False,
        )

    def redis_start(self) -> None:
        subprocess.run(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--daemonize", "yes",
             "--dir", str(self.log_dir), "--logfile", str(self.log_dir / "redis.log")],
            check=True,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while self.redis_cli("ping").stdout.strip() != "PONG":
            if time.monotonic() > deadline:
                sys.exit(f"redis-server on port {self.redis_port} did not start")
            time.sleep(0.1)

    def redis_stop(self) -> None:
        """``shutdown nosave``: what was queued or unacknowledged is gone, as after a restart of a
        Redis without persistence."""
        self.redis_cli("shutdown", "nosave")
        deadline = time.monotonic() + 20
        while self.redis_cli("ping").returncode == 0 and time.monotonic() < deadline:
            time.sleep(0.1)


# --- the worker -------------------------------------------------------------------------------


class Worker:
    """``celery worker`` as ``scopeweb.serve`` starts it, in a process group of its own."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        command = [
            sys.executable, "-m", "celery", "-A", "scopeweb", "worker",
            "--queues", "default,analysis", "--concurrency", "1", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle",
            "--hostname", f"bench-faults-{uuid.uuid4().hex[:6]}@%h",
        ]  # fmt: skip
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.started = time.monotonic()

    def wait_ready(self, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while b" ready." not in self.log.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                sys.exit(f"the worker did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def alive(self) -> bool:
        return self.process.poll() is None

    def pool_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    def kill(self) -> None:
        """SIGKILL to the main process and its pool, with no warning."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if not self.alive():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()

    def lines(self, *needles: str) -> list[str]:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line[:300] for line in text.splitlines() if any(n in line for n in needles)]


LOG_NEEDLES = (
    "Retry in", "WorkerLostError", "Connection to broker lost", "Cannot connect", "Restoring",
    "OperationalError", "InterfaceError", "ERROR", "CRITICAL", "succeeded in", "Task ", "redeliver",
)  # fmt: skip


# --- one run and its fault --------------------------------------------------------------------


@dataclass
class Watch:
    """What the bench saw of one run: chunk commits as (seconds since start, chunks done)."""

    started: float
    commits: list[tuple[float, int]] = field(default_factory=list)
    fault: dict[str, Any] = field(default_factory=dict)
    fault_done: threading.Event = field(default_factory=threading.Event)


def db_retry(read: Callable[[], T], seconds: float = 120) -> T:
    """``read`` from the database, reconnecting while PostgreSQL restarts."""
    from django.db import InterfaceError, OperationalError, connection

    deadline = time.monotonic() + seconds
    while True:
        try:
            return read()
        except (OperationalError, InterfaceError):
            connection.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


class Bench:
    def __init__(self, args: argparse.Namespace, services: Services, env: dict[str, str]) -> None:
        self.args = args
        self.services = services
        self.env = env
        self.workers: list[Worker] = []
        self.worker_count = 0

    @property
    def worker(self) -> Worker:
        return self.workers[-1]

    def start_worker(self, wait: bool = True, visibility_timeout: int | None = None) -> Worker:
        self.worker_count += 1
        env = self.env | (
            {"BENCH_VISIBILITY_TIMEOUT": str(visibility_timeout)} if visibility_timeout else {}
        )
        worker = Worker(env, self.services.log_dir / f"worker-{self.worker_count}.log")
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    # The faults: each returns what happened, with times relative to the run's start.
    def inject(self, fault: str, watch: Watch) -> None:
        def at() -> float:
            return round(time.monotonic() - watch.started, 2)

        record = watch.fault
        record["at_s"] = at()
        if fault == "postgres":
            self.services.pg_stop()
            record["down_at_s"] = at()
            time.sleep(self.args.down)
            self.services.pg_start()
            record["up_at_s"] = at()
        elif fault == "redis":
            self.services.redis_stop()
            record["down_at_s"] = at()
            time.sleep(self.args.down)
            self.services.redis_start()
            record["up_at_s"] = at()
        elif fault == "pool-kill":
            pids = self.worker.pool_pids()
            record["killed_pids"] = pids
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            record["down_at_s"] = record["up_at_s"] = at()
        elif fault == "worker-kill":
            record["killed_pids"] = [self.worker.process.pid, *self.worker.pool_pids()]
            self.worker.kill()
            record["down_at_s"] = at()
            self.start_worker(wait=True, visibility_timeout=self.args.visibility_timeout)
            record["up_at_s"] = at()  # the new worker is ready
        watch.fault_done.set()

    def cancel(self, run: Any) -> None:
        """Cancel a run that overran, and wait for its worker to stop it, so that the next run
        does not queue behind it."""
        from scopeweb.accounts.actor import Actor
        from scopeweb.jobs.models import Job
        from traces.services.runs import run_cancel

        db_retry(lambda: run_cancel(run, actor=Actor.command()))
        deadline = time.monotonic() + self.args.run_timeout
        while time.monotonic() < deadline:
            if db_retry(lambda: Job.objects.get(pk=run.job_id).finished):
                return
            time.sleep(1)

    def execute(self, fault: str, prompt_set: Any, sae: Any, delay: float) -> tuple[Any, Watch]:
        from scopeweb.accounts.actor import Actor
        from traces.models import AnalysisRun
        from traces.services.runs import run_start

        run = run_start(
            actor=Actor.command(),
            prompt_set=prompt_set,
            sae=sae,
            top_k=32,
            generate_tokens=self.args.new_tokens,
            seed=0,
            chunk_prompts=self.args.chunk_prompts,
        )
        watch = Watch(started=time.monotonic())
        injector: threading.Thread | None = None
        first_commit: float | None = None
        deadline = watch.started + self.args.run_timeout
        while True:
            done, state = db_retry(
                lambda: AnalysisRun.objects.values_list("chunks_done", "job__state").get(pk=run.pk)
            )
            now = time.monotonic() - watch.started
            if not watch.commits or watch.commits[-1][1] != done:
                watch.commits.append((round(now, 2), done))
                if done >= 1 and first_commit is None:
                    first_commit = now
            if state in FINISHED and (injector is None or watch.fault_done.is_set()):
                break
            if time.monotonic() > deadline:
                watch.fault["timeout"] = f"not finished after {self.args.run_timeout:.0f} s"
                self.cancel(run)
                break
            due = first_commit is not None and now >= first_commit + delay
            if fault != "none" and injector is None and due:
                watch.fault["chunks_done_before"] = done
                injector = threading.Thread(target=self.inject, args=(fault, watch))
                injector.start()
            time.sleep(0.2)
        if injector is not None:
            injector.join()
        elif fault != "none":
            watch.fault["missed"] = "the run finished before the fault was due"
        watch.fault["wall_s"] = round(time.monotonic() - watch.started, 2)
        return run, watch


# --- checks against the reference -------------------------------------------------------------


def run_record(run_id: int) -> dict[str, Any]:
    """Everything the comparison needs of a finished run, read back from the database and the
    run's stored files."""
    from scopeweb.storage import storage_files
    from traces.bundle.manifest import ManifestError, chunk_digests, manifest_load, manifest_path
    from traces.models import AnalysisRun, Trace, TraceFeature

    run = AnalysisRun.objects.select_related("job", "prompt_set").get(pk=run_id)
    job = run.job
    traces = list(
        Trace.objects.filter(run=run)
        .order_by("prompt__position", "pk")
        .values_list("pk", "prompt__position", "arrays_sha256", "chunk", "row", "tokens")
    )
    positions = Counter(position for _, position, *_ in traces)
    expected = run.prompt_set.prompt_count
    index = list(
        TraceFeature.objects.filter(trace__run=run)
        .order_by("trace__prompt__position", "feature")
        .values_list(
            "trace__prompt__position", "feature", "max_activation", "count", "first_position"
        )
    )
    index_digest = hashlib.sha256(json.dumps(index).encode()).hexdigest()
    record: dict[str, Any] = {
        "run": run.pk,
        "job_state": job.state,
        "job_attempts": job.attempts,
        "job_deliveries": getattr(job, "deliveries", None),  # the redelivery counter, when there
        "job_error": job.error[:500],
        "chunks": f"{run.chunks_done}/{run.chunks_total}",
        "prompts_done": run.prompts_done,
        "tokens_done": run.tokens_done,
        "dtype": run.dtype,
        "device": run.device_kind,
        "traces_expected": expected,
        "traces_found": len(traces),
        "prompts_missing": sorted(set(range(expected)) - set(positions)),
        "prompts_doubled": sorted(p for p, n in positions.items() if n > 1),
        "trace_hashes": {str(position): sha for _, position, sha, *_ in traces},
        "index_rows": len(index),
        "index_digest": index_digest,
        "job_seconds": (job.finished_at - job.started_at).total_seconds()
        if job.finished_at and job.started_at
        else None,
    }
    try:
        manifest = manifest_load(run)
        stored_now = chunk_digests(run)
        record["manifest_ok"] = True
        record["chunk_files"] = {
            f"{chunk}/{part}": sha
            for chunk, parts in sorted(manifest.chunk_files.items())
            for part, sha in sorted(parts.items())
        }
        record["stored_files_match_manifest"] = all(
            stored_now[chunk][part].sha256 == sha
            for chunk, parts in manifest.chunk_files.items()
            for part, sha in parts.items()
        )
        digest_of = {k: manifest.content[k] for k in ("chunks", "traces", "settings", "pins")}
        record["run_digest"] = hashlib.sha256(
            json.dumps(digest_of, sort_keys=True).encode()
        ).hexdigest()
        named = {manifest_path(run.artifact_prefix)} | {
            f"{run.artifact_prefix}/{entry['files'][part]['file']}"
            for entry in manifest.content["chunks"]
            for part in entry["files"]
        }
        record["stray_files"] = [
            name for name in storage_files(run.artifact_prefix) if name not in named
        ]
    except ManifestError as exc:
        record |= {
            "manifest_ok": False,
            "manifest_error": str(exc),
            "chunk_files": {},
            "stored_files_match_manifest": False,
            "run_digest": None,
            "stray_files": storage_files(run.artifact_prefix),
        }
    return record


def compare(record: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    mine, theirs = record["trace_hashes"], reference["trace_hashes"]
    differing = sorted((p for p in theirs if mine.get(p) != theirs[p]), key=int)
    same = {
        "trace_hashes": not differing and len(mine) == len(theirs),
        "chunk_files": bool(record["chunk_files"])
        and record["chunk_files"] == reference["chunk_files"],
        "index_rows": record["index_digest"] == reference["index_digest"],
        "run_digest": record["run_digest"] is not None
        and record["run_digest"] == reference["run_digest"],
    }
    return {"identical": same, "differing_prompts": differing[:50]}


# --- set-up -----------------------------------------------------------------------------------


def prompt_file(count: int) -> bytes:
    """``count`` prompts: passages of bench/prompts.jsonl, cut to 200 characters."""
    texts = []
    for line in (ROOT / "bench" / "prompts.jsonl").read_text(encoding="utf-8").splitlines():
        text = json.loads(line)["prompt"]
        texts += [text[:200], text[200:400]]
    chosen = [t for t in texts if len(t) > 50][:count]
    return "".join(json.dumps({"prompt": t}) + "\n" for t in chosen).encode()


def import_prompts(count: int, name: str) -> Any:
    """A prompt set imported by the worker, as an upload is."""
    from scopeweb.accounts.actor import Actor
    from scopeweb.jobs.models import Job
    from scopeweb.retention.models import RetentionProfile
    from traces.models import PromptSet
    from traces.services.prompt_sets import prompt_set_upload

    data = prompt_file(count)
    job = prompt_set_upload(
        actor=Actor.command(),
        name=name,
        description="make bench-faults",
        profile=RetentionProfile.objects.get(code="US"),
        file=io.BytesIO(data),
        filename="faults.jsonl",
        size=len(data),
    )
    deadline = time.monotonic() + 180
    while not Job.objects.get(pk=job.pk).finished:
        if time.monotonic() > deadline:
            sys.exit("the worker did not import the prompt set in 180 s")
        time.sleep(0.3)
    finished = Job.objects.get(pk=job.pk)
    if finished.state != "succeeded":
        sys.exit(f"prompt import {finished.state}: {finished.error}")
    return PromptSet.objects.get(import_job=job)


def environment(args: argparse.Namespace, data: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "SCOPEWEB_SIGNING_P12")
    }
    return env | {
        "DJANGO_SETTINGS_MODULE": "bench.faults_settings",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{args.pg_port}/scopeweb_faults",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{args.redis_port}/13",
        "BENCH_VISIBILITY_TIMEOUT": str(args.visibility_timeout),
        "SCOPEWEB_DATA_DIR": str(data),
        "SCOPEWEB_MODEL_CACHE_DIR": env.get("SCOPEWEB_MODEL_CACHE_DIR", str(ROOT / "var/models")),
        "SCOPEWEB_LOG_LEVEL": "WARNING",
    }


# --- report -----------------------------------------------------------------------------------


def row_of(
    fault: str, watch: Watch, record: dict[str, Any], reference_wall: float
) -> dict[str, Any]:
    f = watch.fault
    at = f.get("at_s")
    before = f.get("chunks_done_before")
    resumed = next(
        (t for t, done in watch.commits if at is not None and t > at and done > (before or 0)),
        None,
    )
    return {
        "fault": fault,
        "fault_at_s": at,
        "fault_after_chunks": before,
        "down_s": round(f["up_at_s"] - f["down_at_s"], 2) if "up_at_s" in f else None,
        "next_chunk_after_fault_s": round(resumed - at, 2) if resumed and at is not None else None,
        "wall_s": f.get("wall_s"),
        "extra_s": round(f["wall_s"] - reference_wall, 2) if fault != "none" else 0.0,
        "commits": watch.commits,
        "detail": {k: v for k, v in f.items() if k not in ("wall_s",)},
    }


def verdict(record: dict[str, Any], comparison: dict[str, Any]) -> bool:
    return (
        record["job_state"] == "succeeded"
        and record["traces_found"] == record["traces_expected"]
        and not record["prompts_missing"]
        and not record["prompts_doubled"]
        and all(comparison["identical"].values())
        and record["manifest_ok"]
        and record["stored_files_match_manifest"]
    )


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"\n{'fault':12} {'run state':10} {'att':>3} {'traces exp/found/missing/doubled':>33} "
        f"{'hashes identical':>16} {'down':>6} {'recover':>8} {'wall':>7} {'extra':>7}  ok"
    )
    for row in rows:
        r, c = row["record"], row["comparison"]
        same = c["identical"]
        hashes = (
            "yes"
            if all(same.values())
            else "NO (" + ",".join(k for k, v in same.items() if not v) + ")"
        )
        counts = (
            f"{r['traces_expected']}/{r['traces_found']}/{len(r['prompts_missing'])}/"
            f"{len(r['prompts_doubled'])}"
        )
        down = f"{row['down_s']:.1f}s" if row["down_s"] is not None else "-"
        recover = (
            f"{row['next_chunk_after_fault_s']:.1f}s"
            if row["next_chunk_after_fault_s"] is not None
            else "-"
        )
        print(
            f"{row['fault']:12} {r['job_state']:10} {r['job_attempts']:3d} {counts:>33} "
            f"{hashes:>16} {down:>6} {recover:>8} {row['wall_s']:6.1f}s {row['extra_s']:+6.1f}s  "
            f"{'ok' if row['ok'] else 'FAIL'}"
        )  # fmt: skip


def code_state() -> dict[str, Any]:
    """The commit and the files changed in the work tree since: what the workers ran."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "changed": git("status", "--short").splitlines()}


# --- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--chunk-prompts", type=int, default=2)
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated; none first")
    parser.add_argument(
        "--down", type=float, default=5.0, help="seconds a restarted service is down"
    )
    parser.add_argument("--visibility-timeout", type=int, default=60)
    parser.add_argument("--pg-port", type=int, default=5440)
    parser.add_argument("--redis-port", type=int, default=6390)
    parser.add_argument("--run-timeout", type=float, default=900.0)
    parser.add_argument("--keep", action="store_true", help="keep the data directory and logs")
    args = parser.parse_args()
    faults = [f for f in args.faults.split(",") if f]
    unknown = set(faults) - set(FAULTS)
    if unknown:
        sys.exit(f"unknown faults {sorted(unknown)}; choose from {FAULTS}")
    if faults[0] != "none":
        faults.insert(0, "none")

    stamp = time.strftime("%Y%m%d-%H%M%S")
    data = ROOT / "var" / "bench" / f"faults-{stamp}"
    data.mkdir(parents=True)
    services = Services(ROOT / "var" / "bench" / "faults-pg", args.pg_port, args.redis_port, data)
    if services.pg_running():
        services.pg_stop()  # left over from an interrupted bench
    services.redis_cli("shutdown", "nosave")
    services.pg_start()
    services.psql("DROP DATABASE IF EXISTS scopeweb_faults")
    services.psql("CREATE DATABASE scopeweb_faults")
    services.redis_start()

    env = environment(args, data)
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    from traces.services.saes import sae_register_shipped

    bench = Bench(args, services, env)
    rows: list[dict[str, Any]] = []
    began = time.monotonic()
    load_before = os.getloadavg()[0]
    try:
        call_command("migrate", verbosity=0)
        sae = sae_register_shipped()[0]
        # Every worker but the one started after a worker's SIGKILL keeps the product's long
        # visibility timeout, so that no live run is handed out twice; the replacement has the
        # short one, so the dead worker's task comes back to it within the bench.
        bench.start_worker(visibility_timeout=LONG_VISIBILITY_S)
        prompt_set = import_prompts(args.prompts, "fault bench prompts")
        # Warm-up, unmeasured: the first run on a fresh database records the SAE's dataset mean
        # and the CPU's matmul peak (a minute or more here), and loads the model.
        warm_set = import_prompts(2, "fault bench warm-up")
        warm_run, warm_watch = bench.execute("none", warm_set, sae, 0.0)
        print(f"warm-up run {warm_run.pk}: {warm_watch.fault['wall_s']:.0f} s", flush=True)
        reference: dict[str, Any] = {}
        reference_wall = 0.0
        delay = 0.0
        for fault in faults:
            run, watch = bench.execute(fault, prompt_set, sae, delay)
            record = db_retry(functools.partial(run_record, run.pk))
            if fault == "none":
                reference, reference_wall = record, watch.fault["wall_s"]
                times = [t for t, done in watch.commits if done >= 1]
                gaps = [b - a for a, b in itertools.pairwise(times)]
                delay = 0.5 * (sorted(gaps)[len(gaps) // 2] if gaps else 2.0)
            comparison = compare(record, reference)
            row = row_of(fault, watch, record, reference_wall)
            row |= {
                "record": {k: v for k, v in record.items() if k != "trace_hashes"},
                "comparison": comparison,
                "worker_alive_after": bench.worker.alive(),
                "worker_log": bench.worker.lines(*LOG_NEEDLES)[-40:],
            }
            row["ok"] = verdict(record, comparison)
            row["load_average_1min"] = round(os.getloadavg()[0], 2)
            rows.append(row)
            print(
                f"{fault}: run {run.pk} {record['job_state']} in {row['wall_s']:.1f} s "
                f"(attempts {record['job_attempts']}, commits {watch.commits})",
                flush=True,
            )
            if not bench.worker.alive():
                print(f"the worker exited after the {fault} fault; starting another", flush=True)
                bench.start_worker()
    finally:
        for worker in bench.workers:
            worker.stop()
        services.redis_cli("shutdown", "nosave")
        services.pg_stop()

    print_table(rows)
    report = {
        "machine": f"{os.cpu_count()} CPUs; own PostgreSQL (port {args.pg_port}) and Redis "
        f"(port {args.redis_port}); one prefork worker, concurrency 1",
        "settings": {
            "prompts": args.prompts,
            "new_tokens": args.new_tokens,
            "chunk_prompts": args.chunk_prompts,
            "down_s": args.down,
            "visibility_timeout_s": args.visibility_timeout,
            "fault_delay_after_first_chunk_s": round(delay, 2),
        },
        "code": code_state(),
        "reference": {k: v for k, v in reference.items() if k != "trace_hashes"},
        "runs": rows,
        "all_ok": all(row["ok"] for row in rows),
        "load_average_1min_before": round(load_before, 2),
        "bench_seconds": round(time.monotonic() - began, 1),
    }
    out = ROOT / "var" / "bench" / f"faults-{stamp}.json"
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(
        f"\n{report['bench_seconds']:.0f} s in all; machine load average {load_before:.1f} "
        f"before, {max(row['load_average_1min'] for row in rows):.1f} at most after a run; "
        f"written to {out}"
    )
    if report["all_ok"] and not args.keep:
        shutil.rmtree(data, ignore_errors=True)
    else:
        print(f"data directory and worker logs kept in {data}")
    sys.exit(0 if report["all_ok"] else 1)


if __name__ == "__main__":
    main()
