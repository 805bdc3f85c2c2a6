"""A property of the purge over random timelines: prompt sets, runs, exports, cases and holds
made at random, holds lifted and cases closed along the way, purges at random times. After each
purge, nothing held or cited is gone, and everything expired and free is.

The expectation is computed here from the plain timeline, independently of the selectors.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, Phase, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from governance.models import Export, ExportState, HoldTarget, LegalHold
from governance.services.purge import retention_purge
from reports.models import AuditCase, CaseState
from scopeweb.jobs.models import JobState
from tests.factories import make_sae
from tests.governance.conftest import (
    cite,
    files_under,
    stored_export,
    stored_prompt_set,
    stored_run,
)
from traces.models import AnalysisRun, PromptSet

# Hypothesis caches constants on disk: keep them in the ignored var/ folder, not the checkout.
set_hypothesis_home_dir(str(Path(__file__).resolve().parents[2] / "var" / "hypothesis"))

LIVE = (CaseState.OPEN, CaseState.IN_REVIEW, CaseState.AWAITING_SIGN_OFF)
CASE_STATES = (*LIVE, CaseState.SIGNED_OFF, CaseState.CLOSED)

offsets = st.integers(min_value=-20, max_value=40)  # days from the start of the timeline
rarely = st.sampled_from([False, False, False, True])  # holds: one time in four
run_spec = st.fixed_dictionaries(
    {
        "expires": offsets,
        "finished": st.sampled_from([True, True, True, False]),
        "held": rarely,
        "exports": st.lists(
            st.fixed_dictionaries({"expires": offsets, "building": rarely}),
            max_size=1,
        ),
    }
)
set_spec = st.fixed_dictionaries(
    {"expires": offsets, "held": rarely, "runs": st.lists(run_spec, min_size=1, max_size=3)}
)
case_spec = st.fixed_dictionaries(
    {
        "state": st.sampled_from(CASE_STATES),
        "hold_until": st.one_of(st.none(), offsets),
        "held": rarely,
        "cites": st.integers(min_value=0, max_value=20),
    }
)
timeline = st.fixed_dictionaries(
    {
        "sets": st.lists(set_spec, min_size=1, max_size=3),
        "cases": st.lists(case_spec, max_size=2),
        "purges": st.lists(st.integers(-5, 60), min_size=1, max_size=3).map(sorted),
        # between purges: lift this many holds and close this many live cases (oldest first)
        "lifts": st.integers(min_value=0, max_value=3),
        "closes": st.integers(min_value=0, max_value=2),
    }
)


@dataclass
class World:
    start: datetime
    runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    sets: dict[int, dict[str, Any]] = field(default_factory=dict)
    exports: dict[int, dict[str, Any]] = field(default_factory=dict)
    cases: dict[int, dict[str, Any]] = field(default_factory=dict)
    holds: dict[int, tuple[str, int]] = field(default_factory=dict)  # active only

    def at(self, offset: int) -> datetime:
        return self.start + timedelta(days=offset, hours=1)


def _build(spec: dict[str, Any], start: datetime) -> World:
    world = World(start)
    sae = make_sae()
    for s in spec["sets"]:
        prompt_set = stored_prompt_set(world.at(s["expires"]))
        world.sets[prompt_set.pk] = {"expires": world.at(s["expires"]), "runs": []}
        if s["held"]:
            _hold(world, HoldTarget.PROMPT_SET, prompt_set.pk)
        for r in s["runs"]:
            state = JobState.SUCCEEDED if r["finished"] else JobState.RUNNING
            run = stored_run(prompt_set, world.at(r["expires"]), sae=sae, state=state)
            world.runs[run.pk] = {
                "expires": world.at(r["expires"]),
                "finished": r["finished"],
                "set": prompt_set.pk,
                "prefix": run.artifact_prefix,
            }
            world.sets[prompt_set.pk]["runs"].append(run.pk)
            if r["held"]:
                _hold(world, HoldTarget.RUN, run.pk)
            for e in r["exports"]:
                export_state = ExportState.BUILDING if e["building"] else ExportState.READY
                export = stored_export(run, world.at(e["expires"]), state=export_state)
                world.exports[export.pk] = {
                    "expires": world.at(e["expires"]),
                    "busy": e["building"],
                    "run": run.pk,
                    "set": prompt_set.pk,
                    "artifact": export.artifact,
                }
    run_ids = sorted(world.runs)
    for c in spec["cases"]:
        if not run_ids:
            break
        run = AnalysisRun.objects.get(pk=run_ids[c["cites"] % len(run_ids)])
        hold_until = None if c["hold_until"] is None else world.at(c["hold_until"])
        case = cite(run, c["state"], hold_until=hold_until)
        world.cases[case.pk] = {"state": c["state"], "hold_until": hold_until, "run": run.pk}
        if c["held"]:
            _hold(world, HoldTarget.CASE, case.pk)
    return world


def _hold(world: World, target: str, target_id: int) -> None:
    hold = LegalHold.objects.create(target_type=target, target_id=target_id, reason="p")
    world.holds[hold.pk] = (target, target_id)


def _expected_gone(world: World, as_of: datetime) -> tuple[set[int], set[int], set[int]]:
    """The oracle: which runs, prompt sets and exports a purge at ``as_of`` must delete."""
    held = set(world.holds.values())
    protecting = {
        pk
        for pk, c in world.cases.items()
        if c["state"] in LIVE
        or c["hold_until"] is None
        or c["hold_until"] > as_of
        or (HoldTarget.CASE, pk) in held
    }
    cited_runs = {world.cases[pk]["run"] for pk in protecting}
    runs = {
        pk
        for pk, r in world.runs.items()
        if r["expires"] <= as_of
        and r["finished"]
        and (HoldTarget.RUN, pk) not in held
        and (HoldTarget.PROMPT_SET, r["set"]) not in held
        and pk not in cited_runs
    }
    sets = {
        pk
        for pk, s in world.sets.items()
        if s["expires"] <= as_of
        and (HoldTarget.PROMPT_SET, pk) not in held
        and all(run in runs for run in s["runs"])
    }
    exports = {
        pk
        for pk, e in world.exports.items()
        if e["expires"] <= as_of
        and not e["busy"]
        and (HoldTarget.RUN, e["run"]) not in held
        and (HoldTarget.PROMPT_SET, e["set"]) not in held
    }
    return runs, sets, exports


def _between_purges(world: World, spec: dict[str, Any], now: datetime) -> None:
    for hold_id in sorted(world.holds)[: spec["lifts"]]:
        LegalHold.objects.filter(pk=hold_id).update(lifted_at=now, lift_reason="p")
        del world.holds[hold_id]
    live = sorted(pk for pk, c in world.cases.items() if c["state"] in LIVE)
    for pk in live[: spec["closes"]]:
        hold_until = now + timedelta(days=10)
        AuditCase.objects.filter(pk=pk).update(state=CaseState.CLOSED, hold_until=hold_until)
        world.cases[pk].update(state=CaseState.CLOSED, hold_until=hold_until)


def _check(world: World, as_of: datetime) -> None:
    runs, sets, exports = _expected_gone(world, as_of)
    for pk, r in list(world.runs.items()):
        exists = AnalysisRun.objects.filter(pk=pk).exists()
        assert exists == (pk not in runs), f"run {pk} as of {as_of}: {r}"
        assert bool(files_under(r["prefix"])) == exists
        if not exists:
            del world.runs[pk]
    for pk in list(world.sets):
        exists = PromptSet.objects.filter(pk=pk).exists()
        assert exists == (pk not in sets), f"prompt set {pk} as of {as_of}"
        if exists:
            world.sets[pk]["runs"] = [r for r in world.sets[pk]["runs"] if r in world.runs]
        else:
            del world.sets[pk]
    for pk, e in list(world.exports.items()):
        exists = Export.objects.filter(pk=pk).exists()
        assert exists == (pk not in exports), f"export {pk} as of {as_of}"
        assert default_storage.exists(e["artifact"]) == exists
        if not exists:
            del world.exports[pk]
    # cases whose run went no longer cite it
    world.cases = {pk: c for pk, c in world.cases.items() if c["run"] in world.runs}


@pytest.mark.django_db
@hypothesis_settings(
    max_examples=40,
    deadline=None,
    # Shrinking rebuilds the world hundreds of times: minutes. The failing timeline is printed.
    phases=[Phase.explicit, Phase.generate],
    database=None,  # no .hypothesis folder in the checkout
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=timeline)
def test_purges_never_delete_what_is_held_or_cited_and_always_what_is_free(
    spec: dict[str, Any], settings: Any
) -> None:
    root = Path(settings.MEDIA_ROOT)
    with transaction.atomic():
        shutil.rmtree(root, ignore_errors=True)  # ids repeat once an example rolls back
        start = timezone.now()
        world = _build(spec, start)
        for offset in spec["purges"]:
            as_of = world.at(offset)
            record = retention_purge(as_of=as_of)
            assert record.state == "succeeded"
            event(f"purged {(record.counts['runs'] > 0 and 'some') or 'no'} runs")
            _check(world, as_of)
            _between_purges(world, spec, as_of)
        transaction.set_rollback(True)
