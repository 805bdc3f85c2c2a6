"""Benchmark (not a test): a 50-prompt smoke gate end to end, as a CI job runs it. Target: at
most 10 minutes on this 2-core CPU machine (32 generated tokens per prompt, one SAE).

In a throwaway data directory (SQLite, the file-system broker, local artifacts, a self-signed
development key), it starts Scope Web as ``make run`` does (web, worker and beat), saves a gate
with the four model-free metrics and unusual attention at two layers over 50 prompts (passages
of ``bench/prompts.jsonl`` cut to 300 characters), makes a gate key, and runs the shipped
command ``scopeweb-gate run --wait`` against it twice, timing each from the command's start to
its exit:

- cold: the worker loads the model, and computes the baseline run and the candidate run;
- warm: the same gate again, as the next pull request would run it: the baseline is reused.

It prints both times against the target, the phases from the job's timestamps, and writes
``var/bench/gate-<time>.json``. The model cache is shared with ``var/models``.

    .venv/bin/python bench/gate.py [--prompts 50] [--new-tokens 32] [--keep]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 600.0
PORT = 8765


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="scopeweb-bench-gate-"))
    try:
        _bench(work, args)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _environment(work: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "SCOPEWEB_SIGNING_P12")
    }
    env |= {
        "SCOPEWEB_DATA_DIR": str(work),
        "SCOPEWEB_MODEL_CACHE_DIR": env.get("SCOPEWEB_MODEL_CACHE_DIR", str(ROOT / "var/models")),
        "SCOPEWEB_PORT": str(PORT),
        "SCOPEWEB_PUBLIC_URL": f"http://127.0.0.1:{PORT}",
        "SCOPEWEB_LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "scopeweb.settings",
    }
    return env


def _prompts(count: int) -> bytes:
    lines = []
    for line in (ROOT / "bench" / "prompts.jsonl").read_text(encoding="utf-8").splitlines():
        text = json.loads(line)["prompt"]
        lines += [text[:300], text[300:600]]
    chosen = [t for t in lines if len(t) > 50][:count]
    return "".join(json.dumps({"prompt": t}) + "\n" for t in chosen).encode()


def _setup(work: Path, env: dict[str, str], args: argparse.Namespace) -> str:
    """Migrate, key, SAE, prompts and gate in this process; returns the gate key."""
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("init_signing_key", "--common-name", "Scope Web benchmark", verbosity=0)
    from gates.services.definitions import gate_save, gate_token_create
    from scopeweb.accounts.actor import Actor
    from scopeweb.retention.models import RetentionProfile
    from traces.services.prompt_sets import prompt_set_import, prompt_set_upload
    from traces.services.saes import sae_register_shipped

    sae = sae_register_shipped()[0]
    data = _prompts(args.prompts)
    job = prompt_set_upload(
        actor=Actor.command(),
        name="smoke prompts",
        description="make bench-gate",
        profile=RetentionProfile.objects.get(code="US"),
        file=io.BytesIO(data),
        filename="smoke.jsonl",
        size=len(data),
        queue=False,
    )
    prompt_set = prompt_set_import(job.pk)
    assert prompt_set is not None, job.pk
    gate = gate_save(
        document={
            "name": "smoke",
            "prompt_set": prompt_set.pk,
            "profile": "US",
            "saes": [sae.name],
            "generation": {"new_tokens": args.new_tokens, "seed": 0},
            "attention_layers": [4, 9],
            "metrics": [
                {"name": "anomaly_rate", "max": 0.2},
                {"name": "unsafe_output_rate", "max": 0.05},
                {"name": "safety_feature_drift", "max": 0.1},
                {"name": "unusual_attention", "max": 2},
            ],
        },
        actor=Actor.command(),
    )
    _, key = gate_token_create(gate=gate, name="bench", actor=Actor.command())
    print(f"gate {gate.name}: {prompt_set.prompt_count} prompts, {prompt_set.token_total} tokens")
    return key


def _wait_up(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()  # noqa: S310 (our own local server)
            return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"the server at {url} did not come up in {seconds:.0f} s")


def _gate_once(env: dict[str, str], key: str, work: Path, label: str) -> dict[str, Any]:
    out = work / label
    command = [
        str(Path(sys.executable).with_name("scopeweb-gate")), "run",
        "--server", env["SCOPEWEB_PUBLIC_URL"], "--gate", "smoke", "--label", label,
        "--wait", "--timeout", "1800", "--poll", "2",
        "--json", str(out / "gate.json"), "--junit", str(out / "junit.xml"),
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(
        command, env=env | {"SCOPEWEB_GATE_TOKEN": key}, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    result = json.loads((out / "gate.json").read_text()) if (out / "gate.json").exists() else {}
    print(f"\n{label}: exit {done.returncode} in {seconds:.1f} s (target ≤ {TARGET_S:.0f} s)")
    print(done.stderr.strip()[-1500:])
    return {"label": label, "exit": done.returncode, "seconds": seconds, "result": result}


def _phases() -> list[dict[str, Any]]:
    from gates.models import GateRun
    from scopeweb.jobs.models import Job

    phases = []
    for run in GateRun.objects.order_by("pk"):
        for what, analysis in (("baseline", run.baseline_run), ("candidate", run.candidate_run)):
            if analysis is None or analysis.job_id is None:
                continue
            job = Job.objects.get(pk=analysis.job_id)
            if job.started_at and job.finished_at and job.started_at >= run.created_at:
                seconds = (job.finished_at - job.started_at).total_seconds()
                phases.append({"gate_run": run.pk, "phase": what, "seconds": seconds})
        if run.measured_at and run.candidate_run and run.candidate_run.job.finished_at:
            seconds = (run.measured_at - run.candidate_run.job.finished_at).total_seconds()
            phases.append({"gate_run": run.pk, "phase": "metrics", "seconds": seconds})
    return phases


def _bench(work: Path, args: argparse.Namespace) -> None:
    env = _environment(work)
    key = _setup(work, env, args)
    server = subprocess.Popen(
        [sys.executable, "-m", "scopeweb.serve"],
        cwd=ROOT,
        env=env,
        stdout=(work / "serve.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_up(f"{env['SCOPEWEB_PUBLIC_URL']}/healthz")
        runs = [_gate_once(env, key, work, label) for label in ("cold", "warm")]
    finally:
        server.terminate()
        server.wait(timeout=30)
    phases = _phases()
    for phase in phases:
        print(f"  gate run {phase['gate_run']} {phase['phase']:>9}: {phase['seconds']:.1f} s")
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "prompts": args.prompts,
        "new_tokens": args.new_tokens,
        "target_s": TARGET_S,
        "runs": [{k: v for k, v in r.items() if k != "result"} for r in runs],
        "verdicts": [r["result"].get("verdict") for r in runs],
        "phases": phases,
        "cpu_count": os.cpu_count(),
    }
    out = ROOT / "var" / "bench" / f"gate-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
