"""Logit lens and decoder neighbours: the blocked engine against the dense product, the job that
stores them per SAE, the feature page that reads them, and one run on the real shipped SAE."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow.parquet as pq
import pytest
import torch
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.urls import reverse

from scopeweb.accounts.actor import Actor
from scopeweb.jobs.models import Job, JobKind, JobState
from tests.conftest import client_for
from tests.traces.engine_fakes import sae_params, tiny_gemma3, write_sae_folder
from traces.engine.feature_stats import (
    decoder_neighbours,
    feature_stats,
    logit_lens,
    unembedding,
)
from traces.models import SaeRecord
from traces.services.annotations import annotation_save
from traces.services.feature_stats import (
    LOGIT_LENS,
    NEIGHBOURS,
    feature_stats_execute,
    feature_stats_folder,
    feature_stats_start,
)
from traces.services.saes import sae_register, sae_register_shipped, shipped_sae_folders

pytestmark = pytest.mark.django_db


def fake_decode(ids: list[int]) -> list[str]:
    return [f"▁tok{i}" for i in ids]


# --- engine ----------------------------------------------------------------------------------


def test_unembedding_is_the_tied_input_embedding() -> None:
    model: Any = tiny_gemma3()
    w_u = unembedding(model)
    assert tuple(w_u.shape) == (300, 64)
    assert torch.equal(w_u, model.get_input_embeddings().weight)


def test_blocked_logit_lens_equals_the_dense_product() -> None:
    w_dec = sae_params()["w_dec"]  # [128, 64]
    w_u = unembedding(tiny_gemma3())  # [300, 64]
    # Blocks of 24 leave a ragged last block (128 = 5 x 24 + 8).
    top_ids, top_val, low_ids, low_val = logit_lens(w_dec, w_u, k=10, block=24)
    assert top_ids.shape == top_val.shape == low_ids.shape == (128, 10)
    dense = w_dec @ w_u.T  # [128, 300]
    for row in (0, 23, 24, 127):
        high = dense[row].topk(10)
        low = dense[row].topk(10, largest=False)
        assert top_ids[row].tolist() == high.indices.tolist()
        assert low_ids[row].tolist() == low.indices.tolist()
        assert torch.allclose(torch.from_numpy(top_val[row]), high.values, atol=1e-5)
        assert torch.allclose(torch.from_numpy(low_val[row]), low.values, atol=1e-5)
    assert (top_val[:, :-1] >= top_val[:, 1:]).all() and (low_val[:, :-1] <= low_val[:, 1:]).all()


def test_decoder_neighbours_are_the_highest_cosines_and_never_the_feature_itself() -> None:
    w_dec = sae_params()["w_dec"]
    w_dec[5] = w_dec[9] * 3  # the same direction, another length: cosine 1
    ids, cos = decoder_neighbours(w_dec, k=10, block=50)
    assert not (ids == torch.arange(128)[:, None].numpy()).any()
    assert ids[5, 0] == 9 and ids[9, 0] == 5 and cos[5, 0] == pytest.approx(1.0, abs=1e-5)
    unit = torch.nn.functional.normalize(w_dec, dim=1)
    dense = unit @ unit.T
    dense.fill_diagonal_(-2)
    for row in (0, 64, 127):
        best = dense[row].topk(10)
        assert ids[row].tolist() == best.indices.tolist()
        assert torch.allclose(torch.from_numpy(cos[row]), best.values, atol=1e-5)


def test_feature_stats_reports_progress_by_block() -> None:
    seen: list[tuple[int, int]] = []
    stats = feature_stats(
        sae_params()["w_dec"],
        unembedding(tiny_gemma3()),
        block=50,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(50, 128), (100, 128), (128, 128)]
    assert stats.d_sae == 128 and stats.compute_dtype == "float32"


def test_a_bfloat16_model_gets_a_float32_logit_lens() -> None:
    w_dec, w_u = sae_params()["w_dec"], unembedding(tiny_gemma3())
    stats = feature_stats(w_dec, w_u.to(torch.bfloat16))
    assert stats.compute_dtype == "float32"
    expected = (w_dec[0] @ w_u.to(torch.bfloat16).float().T).topk(10).indices.tolist()
    assert stats.promoted_ids[0].tolist() == expected


# --- service and page ------------------------------------------------------------------------


@pytest.fixture
def tiny_sae(tmp_path: Path, db: None) -> SaeRecord:
    return sae_register(write_sae_folder(tmp_path / "resid_post" / "layer_2"), name="tiny-sae")


@pytest.fixture
def tiny_runtime(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The worker's model cache answering with the tiny Gemma 3; the SAE loads for real."""
    loaded = SimpleNamespace(
        model=tiny_gemma3(),
        weights_sha256="f" * 64,
        d_model=64,
        n_layers=4,
        device=torch.device("cpu"),
        dtype=torch.float32,
    )
    loaded.text_config = loaded.model.config
    monkeypatch.setattr("traces.engine.runtime.model_for", lambda name, dtype: loaded)
    monkeypatch.setattr("traces.services.feature_stats.tokenizer_decode", fake_decode)
    return loaded


