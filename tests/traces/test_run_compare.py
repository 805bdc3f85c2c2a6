"""Comparing a baseline and a candidate run: feature shifts and the traces that changed most."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from tests.conftest import client_for
from tests.factories import make_run, make_sae, make_trace
from traces.models import AnalysisRun, FeatureAnnotation, SaeRecord
from traces.selectors.compare import CompareError, runs_compare

pytestmark = pytest.mark.django_db


@pytest.fixture
def sae() -> SaeRecord:
    return make_sae()


@pytest.fixture
def runs(sae: SaeRecord) -> tuple[AnalysisRun, AnalysisRun]:
    baseline = make_run(sae=sae)
    candidate = make_run(sae=sae, prompt_set=baseline.prompt_set)
    # Prompt 0: same features, same peaks. Prompt 1: feature 7 appears, feature 3 vanishes.
    make_trace(baseline, 0, {1: (2.0, 3, 1), 2: (1.0, 1, 2)})
    make_trace(candidate, 0, {1: (2.0, 3, 1), 2: (1.0, 1, 2)})
    make_trace(baseline, 1, {1: (4.0, 2, 1), 3: (5.0, 2, 1)})
    make_trace(candidate, 1, {1: (2.0, 2, 1), 7: (6.0, 1, 3)})
    FeatureAnnotation.objects.create(sae=sae, index=7, label="refusal wording")
    return baseline, candidate


def test_features_are_ranked_by_change_in_rate_and_mean_peak(
    runs: tuple[AnalysisRun, AnalysisRun],
) -> None:
    result = runs_compare(*runs)
    rates = {s.feature: (s.rate_a, s.rate_b) for s in result.by_rate}
    assert rates[7] == (0.0, 0.5) and rates[3] == (0.5, 0.0) and rates[1] == (1.0, 1.0)
    assert {s.feature for s in result.by_rate[:2]} == {3, 7}
    assert next(s.label for s in result.by_rate if s.feature == 7) == "refusal wording"
    # Feature 1 fired in both: mean peak 3.0 -> 2.0; 2 did not change.
    assert result.by_mean[0].feature == 1 and result.by_mean[0].mean_change == pytest.approx(-1.0)


def test_the_changed_trace_comes_first_and_names_what_it_gained_and_lost(
    runs: tuple[AnalysisRun, AnalysisRun],
) -> None:
    result = runs_compare(*runs)
    assert result.shared_prompts == 2
    first, second = result.traces
    assert first.prompt == "a second prompt" and first.gained == [7] and first.lost == [3]
    # weighted Jaccard: min sum 2 / max sum (4 + 5 + 6) -> change 1 - 2/15
    assert first.distance == pytest.approx(1 - 2 / 15)
    assert second.distance == 0.0


def test_runs_of_different_saes_are_refused(runs: tuple[AnalysisRun, AnalysisRun]) -> None:
    other = make_run(sae=make_sae())
    make_trace(other, 0, {1: (1.0, 1, 1)})
    with pytest.raises(CompareError, match="different SAEs"):
        runs_compare(runs[0], other)
    with pytest.raises(CompareError, match="two different runs"):
        runs_compare(runs[0], runs[0])


def test_page_and_api_show_the_comparison(
    runs: tuple[AnalysisRun, AnalysisRun], reviewer: User
) -> None:
    client = client_for(reviewer)
    a, b = runs
    page = client.get(reverse("run_compare"), {"a": a.pk, "b": b.pk})
    html = page.content.decode()
    assert page.status_code == 200 and "refusal wording" in html and "Traces that changed" in html
    api = client.get(reverse("api_run_compare"), {"a": a.pk, "b": b.pk})
    assert api.status_code == 200 and api.json()["traces"][0]["gained"] == [7]
    refused = client.get(reverse("api_run_compare"), {"a": a.pk, "b": a.pk})
    assert refused.status_code == 400 and "two different runs" in refused.content.decode()
    missing = client.get(reverse("api_run_compare"), {"a": a.pk})
    assert missing.status_code == 400 and "b" in missing.json()
