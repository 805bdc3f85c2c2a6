"""Production tracing, server side: manifests as versioned YAML, the ingest API (durable 202,
400 naming the problem and storing nothing, 429 with Retry-After, keys that read nothing),
stream runs recomputed teacher-forced on the real Gemma 3 270M, and /metrics."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from scopeweb.accounts.actor import Actor
from scopeweb.jobs.models import Job, JobState
from scopeweb.jobs.services import jobs_reap_stale
from scopeweb_tracer.tracer import GemmaTracer
from tests.conftest import client_for
from traces.bundle.chunks import decode_rows, read_chunk_files
from traces.bundle.format import canonical_top_k
from traces.engine import analyze, runtime
from traces.engine.analyze import analyze_chunk_multi
from traces.engine.model import LoadedModel
from traces.engine.passages import passage_ids
from traces.engine.prompt_ids import prompt_token_ids
from traces.engine.random_sae import write_random_sae
from traces.ingest.models import IngestBatch, IngestedRequest, ManifestVersion
from traces.models import AnalysisRun, SaeRecord, Trace
from traces.services.ingest import ingest_process, ingest_warm, stream_runs_close
from traces.services.manifests import (
    ManifestRefused,
    ingest_token_create,
    manifest_save,
    manifest_yaml,
    parse_manifest_yaml,
)
from traces.services.saes import sae_register

pytestmark = pytest.mark.django_db
TRACE_A = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACE_B = "0af7651916cd43dd8448eb211c80319c"


def _sae(name: str = "tiny") -> SaeRecord:
    return SaeRecord.objects.create(
        name=name, reference="/nowhere", model_name="google/gemma-3-270m", site="resid_post",
        layer=3, width=128, hook_point="model.layers.3.output", params_sha256="0" * 64,
    )  # fmt: skip


def _yaml(sae: str, rate: float = 1.0, profile: str = "US") -> str:
    return (
        f"service: chat-staging\ncheckpoint: google/gemma-3-270m\nsaes: [{sae}]\n"
        f"sample_rate: {rate}\nprofile: {profile}\nmax_tokens_capture: 256\ntop_k: 8\n"
    )


def _key(admin: User, sae: str, rate: float = 1.0, profile: str = "US") -> str:
    manifest = manifest_save(
        document=parse_manifest_yaml(_yaml(sae, rate, profile)), actor=Actor.command(admin)
    )
    return ingest_token_create(manifest=manifest, name="staging", actor=Actor.command(admin))[1]


def _post(key: str, body: Any, path: str = "/api/ingest/v1/traces", **extra: Any) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Client().post(
        path,
        data=data,
        content_type=extra.pop("content_type", "application/json"),
        HTTP_AUTHORIZATION=f"Token {key}",
        **extra,
    )


def _request(trace_id: str, text: str, completion: str = "") -> dict[str, Any]:
    return {
        "trace_id": trace_id,
        "messages": [{"role": "user", "content": text}],
        "completion": completion,
        "tags": {"route": "/v1/chat"},
        "input_tokens": 3,
    }


# --- manifests -------------------------------------------------------------------------------


def test_a_manifest_round_trips_through_yaml_as_new_versions(admin: User) -> None:
    _sae()
    manifest = manifest_save(
        document=parse_manifest_yaml(_yaml("tiny")), actor=Actor.command(admin)
    )
    exported = manifest_yaml(manifest)
    assert "service: chat-staging" in exported and "version: 1" in exported
    again = manifest_save(document=parse_manifest_yaml(exported), actor=Actor.command(admin))
    assert again.pk == manifest.pk and again.version == 2
    assert list(ManifestVersion.objects.values_list("version", flat=True)) == [2, 1]
    assert ManifestVersion.objects.get(version=2).document["saes"] == ["tiny"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("service: [unclosed\n", "line 2"),
        ("- a list\n", "must be a mapping"),
    ],
)
def test_bad_yaml_is_refused_with_where(text: str, expected: str) -> None:
    with pytest.raises(ManifestRefused, match=expected):
        parse_manifest_yaml(text)


def test_schema_problems_name_their_field() -> None:
    with pytest.raises(ManifestRefused) as caught:
        parse_manifest_yaml(_yaml("tiny", rate=2.0) + "colour: blue\n")
    fields = {problem["field"] for problem in caught.value.problems}
    assert fields == {"sample_rate", "(top)"}


def test_unknown_saes_and_profiles_are_named(admin: User) -> None:
    with pytest.raises(ManifestRefused, match="not in the registry: tiny"):
        manifest_save(document=parse_manifest_yaml(_yaml("tiny")), actor=Actor.command(admin))
    _sae()
    with pytest.raises(ManifestRefused, match="No retention profile has the code 'XX'"):
        manifest_save(
            document=parse_manifest_yaml(_yaml("tiny", profile="XX")), actor=Actor.command(admin)
        )


# --- the ingest API --------------------------------------------------------------------------


def test_sampled_requests_are_durable_before_202(admin: User) -> None:
    _sae()
    key = _key(admin, "tiny")
    answer = _post(key, {"traces": [_request(TRACE_A, "Hi"), _request(TRACE_B, "Hello")]})
    assert answer.status_code == 202, answer.content
    assert answer.json()["sampled"] == 2
    batch = IngestBatch.objects.get()
    assert batch.state == IngestBatch.State.PENDING and batch.records == 2
    originals = json.loads(default_storage.open(batch.path).read())
    assert [o["trace_id"] for o in originals] == [TRACE_A, TRACE_B]
    again = _post(key, {"traces": [_request(TRACE_A, "Hi")]})
    assert again.status_code == 202 and again.json()["duplicates"] == 1
    assert IngestBatch.objects.count() == 1 and IngestedRequest.objects.count() == 2


def test_the_manifests_sampler_decides(admin: User) -> None:
    _sae()
    key = _key(admin, "tiny", rate=0.0)
    answer = _post(key, {"traces": [_request(TRACE_A, "Hi")]})
    assert answer.status_code == 202 and answer.json()["not_sampled"] == 1
    assert not IngestBatch.objects.exists()


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"{not json", "application/json", "line 1"),
        ({"traces": [{"trace_id": "xyz", "prompt": "Hi"}]}, "application/json", "trace_id"),
        ({"traces": [{"trace_id": TRACE_A}]}, "application/json", "prompt"),
        (b"\xff\xfe", "application/json", "UTF-8"),
        ({"traces": []}, "text/plain", "Content-Type"),
    ],
)
def test_bad_payloads_get_400_and_store_nothing(
    admin: User, body: Any, content_type: str, expected: str
) -> None:
    _sae()
    answer = _post(_key(admin, "tiny"), body, content_type=content_type)
    assert answer.status_code == 400, answer.content
    assert expected in answer.json()["detail"]
    assert not IngestBatch.objects.exists() and not IngestedRequest.objects.exists()


def test_a_full_queue_answers_429_with_retry_after(admin: User, settings: Any) -> None:
    _sae()
    key = _key(admin, "tiny")
    settings.INGEST_QUEUE_MAX = 1
    assert _post(key, {"traces": [_request(TRACE_A, "Hi")]}).status_code == 202
    answer = _post(key, {"traces": [_request(TRACE_B, "Hi")]})
    assert answer.status_code == 429 and answer["Retry-After"] == "30"
    assert IngestedRequest.objects.count() == 1


def test_ingest_keys_read_nothing_and_people_cannot_ingest(admin: User, reviewer: User) -> None:
    _sae()
    key = _key(admin, "tiny")
    for path in ("/api/runs/", "/api/prompt-sets/", "/api/cases/"):
        assert Client().get(path, HTTP_AUTHORIZATION=f"Token {key}").status_code == 401
    body = json.dumps({"traces": [_request(TRACE_A, "Hi")]})
    answer = client_for(reviewer).post("/api/ingest/v1/traces", body, "application/json")
    assert answer.status_code == 401
    assert _post("swi_wrong", {"traces": []}).status_code == 401


def test_metrics_need_the_scrape_token(admin: User, settings: Any) -> None:
    _sae()
    key = _key(admin, "tiny")
    _post(key, {"traces": [_request(TRACE_A, "Hi")]})
    settings.METRICS_TOKEN = "scrape-me"
    assert Client().get("/metrics").status_code == 401
    answer = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me")
    assert answer.status_code == 200
    text = answer.content.decode()
    assert 'scopeweb_ingest_queue_depth{service="chat-staging"} 1.0' in text
    assert 'scopeweb_ingest_sampled_total{service="chat-staging"} 1.0' in text
    assert "scopeweb_ingest_trace_bytes_bucket" in text
    # What a Prometheus server reads: the exposition format parses, family by family.
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert families["scopeweb_ingest_trace_bytes"].type == "histogram"
    assert families["scopeweb_ingest_sampled"].type == "counter"
    assert answer["Content-Type"].startswith("text/plain; version=")


# --- stream runs on the real model -----------------------------------------------------------


@pytest.fixture(scope="module")
def folder(gemma: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    sequences = [ids[:96] for ids in passage_ids(gemma)[:6]]
    root = tmp_path_factory.mktemp("ingest")
    return write_random_sae(
        gemma, root, site="resid_post", layer=3, width=2048, sequences=sequences
    )


@pytest.fixture
def _worker_model(gemma: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(runtime._models, ("google/gemma-3-270m", "float32"), gemma)
    monkeypatch.setattr(runtime, "default_dtype", lambda: "float32")


@pytest.mark.usefixtures("_worker_model")
@pytest.mark.model
def test_batches_become_chunks_of_the_days_stream_run(
    admin: User, gemma: LoadedModel, folder: Path
) -> None:
    record = sae_register(folder)
    key = _key(admin, record.name, profile="UK")
    texts = ["Write to jane.doe@example.com about the river bank.", "How do I bake bread?"]
    _post(key, {"traces": [_request(TRACE_A, texts[0], " Sure, I will write.")]})
    _post(key, {"traces": [_request(TRACE_B, texts[1], " Mix flour and water.")]})
    batches = list(IngestBatch.objects.order_by("received_at"))
    for batch in batches:
        ingest_process(batch.pk)
    assert ingest_process(batches[0].pk).state == IngestBatch.State.DONE  # a redelivery: no-op
    run = AnalysisRun.objects.get(stream_manifest__service="chat-staging")
    assert (run.chunks_done, run.prompts_done, run.prompt_set.prompt_count) == (2, 2, 2)
    traces = list(Trace.objects.filter(run=run).order_by("chunk"))
    assert [t.chunk for t in traces] == [0, 1]
    assert all(t.tokens > t.prompt_tokens for t in traces)  # the completion was read
    first = traces[0].prompt
    assert "jane.doe" not in first.text and "[EMAIL" in first.text  # UK: redacted before storage
    for batch in batches:
        assert not default_storage.exists(batch.path)
    request = IngestedRequest.objects.get(otel_trace_id=TRACE_A)
    assert request.trace_id == traces[0].pk
    assert "the span's 3" in request.token_check
    # The prompt's tokens read as an offline analysis reads them: the completion after them
    # changes nothing before it.
    arrays = decode_rows(read_chunk_files(run.artifact_prefix, 1), top_k=8)
    sae = runtime.sae_for(str(folder), gemma)
    offline = analyze_chunk_multi(gemma, [sae], [(0, texts[1])], top_k=8, capture_limit=256)[0]
    n = traces[1].prompt_tokens
    row = traces[1].row
    np.testing.assert_array_equal(arrays["top_idx"][row : row + n], offline.arrays["top_idx"][:n])
    # The trace page says where the trace came from; the run cannot be cancelled, only closed.
    page = client_for(admin).get(f"/traces/{traces[0].pk}/").content.decode()
    assert TRACE_A in page and "recomputed teacher-forced" in page
    client_for(admin).post(f"/runs/{run.pk}/cancel/")
    assert not AnalysisRun.objects.get(pk=run.pk).cancel_requested
    # Beat's reaper leaves a quiet stream alone; the day's end closes it like a finished run.
    Job.objects.filter(pk=run.job_id).update(updated_at=timezone.now() - timedelta(days=1))
    jobs_reap_stale()
    assert run.stream_day is not None
    assert stream_runs_close(today=run.stream_day) == 0
    assert stream_runs_close(today=run.stream_day + timedelta(days=1)) == 1
    run.refresh_from_db()
    assert run.job.state == JobState.SUCCEEDED and run.manifest_sha256
    assert run.summary["traces"] == 2


def _traced(gemma: LoadedModel, folder: Path, name: str) -> list[dict[str, Any]]:
    """What a tracer in the serving process ships for one request."""
    shipped: list[dict[str, Any]] = []
    tracer = GemmaTracer(
        gemma.model,
        manifest={"sample_rate": 1.0, "top_k": 8, "max_tokens_capture": 256},
        saes={name: runtime.sae_for(str(folder), gemma)},
        ship=shipped.append,
        decode=gemma.tokenizer.decode,
    )
    text = "How do I bake bread?"
    tracer.generate(
        torch.tensor([prompt_token_ids(gemma, [text])[0]]),
        request=tracer.begin(trace_id=TRACE_A),
        prompt=text,
        max_new_tokens=4,
        do_sample=False,
        pad_token_id=0,
    )
    assert tracer.drain()
    travelled: list[dict[str, Any]] = json.loads(json.dumps(shipped))  # as it travels
    return travelled


@pytest.mark.usefixtures("_worker_model")
@pytest.mark.model
def test_a_tracers_features_are_stored_without_a_forward_pass(
    admin: User, gemma: LoadedModel, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = sae_register(folder)
    shipped = _traced(gemma, folder, record.name)
    assert _post(_key(admin, record.name), {"traces": shipped}).status_code == 202

    def no_forward(*_: Any, **__: Any) -> None:
        raise AssertionError("the tracer's features were recomputed")

    monkeypatch.setattr(analyze, "analyze_chunk_multi", no_forward)
    ingest_process(IngestBatch.objects.get().pk)
    request = IngestedRequest.objects.get()
    assert request.activations.startswith("the tracer's")
    assert request.overhead_ms is not None and request.overhead_ms >= 0
    assert request.trace is not None
    arrays = decode_rows(read_chunk_files(request.trace.run.artifact_prefix, 0), top_k=8)
    features = shipped[0]["features"]
    assert arrays["token_ids"].tolist() == features["token_ids"]
    columns = features["saes"][record.name]
    expected_idx, expected_val = canonical_top_k(
        np.array(columns["top_idx"]), np.array(columns["top_val"], dtype=np.float32)
    )
    width = expected_idx.shape[1]
    np.testing.assert_array_equal(arrays["top_idx"][:, :width], expected_idx)
    np.testing.assert_array_equal(arrays["top_val"][:, :width], expected_val)
    assert request.trace.prompt_tokens == features["prompt_tokens"]


@pytest.mark.usefixtures("_worker_model")
@pytest.mark.model
def test_features_that_do_not_check_out_are_recomputed(
    admin: User, gemma: LoadedModel, folder: Path
) -> None:
    record = sae_register(folder)
    shipped = _traced(gemma, folder, record.name)
    shipped[0]["features"]["saes"][record.name]["top_idx"][1][0] = 10**6
    assert _post(_key(admin, record.name), {"traces": shipped}).status_code == 202
    ingest_process(IngestBatch.objects.get().pk)
    request = IngestedRequest.objects.get()
    assert request.activations.startswith("recomputed teacher-forced")
    assert "outside" in request.activations
    assert request.trace is not None and request.trace.tokens > request.trace.prompt_tokens


def test_the_manifest_command_imports_exports_and_makes_keys(tmp_path: Path) -> None:
    _sae()
    source = tmp_path / "staging.yaml"
    source.write_text(_yaml("tiny"))
    out = io.StringIO()
    call_command("manifest", "import", str(source), stdout=out)
    assert "saved chat-staging version 1" in out.getvalue()
    out = io.StringIO()
    call_command("manifest", "export", "chat-staging", stdout=out)
    assert parse_manifest_yaml(out.getvalue())["saes"] == ["tiny"]
    out = io.StringIO()
    call_command("manifest", "token", "chat-staging", "ci", stdout=out)
    key = out.getvalue().strip()
    assert key.startswith("swi_")
    assert _post(key, {"traces": [_request(TRACE_A, "Hi")]}).status_code == 202
    source.write_text(_yaml("tiny", rate=7))
    with pytest.raises(CommandError, match="sample_rate"):
        call_command("manifest", "import", str(source))
    with pytest.raises(CommandError, match="No manifest for the service 'nope'"):
        call_command("manifest", "export", "nope")


@pytest.mark.usefixtures("_worker_model")
@pytest.mark.model
def test_an_ingest_worker_warms_up_its_manifests(admin: User, folder: Path) -> None:
    record = sae_register(folder)
    _key(admin, record.name)
    assert not SaeRecord.objects.get(pk=record.pk).target_mean
    assert ingest_warm() == ["chat-staging: google/gemma-3-270m, 1 SAEs"]
    assert SaeRecord.objects.get(pk=record.pk).target_mean  # measured once, before any request


@pytest.mark.usefixtures("_worker_model")
@pytest.mark.model
def test_a_manifest_that_keeps_no_completions_stores_the_prompt_alone(
    admin: User, gemma: LoadedModel, folder: Path
) -> None:
    record = sae_register(folder)
    shipped = _traced(gemma, folder, record.name)
    document = parse_manifest_yaml(_yaml(record.name) + "keep_completions: false\n")
    manifest = manifest_save(document=document, actor=Actor.command(admin))
    _, key = ingest_token_create(manifest=manifest, name="k", actor=Actor.command(admin))
    assert _post(key, {"traces": shipped}).status_code == 202
    batch = IngestBatch.objects.get()
    kept = json.loads(default_storage.open(batch.path).read())[0]
    assert kept["completion"] == "" and kept["features"] is None
    ingest_process(batch.pk)
    request = IngestedRequest.objects.get()
    assert request.trace is not None and request.output_tokens is None
    assert request.trace.tokens == request.trace.prompt_tokens
    assert request.trace.completion == ""
