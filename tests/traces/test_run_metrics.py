"""Run metrics on the run page: distributions as SVG histograms, the features that fire most
often and most strongly, and the flagged, unsafe output and anomaly rates. No model is loaded:
rows come from factories, token arrays from ``traces.bundle.chunks.write_chunk``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from tests.conftest import client_for
from tests.factories import make_prompt_set, make_run, make_sae, make_trace
from traces.bundle.chunks import write_chunk
from traces.display.plots import histogram_svg, tick_label, ticks
from traces.models import AnalysisRun, FeatureAnnotation, Prompt, SaeRecord
from traces.selectors.run_metrics import percentile_band, run_metrics

pytestmark = pytest.mark.django_db
SVG = "{http://www.w3.org/2000/svg}"


def _run(sae: SaeRecord, prompts: int, **fields: Any) -> AnalysisRun:
    """A finished run whose prompt set holds ``prompts`` prompts (no traces yet)."""
    prompt_set = make_prompt_set()
    Prompt.objects.bulk_create(
        Prompt(prompt_set=prompt_set, position=p, line=p + 1, text=f"prompt {p}", token_count=5)
        for p in range(2, prompts)
    )
    return make_run(sae=sae, prompt_set=prompt_set, **fields)


def _watch(sae: SaeRecord, index: int, threshold: float, tags: list[str] | None = None) -> None:
    FeatureAnnotation.objects.create(
        sae=sae, index=index, label=f"feature {index}", tags=tags or ["deception"],
        watch_threshold=threshold,
    )  # fmt: skip


def _xml(svg: str) -> ET.Element:
    """Parse ``svg``, raising on anything that is not well-formed XML."""
    return ET.fromstring(svg)  # noqa: S314 (the helper's own output, not untrusted data)


def _bars(svg: str) -> list[ET.Element]:
    root = _xml(svg)
    assert root.tag == f"{SVG}svg"
    return [r for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]


# --- the histogram helper ------------------------------------------------------------------


def test_histogram_is_valid_svg_with_one_bar_per_bin_and_escaped_text() -> None:
    values = [float(v) for v in range(100)]
    svg = histogram_svg(values, 12, 'L0 <per> "trace" & more', title="L0 & co")
    bars = _bars(svg)
    assert len(bars) == 12
    counts = [int(b.find(f"{SVG}title").text.split(": ")[1].split()[0]) for b in bars]  # type: ignore[union-attr]
    assert sum(counts) == 100
    root = _xml(svg)
    assert root.find(f"{SVG}title").text == "L0 & co"  # type: ignore[union-attr]
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert 'L0 <per> "trace" & more' in texts
    assert {"0", "20", "40", "60", "80"} <= set(texts)  # x ticks
    assert {"0", "5", "10"} <= set(texts)  # y ticks (traces per bin: 8 or 9)


def test_histogram_of_one_value_no_values_and_a_band() -> None:
    assert len(_bars(histogram_svg([3.0, 3.0], 5, "x"))) == 5
    empty = histogram_svg([], 5, "x")
    assert _bars(empty) == [] and "no data" in empty
    banded = _xml(histogram_svg([1.0, 2.0, 3.0], 4, "x", band=(0.5, 10.0)))
    band = [g for g in banded.iter(f"{SVG}g") if g.get("class") == "band"]
    assert len(band) == 1


def test_ticks_are_round_numbers_inside_the_range() -> None:
    assert ticks(0, 100) == [0, 20, 40, 60, 80, 100]
    assert ticks(0.013, 0.4) == [0.1, 0.2, 0.3, 0.4]


def test_tick_labels_of_large_and_tiny_values_stay_apart() -> None:
    # Residual norms: ticks 500 apart around 13,000 once all read "1e+04".
    labels = [tick_label(t) for t in ticks(12_100, 14_600)]
    assert labels == ["12.5k", "13k", "13.5k", "14k", "14.5k"]
    assert tick_label(2_500_000) == "2.5M" and tick_label(0.00025) == "0.00025"
    assert tick_label(0) == "0" and tick_label(0.25) == "0.25" and tick_label(2500) == "2500"


# --- rates ---------------------------------------------------------------------------------


def test_flagged_rate_counts_traces_over_a_watched_threshold() -> None:
    sae = make_sae()
    run = _run(sae, 5)
    _watch(sae, 5, threshold=2.0)
    _watch(sae, 6, threshold=1.0, tags=["style"])  # no safety tag: not watched
    make_trace(run, 0, {5: (2.5, 1, 1)})  # over
    make_trace(run, 1, {5: (2.0, 3, 1)})  # at the threshold: not over
    make_trace(run, 2, {6: (9.0, 1, 1)})  # only the unwatched feature
    make_trace(run, 3, {5: (7.0, 1, 2), 6: (1.0, 1, 1)})  # over
    make_trace(run, 4)
    metrics = run_metrics(run)
    assert (metrics.flagged.count, metrics.flagged.total) == (2, 5)
    assert metrics.flagged.percent == "40.0 %"
    assert metrics.unsafe_output.rate is None  # no generation
    assert metrics.anomalies is None and metrics.baseline_error == ""


def test_a_run_without_watched_features_flags_nothing() -> None:
    run = _run(make_sae(), 2)
    make_trace(run, 0, {5: (9.0, 1, 1)})
    assert run_metrics(run).flagged.count == 0


def test_top_features_by_traces_and_by_peak_carry_their_labels() -> None:
    sae = make_sae()
    run = _run(sae, 3)
    _watch(sae, 9, threshold=4.0)
    make_trace(run, 0, {1: (1.0, 1, 1), 9: (8.0, 1, 1)})
    make_trace(run, 1, {1: (1.5, 1, 1), 2: (0.5, 1, 1)})
    make_trace(run, 2, {1: (0.7, 1, 1), 2: (0.6, 1, 1)})
    metrics = run_metrics(run)
    assert [(f.feature, f.traces) for f in metrics.most_traces] == [(1, 3), (2, 2), (9, 1)]
    strongest = metrics.strongest[0]
    assert (strongest.feature, strongest.peak, strongest.label) == (9, 8.0, "feature 9")
    assert strongest.safety_tags == ["deception"] and strongest.threshold == 4.0


def test_anomaly_rate_uses_the_baseline_p1_p99_band() -> None:
    sae = make_sae()
    baseline = _run(sae, 100)
    for p in range(100):
        make_trace(baseline, p, l0=float(p + 1), fvu=0.2, resid_norm=100.0 + p)
    band = percentile_band([float(p + 1) for p in range(100)])
    assert (band.low, band.high) == (1.0, 99.0)  # observed values, not interpolated
    assert percentile_band([3.0, 1.0, 2.0]) == (1.0, 3.0)  # a small baseline holds itself

    run = _run(sae, 4)
    make_trace(run, 0, l0=0.5, resid_norm=150.0)  # L0 under p1
    make_trace(run, 1, l0=50.0, resid_norm=150.0)  # inside every band
    make_trace(run, 2, l0=50.0, resid_norm=300.0)  # residual norm over p99
    make_trace(run, 3, l0=50.0, fvu=0.2, resid_norm=101.0)
    metrics = run_metrics(run, baseline.pk)
    found = metrics.anomalies
    assert found is not None and found.baseline == baseline and found.baseline_traces == 100
    assert (found.rate.count, found.rate.total) == (2, 4)
    assert found.per_metric == {"l0": 1, "fvu": 0, "resid_norm": 1}
    assert not found.coarse
    assert baseline in metrics.baselines and run not in metrics.baselines

    other = _run(make_sae(), 2)
    make_trace(other, 0)
    refused = run_metrics(run, other.pk)
    assert (
        refused.anomalies is None and "not a finished run of the same SAE" in refused.baseline_error
    )
    assert run_metrics(run, run.pk).anomalies is None  # not its own baseline


def _arrays(rows: list[tuple[bool, dict[int, float]]], top_k: int = 4) -> dict[str, np.ndarray]:
    """Dense chunk arrays: one row per token, (is it a completion token, {feature: value})."""
    n = len(rows)
    top_idx = np.full((n, top_k), -1, dtype=np.int32)
    top_val = np.zeros((n, top_k), dtype=np.float16)
    for r, (_, features) in enumerate(rows):
        for k, (f, v) in enumerate(sorted(features.items(), key=lambda fv: -fv[1])):
            top_idx[r, k], top_val[r, k] = f, v
    return {
        "token_ids": np.arange(2, n + 2, dtype=np.int32),
        "top_idx": top_idx,
        "top_val": top_val,
        "l0": np.array([len(f) for _, f in rows], dtype=np.int16),
        "recon_err": np.full(n, 1.0, dtype=np.float32),
        "resid_norm": np.full(n, 10.0, dtype=np.float32),
        "is_completion": np.array([c for c, _ in rows], dtype=np.uint8),
    }


def test_unsafe_output_rate_counts_completion_tokens_only() -> None:
    sae = make_sae()
    run = _run(sae, 3, generate_tokens=2, top_k=4)
    _watch(sae, 5, threshold=2.0)
    prompt, over, under = (False, {1: 1.0}), {5: 3.0}, {5: 1.0}
    rows = [
        # trace 0: over its threshold in the prompt only
        (False, {}), (False, over), (True, under), (True, {}),
        # trace 1: over on a completion token
        (False, {}), prompt, (True, over), (True, under),
        # trace 2: not over anywhere
        (False, {}), prompt, (True, under), (True, {}),
    ]  # fmt: skip
    write_chunk(run.artifact_prefix, 0, _arrays(rows))
    for p in range(3):
        peak = {0: 3.0, 1: 3.0, 2: 1.0}[p]
        make_trace(run, p, {5: (peak, 1, 1)}, row=4 * p, tokens=4, prompt_tokens=2)
    metrics = run_metrics(run)
    assert (metrics.flagged.count, metrics.flagged.total) == (2, 3)
    rate = metrics.unsafe_output.rate
    assert rate is not None and (rate.count, rate.total) == (1, 3)
    assert metrics.unsafe_output.unreadable == 0


def test_unsafe_output_rate_reports_purged_arrays() -> None:
    sae = make_sae()
    run = _run(sae, 2, generate_tokens=2)
    _watch(sae, 5, threshold=2.0)
    make_trace(run, 0, {5: (3.0, 1, 1)}, tokens=4, prompt_tokens=2)  # no chunk written
    make_trace(run, 1, {5: (3.0, 1, 1)}, tokens=2, prompt_tokens=2)  # captured no completion
    found = run_metrics(run).unsafe_output
    assert found.rate is not None and (found.rate.count, found.rate.total) == (0, 2)
    assert found.unreadable == 1


# --- the page ------------------------------------------------------------------------------


def test_run_page_shows_histograms_rates_features_and_the_baseline_choice(
    reviewer: User,
) -> None:
    sae = make_sae()
    baseline = _run(sae, 3)
    for p in range(3):
        make_trace(baseline, p, l0=10.0 + p)
    run = _run(sae, 3, manifest_sha256="ab" * 32, pins={"model": "cd" * 32})
    _watch(sae, 5, threshold=2.0)
    make_trace(run, 0, {5: (3.0, 1, 1)}, l0=40.0)
    make_trace(run, 1, {7: (0.5, 1, 1)})
    make_trace(run, 2)
    client = client_for(reviewer)
    url = reverse("run_detail", args=[run.pk])
    page = client.get(url).content.decode()
    assert page.count("<svg ") == 3
    assert "Choose a baseline" in page and f'<option value="{baseline.pk}"' in page
    assert "33.3 %" in page  # one flagged trace of three
    assert "This run generated no completions." in page
    assert reverse("feature_detail", args=[sae.name, 5]) in page and "feature 5" in page
    assert "ab" * 32 in page and "cd" * 32 in page  # the bundle hashes stay

    compared = client.get(url, {"baseline": baseline.pk}).content.decode()
    assert "against" in compared and f"run {baseline.pk}</a>" in compared
    assert 'class="band"' in compared  # the band is drawn on the histograms
    assert "only 3 traces" in compared  # a coarse baseline is called so
    assert "is not a finished run" in client.get(url, {"baseline": "999999"}).content.decode()
    assert client.get(url, {"baseline": "nonsense"}).status_code == 200
