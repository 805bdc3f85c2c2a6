"""Feature pages and the feature API: annotate, history, search, export and import, and who may
do what. No model is loaded: rows come from factories."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.urls import reverse
from pytest_django import DjangoAssertNumQueries

import traces.selectors.feature_examples as feature_examples_module
from scopeweb.accounts.actor import Actor
from tests.conftest import client_for
from tests.factories import make_prompt_set, make_run, make_sae, make_trace
from traces.bundle.chunks import stored_chunk_files, write_chunk
from traces.bundle.format import CHUNK_PARTS, canonicalize, chunk_name
from traces.models import (
    AnalysisRun,
    FeatureAnnotation,
    FeatureAnnotationChange,
    SaeRecord,
    Trace,
)
from traces.selectors.feature_examples import feature_examples
from traces.selectors.features import feature_cooccurrence
from traces.services.annotations import annotation_save

pytestmark = pytest.mark.django_db


@pytest.fixture
def sae() -> SaeRecord:
    return make_sae(name="gemma-l12", width=4096)


def detail_url(sae: SaeRecord, index: int) -> str:
    return reverse("feature_detail", kwargs={"sae_name": sae.name, "index": index})


def annotate_url(sae: SaeRecord, index: int) -> str:
    return reverse("feature_annotate", kwargs={"sae_name": sae.name, "index": index})


def api_url(name: str, sae: SaeRecord, **kwargs: Any) -> str:
    return reverse(name, kwargs={"sae_name": sae.name, **kwargs})


FORM = {
    "label": "Deceptive reassurance",
    "description": "Fires when the text promises safety it cannot give.",
    "safety_tags": ["deception"],
    "free_tags": "reassurance, Customer Support",
    "watch_threshold": "4.5",
}


# --- pages ---------------------------------------------------------------------------------


def test_reviewer_annotates_a_feature_and_the_page_shows_the_history(
    sae: SaeRecord, reviewer: User
) -> None:
    client = client_for(reviewer)
    response = client.post(annotate_url(sae, 42), FORM)
    assert response.status_code == 302 and response["Location"] == detail_url(sae, 42)
    annotation = FeatureAnnotation.objects.get(sae=sae, index=42)
    assert annotation.tags == ["deception", "reassurance", "customer-support"]
    assert annotation.watch_threshold == 4.5 and annotation.watched

    client.post(annotate_url(sae, 42), {**FORM, "label": "Deceptive reassurance v2"})
    page = client.get(detail_url(sae, 42)).content.decode()
    assert "Deceptive reassurance v2" in page and "watched" in page
    assert page.count("<td>rita</td>") == 2  # two history rows
    assert "customer-support" in page


def test_an_invalid_edit_shows_the_error_and_saves_nothing(sae: SaeRecord, reviewer: User) -> None:
    response = client_for(reviewer).post(
        annotate_url(sae, 1), {**FORM, "watch_threshold": "-2", "free_tags": "ok, bad tag!"}
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "above 0" in page and "bad tag!" in page
    assert not FeatureAnnotation.objects.exists()


def test_the_feature_page_counts_the_traces_where_it_fired_and_its_peak(
    sae: SaeRecord, reviewer: User, auditor: User
) -> None:
    run = make_run(sae=sae)
    make_trace(run, 0, {42: (3.5, 2, 1), 7: (9.0, 1, 1)})
    make_trace(run, 1, {42: (6.25, 1, 3)})
    make_trace(make_run(sae=make_sae()), 0, {42: (99.0, 1, 1)})  # another SAE's feature 42
    page = client_for(reviewer).get(detail_url(sae, 42)).content.decode()
    assert "Traces where it fired</dt><dd>2 in 1 run" in page
    assert "6.250" in page and "99.0" not in page
    assert "hello there" in page  # the strongest traces, for those who browse traces
    # Auditors read the annotation, not what the traces hold.
    page = client_for(auditor).get(detail_url(sae, 42)).content.decode()
    assert "Traces where it fired" not in page and "hello there" not in page


def test_auditor_reads_annotations_but_cannot_change_them(
    sae: SaeRecord, reviewer: User, auditor: User
) -> None:
    annotation_save(
        sae=sae, index=5, actor=Actor.command(reviewer), values={"label": "names of people"}
    )
    client = client_for(auditor)
    page = client.get(detail_url(sae, 5)).content.decode()
    assert "names of people" in page and annotate_url(sae, 5) not in page
    assert client.post(annotate_url(sae, 5), FORM).status_code == 403
    url = api_url("api_feature_annotation", sae, index=5)
    assert client.get(url).json()["label"] == "names of people"
    assert client.put(url, {"label": "x"}, content_type="application/json").status_code == 403
    assert FeatureAnnotation.objects.get(index=5).label == "names of people"


@pytest.mark.parametrize(("role", "status"), [("anonymous", 302), ("outsider", 403)])
def test_outsiders_cannot_annotate(
    sae: SaeRecord, cast: dict[str, User | None], role: str, status: int
) -> None:
    assert client_for(cast[role]).post(annotate_url(sae, 1), FORM).status_code == status
    assert not FeatureAnnotation.objects.exists()


def test_a_feature_beyond_the_sae_width_is_404(sae: SaeRecord, reviewer: User) -> None:
    client = client_for(reviewer)
    assert client.get(detail_url(sae, 4096)).status_code == 404
    assert client.post(annotate_url(sae, 4096), FORM).status_code == 404
    assert client.get(api_url("api_feature_annotation", sae, index=4096)).status_code == 404


def test_searching_a_number_opens_that_feature(sae: SaeRecord, auditor: User) -> None:
    client = client_for(auditor)
    search = api_url("feature_search", sae)
    response = client.get(search, {"q": " 17 "})
    assert response.status_code == 302 and response["Location"] == detail_url(sae, 17)
    response = client.get(search, {"q": "5000"}, follow=True)
    assert "features 0 to 4095" in response.content.decode()


def test_search_page_finds_by_label_description_and_tag(sae: SaeRecord, reviewer: User) -> None:
    for index, values in [
        (10, {"label": "Lying", "tags": ["deception"]}),
        (20, {"label": "Chemistry", "description": "nerve agents", "tags": ["chem"]}),
    ]:
        annotation_save(sae=sae, index=index, actor=Actor.command(reviewer), values=values)
    client = client_for(reviewer)
    search = api_url("feature_search", sae)
    assert client.get(search, {"q": "nerve"}).context["page"].object_list[0].index == 20
    assert [a.index for a in client.get(search, {"tag": "deception"}).context["page"]] == [10]
    page = client.get(search).content.decode()
    assert "Lying" in page and "Chemistry" in page and "Annotated features (2)" in page


def test_suggest_fills_the_label_from_the_top_tokens(
    sae: SaeRecord, reviewer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "traces.views.features.feature_top_tokens", lambda sae, index: ["▁bomb", "▁bomb", "▁fuse"]
    )
    response = client_for(reviewer).get(detail_url(sae, 3), {"suggest": "1"})
    assert response.context["form"].initial["label"] == "“bomb”, “fuse”"
    assert "Suggested from the tokens" in response.content.decode()
    assert not FeatureAnnotation.objects.exists()  # accepting is saving the form


def test_export_download_and_import_upload_round_trip(
    sae: SaeRecord, reviewer: User, admin: User
) -> None:
    annotation_save(
        sae=sae, index=8, actor=Actor.command(reviewer), values={"label": "a", "tags": ["bias"]}
    )
    response = client_for(reviewer).get(api_url("annotations_export", sae))
    assert response["Content-Disposition"] == 'attachment; filename="gemma-l12-annotations.json"'
    document = json.loads(response.content)
    document["annotations"][0]["label"] = "b"
    document["annotations"].append({"index": 9, "label": "c"})

    upload = io.BytesIO(json.dumps(document).encode())
    upload.name = "annotations.json"
    response = client_for(admin).post(api_url("annotations_import", sae), {"file": upload})
    assert response.status_code == 302
    assert dict(FeatureAnnotation.objects.values_list("index", "label")) == {8: "b", 9: "c"}
    assert FeatureAnnotationChange.objects.filter(via="import", changed_by=admin).count() == 2


def test_a_bad_upload_lists_the_problems_and_imports_nothing(
    sae: SaeRecord, reviewer: User
) -> None:
    document = {"annotations": [{"index": 1, "label": "ok"}, {"index": 2, "tags": "bias"}]}
    upload = io.BytesIO(json.dumps(document).encode())
    upload.name = "annotations.json"
    response = client_for(reviewer).post(api_url("annotations_import", sae), {"file": upload})
    page = response.content.decode()
    assert "Nothing was imported" in page
    assert '<td class="num">2</td><td class="num">2</td><td>tags</td>' in page
    assert not FeatureAnnotation.objects.exists()


# --- API -----------------------------------------------------------------------------------


def test_api_put_get_patch_and_history(sae: SaeRecord, reviewer: User, admin: User) -> None:
    url = api_url("api_feature_annotation", sae, index=77)
    empty = client_for(reviewer).get(url).json()
    assert empty["label"] == "" and empty["updated_at"] is None and empty["index"] == 77

    body = {"label": "Jailbreak preamble", "tags": ["jailbreak", "roleplay"], "watch_threshold": 2}
    response = client_for(reviewer).put(url, body, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["watched"] is True and response.json()["updated_by"] == "rita"

    response = client_for(admin).patch(
        url, {"watch_threshold": None}, content_type="application/json"
    )
    assert response.json()["label"] == "Jailbreak preamble"
    assert response.json()["watched"] is False

    # PUT replaces: what it leaves out becomes empty.
    client_for(admin).put(url, {"label": "only a label"}, content_type="application/json")
    history = client_for(reviewer).get(api_url("api_feature_annotation_history", sae, index=77))
    changes = history.json()["results"]
    assert [c["changed_by"] for c in changes] == ["ada", "ada", "rita"]
    assert changes[0]["before"] == {
        "label": "Jailbreak preamble",
        "tags": ["jailbreak", "roleplay"],
    }
    assert changes[1]["after"] == {"watch_threshold": None} and changes[1]["via"] == "api"


def test_api_refuses_bad_values_naming_the_field(sae: SaeRecord, reviewer: User) -> None:
    url = api_url("api_feature_annotation", sae, index=1)
    response = client_for(reviewer).put(
        url, {"tags": ["fine", "not fine!"], "watch_threshold": 0}, content_type="application/json"
    )
    assert response.status_code == 400
    assert set(response.json()) == {"tags", "watch_threshold"}
    assert not FeatureAnnotation.objects.exists()


def test_api_search_export_and_import(sae: SaeRecord, reviewer: User, auditor: User) -> None:
    annotation_save(
        sae=sae,
        index=3,
        actor=Actor.command(reviewer),
        values={"label": "weapons", "tags": ["violence"]},
    )
    annotation_save(sae=sae, index=4, actor=Actor.command(reviewer), values={"label": "recipes"})
    found = client_for(auditor).get(api_url("api_feature_search", sae), {"q": "violence"}).json()
    assert [a["index"] for a in found["results"]] == [3]

    document = client_for(auditor).get(api_url("api_annotations_export", sae)).json()
    assert [a["index"] for a in document["annotations"]] == [3, 4]
    document["annotations"][1]["label"] = "cooking"
    url = api_url("api_annotations_import", sae)
    assert (
        client_for(auditor).post(url, document, content_type="application/json").status_code == 403
    )
    response = client_for(reviewer).post(url, document, content_type="application/json")
    assert response.json() == {"created": 0, "changed": 1, "unchanged": 1}

    document["annotations"][0]["watch_threshold"] = "very"
    document["annotations"][1]["label"] = "should not land"
    response = client_for(reviewer).post(url, document, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["problems"] == [
        {
            "entry": 1,
            "index": 3,
            "field": "watch_threshold",
            "message": "Must be a number, or null for none.",
        }
    ]
    assert FeatureAnnotation.objects.get(index=4).label == "cooking"


def test_api_feature_and_label_suggestion(
    sae: SaeRecord, reviewer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = make_run(sae=sae)
    make_trace(run, 0, {11: (2.5, 3, 1)})
    feature = client_for(reviewer).get(api_url("api_feature", sae, index=11)).json()
    assert (feature["traces"], feature["runs"], feature["peak"]) == (1, 1, 2.5)
    assert feature["top_examples"][0]["run"] == run.pk
    assert feature["annotation"]["label"] == "" and feature["lens"] is None  # not computed

    monkeypatch.setattr("traces.api.features.feature_top_tokens", lambda sae, index: ["▁Paris"])
    suggestion = client_for(reviewer).get(api_url("api_feature_label_suggestion", sae, index=11))
    assert suggestion.json() == {"label": "“Paris”", "top_tokens": ["▁Paris"], "promoted": []}


def test_features_page_lists_saes_with_their_annotation_counts(
    sae: SaeRecord, reviewer: User, auditor: User
) -> None:
    annotation_save(sae=sae, index=1, actor=Actor.command(reviewer), values={"label": "x"})
    response = client_for(auditor).get(reverse("feature_index"))
    assert [(s.name, s.annotated) for s in response.context["saes"]] == [("gemma-l12", 1)]
    assert "Features</a>" in response.content.decode()  # in the navigation


# --- top examples, histogram, density, co-occurrence -----------------------------------------


def _chunk_with_two_traces(run: AnalysisRun) -> None:
    """One chunk of 2 traces of 6 tokens (rows 0-5 and 6-11), top-4 latents per token.

    Feature 42 peaks at token 3 of the first trace (3.5) and token 2 of the second (6.25); both
    BOS rows hold it at 50, an outlier that must not be taken for the peak.
    """
    rows, top_k = 12, 4
    top_idx = np.full((rows, top_k), -1, dtype=np.int32)
    top_val = np.zeros((rows, top_k), dtype=np.float16)
    for row, feature, value in [
        (0, 42, 50.0), (3, 42, 3.5), (4, 42, 1.0), (1, 7, 2.0),
        (6, 42, 50.0), (8, 42, 6.25), (9, 7, 1.0),
    ]:  # fmt: skip
        slot = int((top_idx[row] >= 0).sum())
        top_idx[row, slot], top_val[row, slot] = feature, value
    arrays = {
        "token_ids": np.arange(100, 100 + rows, dtype=np.int32),
        "top_idx": top_idx,
        "top_val": top_val,
        "l0": (top_idx >= 0).sum(axis=1).astype(np.int16),
        "recon_err": np.ones(rows, dtype=np.float32),
        "resid_norm": np.full(rows, 10.0, dtype=np.float32),
        "is_completion": np.zeros(rows, dtype=np.uint8),
    }
    canonicalize(arrays)
    write_chunk(run.artifact_prefix, 0, arrays)


@pytest.fixture
def stored(sae: SaeRecord, monkeypatch: pytest.MonkeyPatch) -> tuple[Trace, Trace]:
    monkeypatch.setattr(
        "traces.selectors.feature_examples.tokenizer_decode", lambda ids: [f"▁w{i}" for i in ids]
    )
    run = make_run(sae=sae, top_k=4)
    _chunk_with_two_traces(run)
    first = make_trace(run, 0, {42: (3.5, 2, 3), 7: (2.0, 1, 1)}, row=0, tokens=6)
    second = make_trace(run, 1, {42: (6.25, 1, 2), 7: (1.0, 1, 3)}, row=6, tokens=6)
    return first, second


def test_top_examples_are_windows_around_the_peak_linking_to_the_trace(
    sae: SaeRecord, reviewer: User, stored: tuple[Trace, Trace]
) -> None:
    first, second = stored
    response = client_for(reviewer).get(detail_url(sae, 42))
    examples = response.context["examples"]
    assert [(e.trace_id, e.peak_position) for e in examples] == [(second.pk, 2), (first.pk, 3)]
    # BOS (position 0) is never shown, and its outlier value never sets the scale.
    assert [t.position for t in examples[1].tokens] == [1, 2, 3, 4, 5]
    assert [t.shown for t in examples[1].tokens][:2] == ["·w101", "·w102"]
    values = {t.position: t.value for t in examples[1].tokens}
    assert values == {1: 0.0, 2: 0.0, 3: 3.5, 4: 1.0, 5: 0.0}
    peak = next(t for t in examples[0].tokens if t.peak)
    assert peak.position == 2 and "color:#fff" in peak.style  # the strongest: the darkest
    assert next(t for t in examples[1].tokens if t.position == 1).style == ""
    page = response.content.decode()
    assert f'href="/traces/{second.pk}/?feature=42&amp;token=2"' in page
    assert 'class="tok peak"' in page and "·w108" in page


def test_a_window_is_cut_around_the_peak(sae: SaeRecord, stored: tuple[Trace, Trace]) -> None:
    example = feature_examples(sae, 42, window=1)[1]  # the first trace, peak at token 3
    assert [t.position for t in example.tokens] == [2, 3, 4]
    assert example.cut_before and example.cut_after


def test_an_example_whose_arrays_are_gone_shows_its_prompt(
    sae: SaeRecord, reviewer: User, stored: tuple[Trace, Trace]
) -> None:
    for part in CHUNK_PARTS:
        default_storage.delete(chunk_name(stored[0].run.artifact_prefix, 0, part))
    page = client_for(reviewer).get(detail_url(sae, 42)).content.decode()
    assert "(token arrays gone)" in page and "a second prompt" in page


def test_histogram_and_density_come_from_the_index(
    sae: SaeRecord, reviewer: User, stored: tuple[Trace, Trace]
) -> None:
    response = client_for(reviewer).get(detail_url(sae, 42))
    # 3 active tokens of 10 captured (2 traces of 6 tokens, BOS excluded).
    density = response.context["density"]
    assert (density.active, density.tokens, density.percent) == (3, 10, "30 %")
    page = response.content.decode()
    assert "Peak per trace: histogram of 2 traces" in page
    assert page.count(": 1 traces</title></rect>") == 2  # one bar per trace's peak


def test_cooccurring_features_rank_by_shared_traces_with_labels(
    sae: SaeRecord, reviewer: User, auditor: User, stored: tuple[Trace, Trace]
) -> None:
    make_trace(make_run(sae=sae), 0, {7: (1.0, 1, 1), 42: (0.5, 1, 1), 9: (1.0, 1, 1)})
    annotation_save(
        sae=sae, index=7, actor=Actor.command(reviewer), values={"label": "sentence openers"}
    )
    response = client_for(reviewer).get(detail_url(sae, 42))
    assert response.context["co_scanned"] == 3
    rows = [(c.index, c.shared, c.fired_in, c.label) for c in response.context["cooccurring"]]
    assert rows == [(7, 3, 3, "sentence openers"), (9, 1, 1, "")]
    page = response.content.decode()
    assert f'href="{detail_url(sae, 7)}"' in page and "sentence openers" in page
    # A smaller scan keeps the strongest traces only.
    scanned, found = feature_cooccurrence(sae, 42, scan=2)
    assert scanned == 2 and [(c.index, c.shared) for c in found] == [(7, 2)]
    # Auditors read the annotation, not what the traces hold.
    page = client_for(auditor).get(detail_url(sae, 42)).content.decode()
    assert "Fires together with" not in page and "Top activating examples" not in page


def test_example_windows_are_served_from_the_cache_until_the_files_change(
    sae: SaeRecord, stored: tuple[Trace, Trace], monkeypatch: pytest.MonkeyPatch
) -> None:
    feature_examples_module._WINDOWS.clear()
    first = feature_examples(sae, 42)
    reads: list[int] = []
    original = stored_chunk_files

    def counting(prefix: str, chunk: int) -> dict[str, bytes] | None:
        reads.append(chunk)
        return original(prefix, chunk)

    monkeypatch.setattr(feature_examples_module, "stored_chunk_files", counting)
    again = feature_examples(sae, 42)
    assert reads == [] and again == first  # one stat per file, no read, the same windows
    # Rewritten files (another run's arrays under the same names) are read again.
    _chunk_with_two_traces(stored[0].run)
    assert feature_examples(sae, 42) == first and reads == [0]
    # Gone files are never served from the cache.
    for part in CHUNK_PARTS:
        default_storage.delete(chunk_name(stored[0].run.artifact_prefix, 0, part))
    gone = feature_examples(sae, 42)
    assert [e.tokens for e in gone] == [[], []]


def test_fired_in_stops_counting_at_its_cap(
    sae: SaeRecord, reviewer: User, stored: tuple[Trace, Trace], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("traces.selectors.features.FIRED_IN_CAP", 2)
    make_trace(make_run(sae=sae), 0, {7: (1.0, 1, 1), 42: (0.5, 1, 1)})
    response = client_for(reviewer).get(detail_url(sae, 42))
    (seven,) = response.context["cooccurring"]
    assert (seven.index, seven.shared, seven.fired_in, seven.fired_in_capped) == (7, 3, 2, True)
    assert "≥ 2 of 3" in response.content.decode()


def test_feature_figures_are_the_same_with_another_sae_in_use(
    sae: SaeRecord, reviewer: User, stored: tuple[Trace, Trace]
) -> None:
    """With one SAE in use the feature's queries skip the join through runs; with two they
    keep to the SAE's runs. Both give the same figures for the SAE."""
    before = client_for(reviewer).get(detail_url(sae, 42)).context
    figures = (before["activity"], before["density"], before["co_scanned"])
    other = make_run(sae=make_sae())
    make_trace(other, 0, {42: (99.0, 3, 1), 7: (9.0, 1, 1)}, tokens=50)
    after = client_for(reviewer).get(detail_url(sae, 42)).context
    assert (after["activity"], after["density"], after["co_scanned"]) == figures
    assert [e.peak for e in after["examples"]] == [6.25, 3.5]


