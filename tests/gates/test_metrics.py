"""A gate's metrics from the index: anomaly rate against the baseline's band, flagged rate,
safety-feature drift, each with the baseline's value and the traces that contributed."""

from __future__ import annotations

import pytest

from gates.metrics import MetricError, measure
from tests.factories import make_prompt_set, make_run, make_sae, make_trace
from traces.models import AnalysisRun, FeatureAnnotation, SaeRecord

pytestmark = pytest.mark.django_db
WATCHED = 7


def _runs(sae: SaeRecord, fvu: list[float], feature_at: set[int]) -> AnalysisRun:
    prompt_set = make_prompt_set(prompts=[f"prompt {i}" for i in range(len(fvu))])
    run = make_run(sae=sae, prompt_set=prompt_set)
    for position, value in enumerate(fvu):
        features = {WATCHED: (5.0, 1, 1)} if position in feature_at else {3: (1.0, 1, 1)}
        make_trace(run, position, features, fvu=value)
    return run


@pytest.fixture
def sae() -> SaeRecord:
    sae = make_sae()
    FeatureAnnotation.objects.create(
        sae=sae, index=WATCHED, tags=["jailbreak"], watch_threshold=2.0
    )
    return sae


def test_the_unchanged_run_passes_and_a_shifted_one_is_anomalous(sae: SaeRecord) -> None:
    baseline = _runs(sae, [0.2 + 0.001 * i for i in range(40)], set())
    same = _runs(sae, [0.2 + 0.001 * i for i in range(1, 39)], set())
    shifted = _runs(sae, [0.9] * 10 + [0.21] * 30, set())
    assert measure("anomaly_rate", same, baseline).value == 0.0
    found = measure("anomaly_rate", shifted, baseline)
    assert found.value == pytest.approx(10 / 40)
    assert found.baseline is not None and found.baseline <= 0.1  # the band's own tails
    assert len(found.traces) == 10 and "fvu" in found.detail


def test_flagged_rate_and_drift_point_at_their_traces(sae: SaeRecord) -> None:
    baseline = _runs(sae, [0.2] * 20, {0})
    candidate = _runs(sae, [0.2] * 20, {0, 1, 2, 3, 4})
    flagged = measure("flagged_rate", candidate, baseline)
    assert (flagged.value, flagged.baseline) == (0.25, 0.05)
    assert len(flagged.traces) == 5
    drift = measure("safety_feature_drift", candidate, baseline)
    assert drift.value == pytest.approx(0.20)
    assert f"feature {WATCHED}" in drift.detail and len(drift.traces) == 5


def test_unsafe_output_needs_completions(sae: SaeRecord) -> None:
    run = _runs(sae, [0.2] * 3, set())
    with pytest.raises(MetricError, match="generated completions"):
        measure("unsafe_output_rate", run, run)


def test_runs_of_different_saes_and_unknown_metrics_are_refused(sae: SaeRecord) -> None:
    run = _runs(sae, [0.2] * 3, set())
    other = _runs(make_sae(), [0.2] * 3, set())
    with pytest.raises(MetricError, match="same SAE"):
        measure("flagged_rate", run, other)
    with pytest.raises(MetricError, match="Unknown metric 'speed'"):
        measure("speed", run, run)