def _read(name: str) -> Any:
    with default_storage.open(name, "rb") as handle:
        return pq.read_table(io.BytesIO(handle.read()))


def test_the_job_stores_both_artifacts_and_the_page_shows_them(
    tiny_sae: SaeRecord, tiny_runtime: Any, reviewer: User, auditor: User
) -> None:
    job = feature_stats_start(tiny_sae, actor=Actor.command(reviewer), queue=False)
    assert job.kind == JobKind.FEATURE_STATS and job.params["sae_id"] == tiny_sae.pk
    folder = feature_stats_execute(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED, job.error
    assert folder == f"saes/tiny-sae/{tiny_sae.params_sha256[:16]}"
    assert job.result["features"] == 128 and job.progress_done == 128

    lens, near = _read(f"{folder}/{LOGIT_LENS}"), _read(f"{folder}/{NEIGHBOURS}")
    assert lens.num_rows == near.num_rows == 128
    assert b"scopeweb-feature-stats/1" in lens.schema.metadata[b"scopeweb"]
    w_dec = sae_params()["w_dec"]
    expected = (w_dec[3] @ unembedding(tiny_runtime.model).T).topk(10).indices.tolist()
    row = lens.slice(3, 1).to_pylist()[0]
    assert row["feature"] == 3 and row["promoted_ids"] == expected

    neighbour = near.slice(3, 1).to_pylist()[0]["neighbour_ids"][0]
    annotation_save(
        sae=tiny_sae, index=neighbour, actor=Actor.command(reviewer), values={"label": "my twin"}
    )
    url = reverse("feature_detail", kwargs={"sae_name": tiny_sae.name, "index": 3})
    for user in (reviewer, auditor):  # from the weights: every reader sees them
        page = client_for(user).get(url).content.decode()
        assert f"·tok{expected[0]}" in page and "Suppresses" in page
        assert f'href="/saes/tiny-sae/features/{neighbour}/"' in page and "my twin" in page
        assert "Compute the logit lens" not in page

    # The label suggestion now reads the promoted tokens too.
    response = client_for(reviewer).get(url, {"suggest": "1"})
    assert f"→ “tok{expected[0]}”" in response.context["form"].initial["label"]
    feature = reverse("api_feature", kwargs={"sae_name": "tiny-sae", "index": 3})
    lens_json = client_for(reviewer).get(feature).json()["lens"]
    assert [t["token_id"] for t in lens_json["promoted"]] == expected
    assert lens_json["neighbours"][0] == {
        "index": neighbour,
        "cosine": pytest.approx(lens_json["neighbours"][0]["cosine"]),
        "label": "my twin",
    }
    api = reverse("api_feature_label_suggestion", kwargs={"sae_name": "tiny-sae", "index": 3})
    assert client_for(reviewer).get(api).json()["promoted"][:2] == [
        f"▁tok{expected[0]}",
        f"▁tok{expected[1]}",
    ]


def test_the_button_queues_one_job_and_the_page_says_computing(
    tiny_sae: SaeRecord, reviewer: User, auditor: User
) -> None:
    url = reverse("feature_detail", kwargs={"sae_name": tiny_sae.name, "index": 7})
    start = reverse("feature_stats_start", kwargs={"sae_name": tiny_sae.name})
    page = client_for(reviewer).get(url).content.decode()
    assert "Compute the logit lens" in page and f'action="{start}"' in page
    assert "Compute the logit lens" not in client_for(auditor).get(url).content.decode()
    assert client_for(auditor).post(start, {"index": 7}).status_code == 403

    response = client_for(reviewer).post(start, {"index": 7})
    assert response.status_code == 302 and response["Location"] == url
    client_for(reviewer).post(start, {"index": 7})  # a second click joins the first job
    jobs = Job.objects.filter(kind=JobKind.FEATURE_STATS)
    assert jobs.count() == 1 and jobs.get().created_by == reviewer
    page = client_for(reviewer).get(url).content.decode()
    assert "computing…" in page and "Compute the logit lens" not in page
    assert 'hx-trigger="every 5s"' in page
    # The poll renders the section alone.
    poll = client_for(reviewer).get(url, headers={"HX-Request": "true"}).content.decode()
    assert 'id="weights"' in poll and "computing…" in poll and "<html" not in poll


def test_a_failed_job_says_why_and_offers_the_button_again(
    tiny_sae: SaeRecord, reviewer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(name: str, dtype: str) -> Any:
        raise ValueError("no such checkpoint")

    monkeypatch.setattr("traces.engine.runtime.model_for", refuse)
    job = feature_stats_start(tiny_sae, actor=Actor.command(reviewer), queue=False)
    assert feature_stats_execute(job.pk) is None
    job.refresh_from_db()
    assert job.state == JobState.FAILED and "no such checkpoint" in job.error
    url = reverse("feature_detail", kwargs={"sae_name": tiny_sae.name, "index": 7})
    page = client_for(reviewer).get(url).content.decode()
    assert "The last computation failed" in page and "no such checkpoint" in page
    assert "Compute the logit lens" in page
    assert not default_storage.exists(f"{feature_stats_folder(tiny_sae)}/{LOGIT_LENS}")


# --- the real model --------------------------------------------------------------------------


@pytest.mark.skipif(not shipped_sae_folders(), reason="no SAE shipped yet")
@pytest.mark.model
def test_logit_lens_of_the_shipped_sae_on_gemma_3(reviewer: User) -> None:
    sae = sae_register_shipped()[0]
    out = io.StringIO()
    started = time.monotonic()
    call_command("logit_lens", sae.name, stdout=out)
    print(f"logit_lens {sae.name}: {time.monotonic() - started:.1f} s; {out.getvalue().strip()}")
    job = Job.objects.get(kind=JobKind.FEATURE_STATS)
    assert job.state == JobState.SUCCEEDED and job.result["features"] == sae.width == 4096
    folder = feature_stats_folder(sae)
    lens, near = _read(f"{folder}/{LOGIT_LENS}"), _read(f"{folder}/{NEIGHBOURS}")
    assert lens.num_rows == near.num_rows == 4096
    assert lens.column("feature").to_pylist() == list(range(4096))
    first = near.slice(0, 1).to_pylist()[0]
    assert 0 not in first["neighbour_ids"] and -1 <= min(first["neighbour_cosines"]) <= 1

    url = reverse("feature_detail", kwargs={"sae_name": sae.name, "index": 0})
    page = client_for(reviewer).get(url).content.decode()
    promoted = re.findall(r'<code class="piece" title="token id \d+">([^<]+)</code>', page)
    assert len(promoted) == 20 and all(promoted)  # 10 promoted and 10 suppressed, as strings
    assert "Nearest by decoder cosine" in page
