"""The operational loop on the real Gemma 3 270M: a chat request to the staging server (the
tracer installed, a 100 % manifest) is shipped by the tracer's shipper to the live ingest API,
analysed by the ingest service into the day's stream run, and reaches the triage queue."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from scopeweb.accounts.actor import Actor
from scopeweb_tracer.sampling import parse_traceparent
from scopeweb_tracer.shipper import Shipper
from traces.engine import runtime
from traces.engine.model import LoadedModel
from traces.engine.passages import passage_ids
from traces.engine.random_sae import write_random_sae
from traces.ingest.models import IngestBatch, IngestedRequest
from traces.models import FeatureAnnotation, TraceFeature
from traces.selectors.triage import triage_queue
from traces.services.ingest import ingest_process
from traces.services.manifests import (
    ingest_token_create,
    manifest_document,
    manifest_save,
    parse_manifest_yaml,
)
from traces.services.saes import sae_folder, sae_register
from traces.serving import StagingHTTPServer, StagingModel, staging_tracer

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(scope="module")
def folder(gemma: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    sequences = [ids[:96] for ids in passage_ids(gemma)[:6]]
    root = tmp_path_factory.mktemp("staging")
    return write_random_sae(
        gemma, root, site="resid_post", layer=3, width=2048, sequences=sequences
    )


@pytest.fixture
def staging(
    gemma: LoadedModel, folder: Path, admin: User, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Shipper]]:
    monkeypatch.setitem(runtime._models, ("google/gemma-3-270m", "float32"), gemma)
    monkeypatch.setattr(runtime, "default_dtype", lambda: "float32")
    record = sae_register(folder)
    document = parse_manifest_yaml(
        f"service: chat-staging\ncheckpoint: google/gemma-3-270m\nsaes: [{record.name}]\n"
        "sample_rate: 1.0\nprofile: US\nmax_tokens_capture: 256\ntop_k: 8\n"
    )
    manifest = manifest_save(document=document, actor=Actor.command(admin))
    _, key = ingest_token_create(manifest=manifest, name="staging", actor=Actor.command(admin))
    shipper = Shipper(f"{live_server.url}/api/ingest/v1/traces", key, flush_interval=0.05)
    tracer = staging_tracer(
        gemma,
        manifest_document(manifest),
        {record.name: runtime.sae_for(sae_folder(record), gemma)},
        shipper.submit,
    )
    server = StagingHTTPServer(("127.0.0.1", 0), StagingModel(gemma, tracer), "gemma-3-270m")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", shipper
    finally:
        server.shutdown()
        shipper.close()
        assert tracer.drain()


def _post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(  # noqa: S310 (a local test server)
        url, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}
    )
    return urllib.request.urlopen(request, timeout=120)  # noqa: S310 (a local test server)


def test_a_chat_request_reaches_the_triage_queue(staging: tuple[str, Shipper], admin: User) -> None:
    base, shipper = staging
    answer = _post(
        f"{base}/v1/chat/completions",
        {"messages": [{"role": "user", "content": "Tell me about the river bank."}],
         "max_tokens": 8},
        {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-00"},
    )  # fmt: skip
    body = json.loads(answer.read())
    assert body["object"] == "chat.completion" and body["usage"]["completion_tokens"] >= 1
    context = parse_traceparent(answer.headers["traceparent"])
    assert context is not None and context.sampled and f"{context.trace_id:032x}" == TRACE
    for _ in range(600):  # the tracer's encoder thread, then the shipper's batch
        if IngestBatch.objects.exists():
            break
        shipper.flush(0.1)
    batch = IngestBatch.objects.get()
    assert batch.via == "json"
    ingest_process(batch.pk)  # what the ingest worker runs
    request = IngestedRequest.objects.get(otel_trace_id=TRACE)
    assert request.trace is not None and request.activations.startswith("the tracer's")
    assert request.tags == {"route": "/v1/chat/completions"}
    # A reviewer watches the trace's strongest feature: the trace is in the queue.
    top = TraceFeature.objects.filter(trace=request.trace).order_by("-max_activation").first()
    assert top is not None
    FeatureAnnotation.objects.create(
        sae=request.trace.run.sae,
        index=top.feature,
        label="watched",
        tags=["jailbreak"],
        watch_threshold=top.max_activation / 2,
        updated_by=admin,
    )
    assert request.trace in list(triage_queue(admin))


def test_bad_requests_get_400_with_the_reason(staging: tuple[str, Shipper]) -> None:
    base, _ = staging
    with pytest.raises(urllib.error.HTTPError) as caught:
        _post(f"{base}/v1/chat/completions", {"messages": [{"role": "user"}]})
    assert caught.value.code == 400
    assert "content" in json.loads(caught.value.read())["error"]["message"]
