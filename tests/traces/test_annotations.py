"""Annotation services: history, validation, watched features, search, export and import, and
the label suggestion. No model is loaded: rows come from factories."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from scopeweb.accounts.actor import Actor
from tests.factories import make_run, make_sae, make_trace
from traces.models import FeatureAnnotation, FeatureAnnotationChange, SaeRecord
from traces.selectors.feature_peaks import feature_top_tokens
from traces.selectors.features import feature_search, watched_features
from traces.services.annotations import (
    AnnotationImportError,
    annotation_save,
    annotations_export,
    annotations_import,
    annotations_parse,
)
from traces.services.feature_labels import feature_label_suggestion

pytestmark = pytest.mark.django_db


@pytest.fixture
def sae() -> SaeRecord:
    return make_sae(name="gemma-l12", width=4096)


def save(sae: SaeRecord, index: int, user: User | None, **values: Any) -> Any:
    return annotation_save(sae=sae, index=index, actor=Actor.command(user), values=values)


# --- edits and their history --------------------------------------------------------------


def test_first_save_records_who_and_the_fields_before_and_after(
    sae: SaeRecord, reviewer: User
) -> None:
    change = save(sae, 12, reviewer, label="bomb making", tags=["violence"], watch_threshold=4.5)
    assert change is not None
    assert change.changed_by == reviewer and change.changed_at is not None
    assert change.via == "web"
    assert change.before == {"label": "", "tags": [], "watch_threshold": None}
    assert change.after == {"label": "bomb making", "tags": ["violence"], "watch_threshold": 4.5}
    annotation = FeatureAnnotation.objects.get(sae=sae, index=12)
    assert annotation.updated_by == reviewer and annotation.watched


def test_a_later_edit_keeps_only_the_changed_fields_with_their_old_values(
    sae: SaeRecord, reviewer: User, admin: User
) -> None:
    save(sae, 3, reviewer, label="dates", description="calendar dates")
    change = save(sae, 3, admin, label="dates and times", description="calendar dates")
    assert change is not None and change.changed_by == admin
    assert change.before == {"label": "dates"}
    assert change.after == {"label": "dates and times"}
    history = list(FeatureAnnotationChange.objects.filter(annotation__index=3))
    assert [c.changed_by for c in history] == [admin, reviewer]  # newest first


def test_saving_the_same_values_adds_no_history_row(sae: SaeRecord, reviewer: User) -> None:
    save(sae, 5, reviewer, label="x", tags=["PII", "names"], watch_threshold=2)
    assert save(sae, 5, reviewer, label=" x ", tags=["names", "pii"], watch_threshold=2.0) is None
    assert FeatureAnnotationChange.objects.count() == 1


def test_saving_an_empty_annotation_on_a_new_feature_stores_nothing(
    sae: SaeRecord, reviewer: User
) -> None:
    assert save(sae, 9, reviewer, label="", tags=[]) is None
    assert not FeatureAnnotation.objects.exists()


def test_tags_are_normalised_deduplicated_and_safety_tags_come_first(
    sae: SaeRecord, reviewer: User
) -> None:
    save(sae, 1, reviewer, tags=["finance", "Self Harm", "PII", "pii", " ", "self_harm"])
    annotation = FeatureAnnotation.objects.get(sae=sae, index=1)
    assert annotation.tags == ["self-harm", "pii", "finance"]
    assert annotation.safety_tags == ["self-harm", "pii"] and annotation.free_tags == ["finance"]


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"watch_threshold": -1.0}, "watch_threshold"),
        ({"watch_threshold": float("nan")}, "watch_threshold"),
        ({"watch_threshold": "high"}, "watch_threshold"),
        ({"label": "x" * 201}, "label"),
        ({"tags": ["no, commas"]}, "tags"),
        ({"tags": "violence"}, "tags"),
        ({"lable": "typo"}, "lable"),
    ],
)
def test_bad_values_are_refused_naming_the_field(
    sae: SaeRecord, reviewer: User, values: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        annotation_save(sae=sae, index=1, actor=Actor.command(reviewer), values=values)
    assert field in refused.value.message_dict
    assert not FeatureAnnotation.objects.exists()


def test_a_feature_outside_the_sae_cannot_be_annotated(sae: SaeRecord, reviewer: User) -> None:
    with pytest.raises(ValidationError, match="0 to 4095"):
        save(sae, 4096, reviewer, label="x")


def test_watched_features_have_a_safety_tag_and_a_threshold(sae: SaeRecord, reviewer: User) -> None:
    save(sae, 1, reviewer, tags=["deception"], watch_threshold=3.0)
    save(sae, 2, reviewer, tags=["deception"])  # no threshold
    save(sae, 3, reviewer, tags=["finance"], watch_threshold=1.0)  # no safety tag
    save(sae, 4, reviewer, tags=["bio", "virology"], watch_threshold=0.5)
    save(make_sae(), 1, reviewer, tags=["cyber"], watch_threshold=9.0)  # another SAE
    assert watched_features(sae) == {1: 3.0, 4: 0.5}


# --- search --------------------------------------------------------------------------------


def test_search_matches_label_description_tag_and_index(sae: SaeRecord, reviewer: User) -> None:
    save(sae, 10, reviewer, label="Lying to the user", tags=["deception"])
    save(sae, 20, reviewer, label="chemistry", description="Nerve agent synthesis", tags=["chem"])
    save(sae, 30, reviewer, label="python code", tags=["cyber", "code-review"], watch_threshold=2)
    save(sae, 40, reviewer, label="feature 20 look-alike")

    def indices(query: str = "", **options: Any) -> list[int]:
        return [a.index for a in feature_search(sae, query, **options)]

    assert indices("lying") == [10]
    assert indices("nerve AGENT") == [20]
    assert indices("deception") == [10]
    assert indices("code") == [30]  # label and the free tag
    assert indices("20") == [20, 40]  # the index, and a label holding the number
    assert indices(tag="cyber") == [30]
    assert indices(tag="code") == []  # a tag filter matches whole tags only
    assert indices(watched=True) == [30]
    assert indices() == [10, 20, 30, 40]


# --- export and import ---------------------------------------------------------------------


def _annotations(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in entry.items() if k not in ("updated_by", "updated_at")}
        for entry in document["annotations"]
    ]


def test_export_then_import_into_an_empty_sae_gives_the_same_annotations(
    sae: SaeRecord, reviewer: User, admin: User
) -> None:
    save(sae, 7, reviewer, label="violence", tags=["violence", "gore"], watch_threshold=5.25)
    save(sae, 900, reviewer, label="", description="Fires on Paris", tags=["geo"])
    document = annotations_export(sae)
    assert document["format"] == "scopeweb-annotations/1" and document["sae"] == sae.name
    assert document["annotations"][0]["updated_by"] == "rita"

    # The same SAE on another install: same parameters, another name.
    twin = make_sae(name="twin", params_sha256=sae.params_sha256)
    result = annotations_import(twin, copy.deepcopy(document), actor=Actor.command(admin))
    assert (result.created, result.changed, result.unchanged) == (2, 0, 0)
    assert _annotations(annotations_export(twin)) == _annotations(document)
    change = FeatureAnnotationChange.objects.filter(annotation__sae=twin).first()
    assert change is not None and change.via == "import" and change.changed_by == admin

    again = annotations_import(twin, document, actor=Actor.command(admin))
    assert (again.created, again.changed, again.unchanged) == (0, 0, 2)
    assert FeatureAnnotationChange.objects.filter(annotation__sae=twin).count() == 2


def test_import_replaces_the_features_it_names_and_leaves_the_others(
    sae: SaeRecord, reviewer: User
) -> None:
    save(sae, 1, reviewer, label="old one")
    save(sae, 2, reviewer, label="untouched")
    result = annotations_import(
        sae, {"annotations": [{"index": 1, "label": "new one"}]}, actor=Actor.command(reviewer)
    )
    assert (result.created, result.changed) == (0, 1)
    labels = dict(FeatureAnnotation.objects.values_list("index", "label"))
    assert labels == {1: "new one", 2: "untouched"}


def test_a_bad_import_names_each_bad_entry_and_field_and_writes_nothing(
    sae: SaeRecord, reviewer: User
) -> None:
    save(sae, 1, reviewer, label="before the import")
    document = {
        "annotations": [
            {"index": 1, "label": "fine"},
            {"index": 2, "label": "x", "watch_threshold": "high"},
            {"index": 3, "lable": "typo"},
            {"index": 99999, "label": "beyond the SAE"},
            {"label": "no index"},
            {"index": 1, "label": "twice"},
            "not an object",
        ]
    }
    with pytest.raises(AnnotationImportError) as refused:
        annotations_import(sae, document, actor=Actor.command(reviewer))
    found = {(p.entry, p.field) for p in refused.value.problems}
    assert found == {
        (2, "watch_threshold"),
        (3, "lable"),
        (4, "index"),
        (5, "index"),
        (6, "index"),
        (7, ""),
    }
    assert "entry 2 (feature 2), watch_threshold" in str(refused.value.problems[0])
    assert str(refused.value).startswith("Nothing was imported")
    assert dict(FeatureAnnotation.objects.values_list("index", "label")) == {1: "before the import"}
    assert FeatureAnnotationChange.objects.count() == 1


def test_annotations_of_another_sae_are_refused(sae: SaeRecord, reviewer: User) -> None:
    other = make_sae(name="other")
    save(other, 1, reviewer, label="other's feature")
    with pytest.raises(AnnotationImportError) as refused:
        annotations_import(sae, annotations_export(other), actor=Actor.command(reviewer))
    assert refused.value.problems[0].field == "sae_params_sha256"
    assert not FeatureAnnotation.objects.filter(sae=sae).exists()


def test_a_file_that_is_not_json_is_refused_with_its_line() -> None:
    with pytest.raises(AnnotationImportError, match="line 3"):
        annotations_parse(b'{\n  "annotations": [\n    {"index": 1,,}\n  ]\n}')


# --- label suggestion --------------------------------------------------------------------------


def test_label_suggestion_ranks_repeated_tokens_and_reads_sentencepiece(sae: SaeRecord) -> None:
    tokens = ["▁bomb", "<bos>", "▁explosive", "▁Bomb", "▁bomb", "▁", "▁detonator", "▁fuse"]
    assert feature_label_suggestion(sae, 1, tokens, []) == "“bomb”, “explosive”, “detonator”"
    assert feature_label_suggestion(sae, 1, ["▁bomb"], ["▁detonate"]) == "“bomb” → “detonate”"
    assert feature_label_suggestion(sae, 1, [], []) == ""


def test_top_tokens_are_read_at_each_trace_peak_without_bos(sae: SaeRecord) -> None:
    from traces.bundle.chunks import write_chunk

    run = make_run(sae=sae, top_k=2)
    # One trace: BOS, then three tokens. Feature 7 is huge on BOS (ignored) and peaks on 200.
    arrays: dict[str, np.ndarray] = {
        "token_ids": np.array([2, 100, 200, 300], dtype=np.int32),
        "top_idx": np.array([[7, -1], [7, 3], [5, 7], [7, -1]], dtype=np.int32),
        "top_val": np.array([[50, 0], [1, 0.5], [4, 3], [2, 0]], dtype=np.float16),
        "l0": np.array([1, 2, 2, 1], dtype=np.int16),
        "recon_err": np.zeros(4, dtype=np.float32),
        "resid_norm": np.ones(4, dtype=np.float32),
        "is_completion": np.zeros(4, dtype=np.uint8),
    }
    write_chunk(run.artifact_prefix, 0, arrays)
    make_trace(run, 0, {7: (3.0, 3, 1), 5: (4.0, 1, 2)}, row=0, tokens=4)
    make_trace(run, 1, {7: (1.0, 1, 1)}, chunk=1)  # its chunk is gone: skipped

    decoded: list[list[int]] = []

    def decode(ids: list[int]) -> list[str]:
        decoded.append(ids)
        return [f"tok{i}" for i in ids]

    assert feature_top_tokens(sae, 7, decode=decode) == ["tok200"]
    assert feature_top_tokens(sae, 5, decode=decode) == ["tok200"]
    assert feature_top_tokens(sae, 8, decode=decode) == []
    assert decoded == [[200], [200]]  # nothing to decode, no tokenizer call
