"""Fuzzing annotation imports (a JSON body, a file to the API, a file to the page) and the
annotation API's PUT and PATCH.

An import is applied whole or not at all: a refused document changes no annotation, records no
change and no audit event. An accepted one leaves every feature it names as
``annotation_values_clean`` reads its entry, and the export shows it so.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from scopeweb.accounts.actor import Actor
from tests.factories import make_sae
from tests.fuzz.conftest import (
    Snapshot,
    example,
    fuzz_client,
    fuzz_settings,
    no_server_error,
    nothing_written,
    tried,
)
from tests.fuzz.multipart import multipart
from tests.fuzz.strategies import (
    Raw,
    json_bytes,
    json_floats,
    json_values,
    legal_text,
    mutated,
    nasty_text,
    short_text,
    weighted,
)
from traces.models import SAFETY_TAGS, FeatureAnnotation, SaeRecord
from traces.services.annotations import (
    EMPTY,
    EXPORT_FORMAT,
    annotation_save,
    annotation_snapshot,
    annotation_values_clean,
)

pytestmark = pytest.mark.django_db

WIDTH = 64
SURFACE = "annotations"


@pytest.fixture
def sae(reviewer: User) -> SaeRecord:
    """A small SAE (so that its edges are reached) with a few features annotated already."""
    sae = make_sae(name="fuzz-sae", width=WIDTH)
    for index, label in ((1, "dates"), (2, "bombs"), (WIDTH - 1, "last")):
        annotation_save(
            sae=sae,
            index=index,
            actor=Actor.command(reviewer),
            values={"label": label, "tags": ["violence"], "watch_threshold": 2.0},
        )
    return sae


indices = weighted(
    (6, st.integers(0, 4)), (2, st.sampled_from((WIDTH - 1, WIDTH, -1))), (1, json_values)
)
tags = st.lists(
    weighted(
        (3, st.sampled_from(SAFETY_TAGS)),
        (2, st.sampled_from(("Self harm", "PII", "ok.tag", "x" * 41, "", " ", "a_b  c"))),
        (2, short_text),
    ),
    max_size=5,
)
thresholds = weighted((3, st.sampled_from((None, 0.5, 2.0, 7))), (2, json_floats))
labels = weighted((3, st.sampled_from(("dates", "bombs", "  spaced   out "))), (2, nasty_text))


@st.composite
def entries(draw: st.DrawFn, index: int, clean: bool) -> dict[str, Any]:
    """Entry ``index``: ``clean`` (every value one the import takes), or any."""
    if clean:
        values = {
            "label": labels.filter(lambda text: len(text) <= 200) | legal_text,
            "description": legal_text,
            "tags": st.lists(st.sampled_from((*SAFETY_TAGS, "Self harm", "PII", "a_b  c"))),
            "watch_threshold": st.sampled_from((None, 0.5, 2.0, 7, 1e300)),
        }
    else:
        values = {
            "label": labels,
            "description": nasty_text,
            "tags": tags,
            "watch_threshold": thresholds,
            "updated_by": st.sampled_from(("rita", None)),
        }
    entry: dict[str, Any] = {"index": index if clean else draw(indices)}
    for key, strategy in values.items():
        if draw(st.integers(0, 3)):
            entry[key] = draw(strategy)
    return entry


@st.composite
def documents(draw: st.DrawFn, sae_name: str, sha: str) -> Any:
    damage = draw(st.sampled_from((0, 0, 0, 1, 3, 10)))
    chosen = draw(st.lists(st.integers(0, WIDTH - 1), unique=True, max_size=6))
    document = {
        "format": EXPORT_FORMAT,
        "sae": sae_name,
        "sae_params_sha256": sha,
        "exported_at": "2026-12-02T12:00:00+00:00",
        "annotations": [
            draw(entries(index, clean=draw(st.integers(0, 9)) >= damage)) for index in chosen
        ],
    }
    if not damage:
        return document
    big = Raw('{"annotations": [{"index": 1, "watch_threshold": ' + "9" * 400 + "}]}")
    return draw(weighted((3, st.just(document)), (6, mutated(document)), (1, st.just(big))))


def _expected(sae: SaeRecord, body: bytes, encoding: str) -> None:
    """After an accepted import: each feature the document names reads as its entry."""
    document = json.loads(body.decode(encoding))
    for entry in document["annotations"]:
        values = {k: v for k, v in entry.items() if k not in ("index", "updated_by", "updated_at")}
        found = FeatureAnnotation.objects.filter(sae=sae, index=entry["index"]).first()
        clean = annotation_values_clean(values)
        assert annotation_snapshot(found) == clean or (found is None and clean == EMPTY)


@pytest.mark.parametrize("route", ["json body", "api file", "page file"])
@fuzz_settings(0.7)
@given(data=st.data())
def test_an_import_is_applied_whole_or_not_at_all(
    reviewer: User, sae: SaeRecord, route: str, data: st.DataObject
) -> None:
    tried(f"{SURFACE} (import, {route})")
    document = data.draw(json_bytes(documents(sae.name, sae.params_sha256)), label="document")
    client = fuzz_client(reviewer)
    with example():
        before = Snapshot()
        if route == "json body":
            content_type = data.draw(
                weighted((8, st.just("application/json")), (1, st.just("text/plain"))),
                label="content type",
            )
            url = reverse("api_annotations_import", args=[sae.name])
            body = document
        else:
            name = "api_annotations_import" if route == "api file" else "annotations_import"
            url = reverse(name, args=[sae.name])
            body, content_type = multipart({}, {"file": ("annotations.json", document)})
        answer = client.post(url, body, content_type=content_type)
        status = no_server_error(SURFACE, answer, f"an import ({route})")
        refused = status >= 400 or (route == "page file" and status == 200)
        if refused:
            assert status in (200, 400, 415), answer.content[:500]
            nothing_written(SURFACE, before, Snapshot(), f"an import ({route})")
            return
        assert status in (200, 302), answer.content[:500]
        _expected(sae, document, "utf-8" if route == "json body" else "utf-8-sig")
        export = client.get(reverse("api_annotations_export", args=[sae.name]))
        assert no_server_error(SURFACE, export, "the export") == 200
        exported = {row["index"]: row for row in export.json()["annotations"]}
        for annotation in FeatureAnnotation.objects.filter(sae=sae):
            row = exported[annotation.index]
            assert {k: row[k] for k in EMPTY} == annotation_snapshot(annotation)


def _url(sae: SaeRecord, index: int) -> str:
    return reverse("api_feature_annotation", args=[sae.name, index])


@fuzz_settings(1)
@given(
    method=st.sampled_from(("put", "patch")),
    index=weighted((6, st.integers(0, 3)), (1, st.integers(0, 10**40))),
    body=json_bytes(
        mutated({"label": "dates", "description": "", "tags": ["violence"], "watch_threshold": 1.5})
    ),
)
def test_an_annotation_edit_saves_what_it_answers_or_changes_nothing(
    reviewer: User, sae: SaeRecord, method: str, index: int, body: bytes
) -> None:
    tried(f"{SURFACE} (API {method.upper()})")
    client = fuzz_client(reviewer)
    with example():
        before = Snapshot()
        send = client.put if method == "put" else client.patch
        answer = send(_url(sae, index), body, content_type="application/json")
        status = no_server_error(SURFACE, answer, f"{method.upper()} annotation")
        if status != 200:
            assert status in (400, 404), answer.content[:500]
            nothing_written(SURFACE, before, Snapshot(), f"{method.upper()} annotation")
            return
        again = client.get(_url(sae, index))
        assert again.json() == answer.json()
        stored = FeatureAnnotation.objects.filter(sae=sae, index=index).first()
        assert {k: answer.json()[k] for k in EMPTY} == annotation_snapshot(stored)
