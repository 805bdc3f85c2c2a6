"""Benchmark (not a test): time to generate and sign the report of a case with 20 pieces of
evidence. Target: at most 10 s.

Builds everything for real in a throwaway data directory (SQLite, local artifacts): a run of
Gemma 3 270M with the shipped SAE on 10 prompts of ``bench/prompts.jsonl``, a signed-off case
citing 20 token ranges of its traces (2 features each, 16 tokens each), and a self-signed
development key. Then it times ``report_generate`` (collect, redact, render, sign, store) on
``--repeat`` such cases and prints the median, with a breakdown of one more generation by stage.
The model cache is shared with ``var/models`` so the model is not dequantised again.

    .venv/bin/python bench/report.py [--repeat 3] [--keep-pdf /tmp/report.pdf]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported at run time only after django.setup()
    from reports.models import AuditCase
    from traces.models import AnalysisRun

ROOT = Path(__file__).resolve().parent.parent
EVIDENCE = 20
PROMPTS = 10
RANGE_TOKENS = 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep-pdf", type=Path, help="write the last report here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="scopeweb-bench-report-"))
    try:
        _bench(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _bench(work: Path, args: argparse.Namespace) -> None:
    os.environ["SCOPEWEB_DATA_DIR"] = str(work)
    os.environ.setdefault("SCOPEWEB_MODEL_CACHE_DIR", str(ROOT / "var" / "models"))
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "SCOPEWEB_SIGNING_P12", "SCOPEWEB_TSA_URL"):
        os.environ.pop(name, None)
    os.environ.setdefault("SCOPEWEB_LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scopeweb.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("init_signing_key", "--common-name", "Scope Web benchmark", verbosity=0)
    run = _run()
    print(f"run {run.pk}: {run.traces.count()} traces, {run.tokens_done} tokens")

    from reports.services.reports import report_bytes, report_generate
    from scopeweb.accounts.actor import Actor

    seconds = []
    report = None
    for _ in range(max(args.repeat, 1)):
        case = _case(run)
        started = time.perf_counter()
        report = report_generate(case, actor=Actor.command())
        seconds.append(time.perf_counter() - started)
    assert report is not None
    if args.keep_pdf:
        args.keep_pdf.write_bytes(report_bytes(report))
    stages = _stages(_case(run))
    median = statistics.median(seconds)
    print(
        json.dumps(
            {
                "evidence": EVIDENCE,
                "pages": report.pages,
                "bytes": report.size_bytes,
                "seconds": [round(s, 2) for s in seconds],
                "stages_s": stages,
            },
            indent=1,
        )
    )
    verdict = "within" if median <= 10 else "OVER"
    print(
        f"report of a case with {EVIDENCE} pieces of evidence: {median:.2f} s median "
        f"({report.pages} pages) — {verdict} the 10 s target"
    )


def _run() -> AnalysisRun:
    from django.contrib.auth.models import User

    from scopeweb.accounts.actor import Actor
    from tests.traces.conftest import import_prompt_set
    from traces.services.runs import run_execute, run_start
    from traces.services.saes import sae_register_shipped

    lines = (ROOT / "bench" / "prompts.jsonl").read_text(encoding="utf-8").splitlines()
    prompts = [json.loads(line)["prompt"][:1500] for line in lines[:PROMPTS]]
    user = User.objects.create_user("bench-reviewer")
    prompt_set = import_prompt_set(user, prompts, name="report benchmark")
    sae = sae_register_shipped()[0]
    run = run_start(actor=Actor.command(), prompt_set=prompt_set, sae=sae, queue=False)
    run_execute(run.job_id)
    run.refresh_from_db()
    return run


def _case(run: AnalysisRun) -> AuditCase:
    from django.contrib.auth.models import User
    from django.utils import timezone

    from reports.models import AuditCase, CaseState, Evidence, SignOff
    from reports.services.evidence import evidence_pins
    from scopeweb.retention.models import RetentionProfile
    from traces.selectors.trace_tokens import trace_token_view

    opener, _ = User.objects.get_or_create(username="bench-reviewer")
    signer, _ = User.objects.get_or_create(username="bench-signer")
    case = AuditCase.objects.create(
        title="Benchmark case with twenty pieces of evidence",
        severity="high",
        profile=RetentionProfile.objects.get(code="FR"),
        opened_by=opener,
        summary="Twenty token ranges, each with two features, across ten traces.",
    )
    traces = list(run.traces.order_by("prompt__position"))
    for n in range(EVIDENCE):
        trace = traces[n % len(traces)]
        view = trace_token_view(trace)
        start = 1 + (n // len(traces)) * RANGE_TOKENS
        end = min(start + RANGE_TOKENS, trace.tokens)
        peaks: dict[int, float] = {}
        for token in view.tokens[start:end]:
            for feature, value in token.features:
                peaks[feature] = max(peaks.get(feature, 0.0), value)
        Evidence.objects.create(
            case=case,
            trace=trace,
            token_start=start,
            token_end=end,
            features=sorted(peaks, key=lambda f: -peaks[f])[:2],
            note=f"Range {n}: the strongest features of these tokens.",
            added_by=opener,
            pins=evidence_pins(trace),
            token_text="".join(t.text for t in view.tokens[start:end]),
        )
    SignOff.objects.create(case=case, signer=signer, statement="Reviewed.")
    case.state = CaseState.SIGNED_OFF
    case.signed_off_at = timezone.now()
    case.save()
    return case


def _stages(case: AuditCase) -> dict[str, float]:
    from reports.pdf.document import report_document
    from reports.pdf.render import render_pdf
    from reports.pdf.signing import sign_pdf, signing_key_load

    times: dict[str, float] = {}
    started = time.perf_counter()
    key = signing_key_load()
    document = report_document(
        case, signer_subject=key.subject, self_signed=key.self_signed, timestamped=False
    )
    times["collect_and_redact"] = time.perf_counter() - started
    started = time.perf_counter()
    rendered = render_pdf(document)
    times["render_weasyprint"] = time.perf_counter() - started
    started = time.perf_counter()
    sign_pdf(rendered.data, reason="benchmark", key=key)
    times["sign_pyhanko"] = time.perf_counter() - started
    return {name: round(value, 2) for name, value in times.items()}


if __name__ == "__main__":
    main()
