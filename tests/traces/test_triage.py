"""The triage queue: flagged, unreviewed traces worked one at a time; reviewed leaves the queue
for everyone, skip moves a trace to the back for the one who skipped it. No model is loaded:
rows come from factories, token arrays from ``traces.bundle.chunks.write_chunk``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from tests.conftest import client_for
from tests.factories import make_prompt_set, make_run, make_sae, make_trace
from traces.bundle.chunks import write_chunk
from traces.models import AnalysisRun, FeatureAnnotation, Prompt, SaeRecord, Trace, TriageReview
from traces.selectors.triage import triage_queue, tripped_features

pytestmark = pytest.mark.django_db
QUEUE = reverse("triage_queue")
API = reverse("api_triage")


def _run(sae: SaeRecord, prompts: int, **fields: Any) -> AnalysisRun:
    prompt_set = make_prompt_set()
    Prompt.objects.bulk_create(
        Prompt(prompt_set=prompt_set, position=p, line=p + 1, text=f"prompt {p}", token_count=5)
        for p in range(2, prompts)
    )
    return make_run(sae=sae, prompt_set=prompt_set, **fields)


@pytest.fixture
def flagged() -> list[Trace]:
    """Three flagged traces in one run (a watched feature over its threshold), and unflagged
    ones: under the threshold, an unwatched feature, and a watched index of another SAE."""
    sae, other_sae = make_sae(), make_sae()
    FeatureAnnotation.objects.create(
        sae=sae, index=5, label="lies", tags=["deception"], watch_threshold=2.0
    )
    FeatureAnnotation.objects.create(sae=sae, index=6, label="style", watch_threshold=0.1)
    FeatureAnnotation.objects.create(sae=other_sae, index=8, tags=["cyber"], watch_threshold=1.0)
    run = _run(sae, 6)
    traces = [
        make_trace(run, 0, {5: (3.0, 1, 1)}),
        make_trace(run, 1, {5: (1.0, 1, 1), 6: (5.0, 1, 1)}),  # under; unwatched
        make_trace(run, 2, {5: (9.0, 2, 1), 8: (4.0, 1, 1)}),
        make_trace(run, 3, {8: (9.0, 1, 1)}),  # 8 is watched on the other SAE only
        make_trace(run, 4, {5: (2.5, 1, 1)}),
    ]
    return [traces[0], traces[2], traces[4]]


def _queue(user: User) -> list[int]:
    return list(triage_queue(user).values_list("pk", flat=True))


def _decide(user: User, trace: Trace, decision: str, note: str = "") -> Any:
    url = reverse("triage_decide", args=[trace.pk])
    return client_for(user).post(url, {"decision": decision, "note": note})


def test_queue_holds_flagged_unreviewed_traces_with_their_tripped_features(
    flagged: list[Trace], reviewer: User
) -> None:
    assert _queue(reviewer) == [t.pk for t in flagged]
    tripped = tripped_features(flagged)
    assert [(t.feature, t.threshold, t.peak, t.label) for t in tripped[flagged[1].pk]] == [
        (5, 2.0, 9.0, "lies")
    ]
    page = client_for(reviewer).get(QUEUE).content.decode()
    assert "3 in the queue" in page
    assert f"Trace {flagged[0].pk}:" in page and "lies" in page
    assert reverse("feature_detail", args=[flagged[0].run.sae.name, 5]) in page
    assert reverse("trace_detail", args=[flagged[0].pk]) in page  # open trace (o)
    assert 'value="reviewed"' in page and 'value="skipped"' in page
    assert "csrfmiddlewaretoken" in page and "triage.js" in page
    assert reverse("triage_open_case", args=[flagged[0].pk]) in page  # open a case (c)
    # The trace's arrays were never written: the page says so and still offers the actions.
    assert "no longer stored" in page


def test_mark_reviewed_removes_the_trace_for_everyone(
    flagged: list[Trace], reviewer: User, second_reviewer: User
) -> None:
    response = _decide(reviewer, flagged[0], "reviewed", note="benign")
    assert response.status_code == 302 and response["Location"] == QUEUE
    review = TriageReview.objects.get()
    assert (review.trace, review.reviewer, review.decision, review.note) == (
        flagged[0], reviewer, "reviewed", "benign"
    )  # fmt: skip
    assert _queue(reviewer) == _queue(second_reviewer) == [flagged[1].pk, flagged[2].pk]
    page = client_for(reviewer).get(QUEUE).content.decode()
    assert "2 in the queue" in page and f"Trace {flagged[1].pk}:" in page

    again = client_for(second_reviewer).post(
        reverse("triage_decide", args=[flagged[0].pk]), {"decision": "reviewed"}, follow=True
    )
    assert "already marked reviewed by rita" in again.content.decode()
    assert TriageReview.objects.count() == 1


def test_skip_moves_the_trace_to_the_back_for_that_reviewer_only(
    flagged: list[Trace], reviewer: User, second_reviewer: User
) -> None:
    a, b, c = (t.pk for t in flagged)
    _decide(reviewer, flagged[0], "skipped")
    assert _queue(reviewer) == [b, c, a]
    assert _queue(second_reviewer) == [a, b, c]
    _decide(reviewer, flagged[1], "skipped")
    assert _queue(reviewer) == [c, a, b]  # the one skipped longest ago comes back first
    _decide(reviewer, flagged[2], "skipped")
    _decide(reviewer, flagged[0], "skipped")
    assert _queue(reviewer) == [b, c, a]
    page = client_for(reviewer).get(QUEUE).content.decode()
    assert f"Trace {b}:" in page and "you skipped it" in page
    assert client_for(reviewer).get(API).json()["count"] == 3


def test_decisions_are_refused_for_traces_outside_the_queue(
    flagged: list[Trace], reviewer: User
) -> None:
    quiet = Trace.objects.get(run=flagged[0].run, prompt__position=1)
    page = client_for(reviewer).post(
        reverse("triage_decide", args=[quiet.pk]), {"decision": "reviewed"}, follow=True
    )
    assert "trips no watched feature" in page.content.decode()
    bad = _decide(reviewer, flagged[0], "escalate")
    assert bad.status_code == 302 and not TriageReview.objects.exists()


def test_queue_page_colours_the_strip_by_the_tripping_feature(
    flagged: list[Trace], reviewer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = flagged[0]
    run = trace.run
    n, top_k = 4, run.top_k
    top_idx = np.full((n, top_k), -1, dtype=np.int32)
    top_val = np.zeros((n, top_k), dtype=np.float16)
    top_idx[1, 0], top_val[1, 0] = 5, 3.0  # over the threshold of 2
    top_idx[2, 0], top_val[2, 0] = 5, 1.0
    write_chunk(
        run.artifact_prefix,
        0,
        {
            "token_ids": np.array([2, 10, 11, 12], dtype=np.int32),
            "top_idx": top_idx,
            "top_val": top_val,
            "l0": np.array([0, 1, 1, 0], dtype=np.int16),
            "recon_err": np.ones(n, dtype=np.float32),
            "resid_norm": np.full(n, 10.0, dtype=np.float32),
            "is_completion": np.zeros(n, dtype=np.uint8),
        },
    )
    Trace.objects.filter(pk=trace.pk).update(row=0, tokens=n)
    monkeypatch.setattr(
        "traces.tokens.tokenizer_decode",
        lambda ids: ["<bos>", "▁bad", "▁idea", "!"],
    )
    page = client_for(reviewer).get(QUEUE).content.decode()
    assert "no longer stored" not in page
    assert page.count('class="tok') == n and page.count("tok over") == 1
    assert "Feature 5 · lies" in page  # the legend names the colouring feature
    assert "title=\"#1 ' bad'" in page.replace("&#x27;", "'")


def test_api_lists_the_queue_and_takes_decisions(
    flagged: list[Trace], reviewer: User, second_reviewer: User
) -> None:
    client = client_for(reviewer)
    body = client.get(API).json()
    assert body["count"] == 3 and [r["id"] for r in body["results"]] == [t.pk for t in flagged]
    first = body["results"][0]
    assert first["tripped"] == [
        {"feature": 5, "label": "lies", "safety_tags": ["deception"], "threshold": 2.0, "peak": 3.0}
    ]
    assert first["sae"] == flagged[0].run.sae.name and first["skipped_at"] is None
    assert [r["id"] for r in client.get(API, {"limit": "1"}).json()["results"]] == [flagged[0].pk]

    url = reverse("api_triage_decide", args=[flagged[0].pk])
    skipped = client.post(url, {"decision": "skipped"}, content_type="application/json")
    assert skipped.status_code == 201
    assert skipped.json()["next"] == flagged[1].pk and skipped.json()["queue_length"] == 3
    assert client.get(API).json()["results"][-1]["skipped_at"] is not None

    done = client.post(url, {"decision": "reviewed", "note": "ok"}, content_type="application/json")
    assert done.status_code == 201 and done.json()["reviewer"] == "rita"
    assert done.json()["queue_length"] == 2
    assert client_for(second_reviewer).get(API).json()["count"] == 2
    assert (
        client.post(url, {"decision": "reviewed"}, content_type="application/json").status_code
        == 409
    )
    assert (
        client.post(url, {"decision": "nope"}, content_type="application/json").status_code == 400
    )
    missing = reverse("api_triage_decide", args=[999999])
    assert (
        client.post(missing, {"decision": "reviewed"}, content_type="application/json").status_code
        == 404
    )


def test_only_reviewers_and_admins_triage(
    flagged: list[Trace], cast: dict[str, User | None]
) -> None:
    url = reverse("triage_decide", args=[flagged[0].pk])
    api_url = reverse("api_triage_decide", args=[flagged[0].pk])
    expected = {"anonymous": (302, 302, 401, 401), "auditor": (403, 403, 403, 403),
                "outsider": (403, 403, 403, 403), "reviewer": (200, 302, 200, 201),
                "admin": (200, 302, 200, 409)}  # fmt: skip
    for role, user in cast.items():
        client = client_for(user)
        got = (
            client.get(QUEUE).status_code,
            client.post(url, {"decision": "skipped"}).status_code,
            client.get(API).status_code,
            client.post(
                api_url, {"decision": "reviewed"}, content_type="application/json"
            ).status_code,
        )
        assert got == expected[role], role
    assert not TriageReview.objects.exclude(
        reviewer__groups__name__in=["reviewer", "admin"]
    ).exists()


def test_the_queue_is_empty_without_watched_features(reviewer: User) -> None:
    run = _run(make_sae(), 2)
    make_trace(run, 0, {5: (9.0, 1, 1)})
    assert _queue(reviewer) == []
    page = client_for(reviewer).get(QUEUE).content.decode()
    assert "The queue is empty" in page and "0 in the queue" in page