def test_prompt_in_several_runs_appears_once_among_top_examples(
    sae: SaeRecord,
    reviewer: User,
    monkeypatch: pytest.MonkeyPatch,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    monkeypatch.setattr(
        "traces.selectors.feature_examples.tokenizer_decode", lambda ids: [f"▁w{i}" for i in ids]
    )
    prompt_set = make_prompt_set(prompts=[f"prompt number {n}" for n in range(25)])
    first, rerun, other_dtype = (make_run(sae=sae, prompt_set=prompt_set) for _ in range(3))
    # Prompt 0 in 3 runs: strongest in the rerun, weakest of every trace in the third run.
    shown = make_trace(rerun, 0, {42: (9.0, 2, 1)})
    in_first = make_trace(first, 0, {42: (8.0, 1, 1)})
    in_third = make_trace(other_dtype, 0, {42: (0.01, 1, 1)})
    for n in range(1, 25):  # 24 other prompts, in one run each
        make_trace(first if n % 2 else rerun, n, {42: (7.0 - n / 10, 1, 1)})
    make_trace(other_dtype, 1, {7: (5.0, 1, 1)})  # fired for another feature only
    another_sae = make_run(sae=make_sae(), prompt_set=prompt_set)
    make_trace(another_sae, 0, {42: (99.0, 1, 1)})  # another SAE's feature 42

    response = client_for(reviewer).get(detail_url(sae, 42))
    examples = response.context["examples"]
    assert len(examples) == 20  # 20 distinct prompts fill 20 rows
    assert [e.prompt_position for e in examples] == list(range(20))
    top = examples[0]
    assert (top.trace_id, top.run_id, top.peak) == (shown.pk, rerun.pk, 9.0)
    assert [(o.run_id, o.trace_id) for o in top.also_in] == [
        (first.pk, in_first.pk),
        (other_dtype.pk, in_third.pk),
    ]
    assert all(not e.also_in for e in examples[1:])  # prompt 1 fired in one run only
    page = response.content.decode()
    assert f'href="/traces/{in_first.pk}/?feature=42">{first.pk}</a>' in page
    assert f'href="/traces/{in_third.pk}/?feature=42">{other_dtype.pk}</a>' in page
    assert page.count("also in runs") == 1

    # Whether another SAE is in use, the over-sample, the chosen prompts' traces in every run:
    # no query per row (a column left unloaded and then read would make one).
    with django_assert_num_queries(3):
        assert feature_examples(sae, 42) == examples
    # When one prompt fills the first over-sample, a larger one is read: the same 20.
    monkeypatch.setattr("traces.selectors.feature_peaks.OVERSAMPLE", 1)
    with django_assert_num_queries(4):
        assert feature_examples(sae, 42) == examples
    # The API lists each prompt once too, with its other runs.
    feature = client_for(reviewer).get(api_url("api_feature", sae, index=42)).json()
    assert [e["prompt_position"] for e in feature["top_examples"]] == list(range(10))
    assert feature["top_examples"][0]["trace"] == shown.pk
    assert feature["top_examples"][0]["also_in"] == [
        {"run": first.pk, "trace": in_first.pk},
        {"run": other_dtype.pk, "trace": in_third.pk},
    ]
