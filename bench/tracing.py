"""Tracing's latency budget (``make bench-tracing``): what the tracer adds to a Gemma 3 request.

The staging server of ``manage.py serve_gemma`` (``traces.serving``) serves Gemma 3 270M on this
machine, and one client drives it over HTTP with a fixed request mix (held-out passages cut to
16–200 tokens as completions and chats, 16 new tokens, greedy). Each request goes through five
configurations in turn: tracing off (no tracer at all), and the tracer at sample rates 0, 1 %,
5 % and 100 %, so the machine's noise of the moment falls on all five. Trace ids are fixed per
request, so each rate samples the same requests on every run.

For each configuration: latency p50 and p90, the added latency against tracing off at p50 and
p90, CPU seconds per request (the process's, encoder thread included: each configuration
waits for its encoder before its clock stops), the tracer's own reported overhead, and the
traces shipped with their size. The shipper sends to a local sink that answers 202 and counts
bytes (the ingest server's side is measured by ``make bench-pages``). Targets at 5 %: p50 +30 ms,
p90 +200 ms (the rollback thresholds of the brief). Results go to stdout and
``var/bench/tracing-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scopeweb.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from scopeweb_tracer.hooks import hook_width  # noqa: E402
from scopeweb_tracer.sae import load_sae  # noqa: E402
from scopeweb_tracer.shipper import Shipper  # noqa: E402
from traces.engine.model import load_default_model  # noqa: E402
from traces.engine.passages import passage_texts  # noqa: E402
from traces.services.saes import shipped_sae_folders  # noqa: E402
from traces.serving import StagingHTTPServer, StagingModel, staging_tracer  # noqa: E402

RATES = (None, 0.0, 0.01, 0.05, 1.0)  # None: tracing off
TARGET_P50_MS, TARGET_P90_MS = 30.0, 200.0
NEW_TOKENS = 16


class Sink(BaseHTTPRequestHandler):
    """The ingest endpoint's stand-in for this measurement: 202, and the bytes counted."""

    received = {"bodies": 0, "bytes": 0, "traces": 0}
    overhead_ms: list[float] = []
    lock = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.lock:
            self.received["bodies"] += 1
            self.received["bytes"] += len(body)
            traces = json.loads(body)["traces"]
            self.received["traces"] += len(traces)
            self.overhead_ms.extend(float(t.get("overhead_ms", 0.0)) for t in traces)
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()


def request_mix(count: int) -> list[tuple[str, dict[str, Any], str]]:
    """(path, body, trace id) per request: completions and chats alternate."""
    texts = passage_texts()
    mix = []
    for i in range(count):
        words = texts[i % len(texts)].split()
        text = " ".join(words[: 12 + (i * 37) % 140])
        trace_id = f"{(i * 0x9E3779B97F4A7C15 + 1) % 2**128:032x}"
        if i % 2:
            body = {"messages": [{"role": "user", "content": text}], "max_tokens": NEW_TOKENS}
            mix.append(("/v1/chat/completions", body, trace_id))
        else:
            mix.append(("/v1/completions", {"prompt": text, "max_tokens": NEW_TOKENS}, trace_id))
    return mix


