"""The tracer inside a serving process, on the real Gemma 3 270M: a sampled request's features
are those an offline analysis finds on the same tokens, an unsampled one runs untouched, and no
failure of the tracer reaches the request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from scopeweb_tracer.hooks import hook_width
from scopeweb_tracer.manifest import ManifestFileError, load_manifest
from scopeweb_tracer.sae import LoadedSae, load_sae
from scopeweb_tracer.tracer import GemmaTracer
from traces.bundle.format import round_values
from traces.engine.analyze import analyze_chunk_multi
from traces.engine.model import LoadedModel
from traces.engine.passages import passage_ids
from traces.engine.prompt_ids import prompt_token_ids
from traces.engine.random_sae import write_random_sae

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TEXT = "The river bank was closed after the flood, so we walked along the road."


@pytest.fixture(scope="module")
def saes(gemma: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoadedSae]:
    root = tmp_path_factory.mktemp("tracer")
    sequences = [ids[:96] for ids in passage_ids(gemma)[:6]]
    found = {}
    for site, layer in (("resid_post", 3), ("attn_out", 5)):
        folder: Path = write_random_sae(
            gemma, root, site=site, layer=layer, width=2048, sequences=sequences
        )
        found[f"{site}-{layer}"] = load_sae(
            str(folder),
            n_layers=gemma.n_layers,
            widths=lambda hook: hook_width(gemma.text_config, hook),
        )
    return found


def _tracer(gemma: LoadedModel, saes: dict[str, LoadedSae], rate: float, ship: Any) -> GemmaTracer:
    manifest = {"sample_rate": rate, "top_k": 8, "max_tokens_capture": 256}
    return GemmaTracer(
        gemma.model, manifest=manifest, saes=saes, ship=ship, decode=gemma.tokenizer.decode
    )


def _generate(tracer: GemmaTracer, gemma: LoadedModel, **options: Any) -> torch.Tensor:
    ids = torch.tensor([prompt_token_ids(gemma, [TEXT])[0]])
    return tracer.generate(
        ids,
        request=tracer.begin(trace_id=TRACE, tags={"route": "/v1/completions"}),
        prompt=TEXT,
        max_new_tokens=6,
        do_sample=False,
        pad_token_id=0,
        **options,
    )


def test_a_traced_request_has_the_offline_analysis_top_k(
    gemma: LoadedModel, saes: dict[str, LoadedSae]
) -> None:
    shipped: list[dict[str, Any]] = []
    tracer = _tracer(gemma, saes, 1.0, shipped.append)
    output = _generate(tracer, gemma)
    assert tracer.drain()
    [record] = shipped
    assert record["trace_id"] == TRACE and record["prompt"] == TEXT
    assert record["completion"] == gemma.tokenizer.decode(
        output[0, record["input_tokens"] :].tolist()
    )
    features = record["features"]
    ids = features["token_ids"]
    # The last generated token is sampled from the last pass and never read: one short.
    assert len(ids) == output.shape[1] - 1
    offline = analyze_chunk_multi(
        gemma, list(saes.values()), [(0, TEXT)], top_k=8, capture_limit=256,
        completions={0: gemma.tokenizer.decode(ids[features["prompt_tokens"] :])},
    )  # fmt: skip
    for name, result in zip(saes, offline, strict=True):
        assert result.arrays["token_ids"].tolist() == ids
        got = np.array(features["saes"][name]["top_idx"])
        want = result.arrays["top_idx"]
        # The prompt's pass is the offline pass; each generated token's pass reads the KV cache,
        # which rounds differently: the same sets, up to the order of near ties.
        same = [set(a) == set(b) for a, b in zip(got.tolist(), want.tolist(), strict=True)]
        assert np.mean(same) >= 0.95, name
        assert all(same[: features["prompt_tokens"]]), name
        # Stored values keep 5 mantissa bits (traces.bundle.format.round_values): one step apart
        np.testing.assert_allclose(
            np.sort(round_values(np.array(features["saes"][name]["top_val"])), 1),
            np.sort(result.arrays["top_val"], 1),
            atol=1e-2, rtol=2**-5,
        )  # fmt: skip
    assert record["overhead_ms"] >= 0


def test_an_unsampled_request_runs_untouched(
    gemma: LoadedModel, saes: dict[str, LoadedSae]
) -> None:
    shipped: list[dict[str, Any]] = []
    tracer = _tracer(gemma, saes, 0.0, shipped.append)
    traced = _generate(tracer, gemma)
    ids = torch.tensor([prompt_token_ids(gemma, [TEXT])[0]])
    plain = gemma.model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(traced, plain)
    assert tracer.drain() and shipped == []
    assert tracer.counts["not_sampled"] == 1


def test_no_failure_of_the_tracer_reaches_the_request(
    gemma: LoadedModel, saes: dict[str, LoadedSae]
) -> None:
    def broken(_: dict[str, Any]) -> bool:
        raise ConnectionError("the shipper is gone")

    tracer = _tracer(gemma, saes, 1.0, broken)
    assert _generate(tracer, gemma).shape[1] > 1
    assert tracer.drain()
    assert tracer.counts["failed"] == 1


def test_a_traced_forward_ships_its_tokens(gemma: LoadedModel, saes: dict[str, LoadedSae]) -> None:
    shipped: list[dict[str, Any]] = []
    tracer = _tracer(gemma, saes, 1.0, shipped.append)
    ids = prompt_token_ids(gemma, [TEXT])[0]
    request = tracer.begin(trace_id=TRACE)
    logits = tracer.forward(torch.tensor([ids]), request=request, prompt=TEXT, prompt_tokens=5)
    assert logits.logits.shape[1] == len(ids)
    assert tracer.drain()
    [record] = shipped
    features = record["features"]
    assert features["token_ids"] == ids and features["prompt_tokens"] == 5
    assert record["completion"] == gemma.tokenizer.decode(ids[5:])


def test_the_tracer_reads_the_exported_manifest(tmp_path: Path) -> None:
    exported = tmp_path / "chat-staging-v3.yaml"
    exported.write_text(
        "# Scope Web instrumentation manifest\nschema: scopeweb.instrumentation-manifest/v1\n"
        "service: chat-staging\nversion: 3\nsample_rate: 0.05\nrules: []\n"
    )
    assert load_manifest(exported)["sample_rate"] == 0.05
    exported.write_text("sample_rate: 5\n")
    with pytest.raises(ManifestFileError, match="sample_rate must be a number from 0 to 1"):
        load_manifest(exported)