def send(base: str, path: str, body: dict[str, Any], trace_id: str) -> float:
    data = json.dumps(body).encode()
    headers = {
        "Content-Type": "application/json",
        "traceparent": f"00-{trace_id}-00f067aa0ba902b7-00",
    }
    request = urllib.request.Request(base + path, data, headers)  # noqa: S310 (localhost)
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=300) as answer:  # noqa: S310
        answer.read()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=120, help="requests per configuration")
    parser.add_argument("--quick", action="store_true", help="24 requests per configuration")
    args = parser.parse_args()
    count = 24 if args.quick else args.requests
    torch.manual_seed(0)
    loaded = load_default_model()
    folder = shipped_sae_folders()[0]
    sae = load_sae(
        str(folder), n_layers=loaded.n_layers, widths=lambda h: hook_width(loaded.text_config, h)
    )
    print(f"Gemma 3 270M float32 on {torch.get_num_threads()} threads; SAE {folder.name}")
    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    shipper = Shipper(f"http://127.0.0.1:{sink.server_address[1]}/", "bench", flush_interval=0.2)
    tracers = {
        rate: staging_tracer(
            loaded,
            {"sample_rate": rate, "top_k": 32, "max_tokens_capture": 1000},
            {"bench": sae},
            shipper.submit,
        )
        for rate in RATES
        if rate is not None
    }
    staging = StagingModel(loaded, None)
    server = StagingHTTPServer(("127.0.0.1", 0), staging, "gemma-3-270m")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    mix = request_mix(count)
    for path, body, trace_id in mix[:4]:  # warm-up
        send(base, path, body, trace_id)
    latency = {rate: [] for rate in RATES}  # type: dict[float | None, list[float]]
    cpu = dict.fromkeys(RATES, 0.0)
    for index, (path, body, trace_id) in enumerate(mix):
        for rate in RATES:
            staging.tracer = tracers.get(rate) if rate is not None else None
            started = time.process_time()
            latency[rate].append(send(base, path, body, trace_id))
            if staging.tracer is not None:
                staging.tracer.drain()
            cpu[rate] += time.process_time() - started
        if (index + 1) % 20 == 0:
            print(f"  {index + 1}/{count} requests", file=sys.stderr)
    shipper.flush(60)
    report(latency, cpu, tracers, count, Sink.received)


def report(
    latency: dict[float | None, list[float]],
    cpu: dict[float | None, float],
    tracers: dict[float, Any],
    count: int,
    received: dict[str, int],
) -> None:
    off = np.array(latency[None]) * 1000
    rows = []
    print(f"\n{count} requests per configuration, {NEW_TOKENS} new tokens each")
    print(f"{'configuration':<16}{'p50 ms':>9}{'p90 ms':>9}{'+p50':>8}{'+p90':>8}"
          f"{'CPU ms/req':>12}{'sampled':>9}")  # fmt: skip
    for rate in RATES:
        values = np.array(latency[rate]) * 1000
        p50, p90 = np.percentile(values, 50), np.percentile(values, 90)
        added50, added90 = p50 - np.percentile(off, 50), p90 - np.percentile(off, 90)
        sampled = tracers[rate].counts["sampled"] if rate is not None else 0
        name = "tracing off" if rate is None else f"tracer {rate:.0%}"
        print(f"{name:<16}{p50:>9.0f}{p90:>9.0f}{added50:>+8.0f}{added90:>+8.0f}"
              f"{cpu[rate] / count * 1000:>12.0f}{sampled:>9}")  # fmt: skip
        rows.append({
            "rate": rate, "p50_ms": p50, "p90_ms": p90, "added_p50_ms": added50,
            "added_p90_ms": added90, "cpu_ms_per_request": cpu[rate] / count * 1000,
            "sampled": sampled,
        })  # fmt: skip
    five = next(r for r in rows if r["rate"] == 0.05)
    print(f"\nat 5 %: p50 {five['added_p50_ms']:+.0f} ms (target ≤ +{TARGET_P50_MS:.0f}), "
          f"p90 {five['added_p90_ms']:+.0f} ms (target ≤ +{TARGET_P90_MS:.0f})")  # fmt: skip
    full = next(r for r in rows if r["rate"] == 1.0)
    base_cpu = rows[0]["cpu_ms_per_request"]
    print(f"at 100 %: p50 {full['added_p50_ms']:+.0f} ms, p90 {full['added_p90_ms']:+.0f} ms, "
          f"CPU {full['cpu_ms_per_request'] / base_cpu - 1:+.0%} per request")  # fmt: skip
    if received["traces"]:
        print(f"shipped {received['traces']} traces in {received['bodies']} batches, "
              f"{received['bytes'] / received['traces'] / 1024:.0f} KB a trace; the tracer's "
              f"own overhead p50 {np.percentile(Sink.overhead_ms, 50):.1f} ms, "
              f"p90 {np.percentile(Sink.overhead_ms, 90):.1f} ms")  # fmt: skip
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = ROOT / "var" / "bench" / f"tracing-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"requests": count, "rows": rows, "shipped": received}, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
