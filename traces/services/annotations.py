"""Feature annotations: edits that keep their history, and JSON export and import.

Every write goes through ``annotation_save``, which records who changed what (the changed fields
before and after) in the same transaction, and records nothing when nothing changed. An import
checks the whole file first and then saves every entry in one transaction: a file with one bad
entry changes nothing.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from scopeweb.accounts.actor import Actor
from scopeweb.audit.services import audit_record
from scopeweb.refusals import Refused, quotable
from traces.models import SAFETY_TAGS, FeatureAnnotation, FeatureAnnotationChange, SaeRecord

EXPORT_FORMAT = "scopeweb-annotations/1"
FIELDS = ("label", "description", "tags", "watch_threshold")
EMPTY: dict[str, Any] = {"label": "", "description": "", "tags": [], "watch_threshold": None}
LABEL_MAX = 200
DESCRIPTION_MAX = 10_000
TAGS_MAX = 20
_TAG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,39}$")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# Written by the export for people to read; an import accepts and ignores them.
_EXPORT_ONLY = ("updated_by", "updated_at")
IMPORT_MAX_PROBLEMS = 50
IMPORT_MAX_BYTES = 20_000_000


def tag_normalise(tag: str) -> str:
    """``"Self harm"`` and ``"self-harm"`` are the same tag; ``"PII"`` is ``"pii"``."""
    return re.sub(r"[\s_]+", "-", tag.strip().lower()) if tag.strip() else ""


def _unstorable(text: str) -> str | None:
    """Why no database can keep ``text`` (a NUL, or an unpaired surrogate, which a JSON escape
    such as "\\ud800" makes), or None."""
    if "\x00" in text:
        return "Must not hold a NUL character."
    surrogate = _SURROGATE.search(text)
    if surrogate:
        return f"Holds an unpaired surrogate (U+{ord(surrogate[0]):04X}), which is not Unicode."
    return None


def annotation_values_clean(values: Mapping[str, Any]) -> dict[str, Any]:
    """Check and normalise the four annotated fields; missing ones are empty.

    Raises ``ValidationError`` with a message per field, naming the field.
    """
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(values) - set(FIELDS))
    for name in unknown:
        errors[name] = [f"Unknown field; an annotation has {', '.join(FIELDS)}."]
    clean = dict(EMPTY)

    label = values.get("label", "")
    if label is None:
        label = ""
    if not isinstance(label, str):
        errors["label"] = ["Must be text."]
    elif unstorable := _unstorable(label):
        errors["label"] = [unstorable]
    elif len(label.strip()) > LABEL_MAX:
        errors["label"] = [f"At most {LABEL_MAX} characters (this one has {len(label.strip())})."]
    else:
        clean["label"] = " ".join(label.split())

    description = values.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str):
        errors["description"] = ["Must be text."]
    elif unstorable := _unstorable(description):
        errors["description"] = [unstorable]
    elif len(description) > DESCRIPTION_MAX:
        errors["description"] = [f"At most {DESCRIPTION_MAX} characters."]
    else:
        clean["description"] = description.strip()

    tags = values.get("tags", [])
    if tags is None:
        tags = []
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        errors["tags"] = ["Must be a list of text tags."]
    else:
        normalised: list[str] = []
        for raw in tags:
            tag = tag_normalise(raw)
            if not tag:
                continue
            if not _TAG.match(tag):
                errors.setdefault("tags", []).append(
                    f"{raw.strip()!r} is not a tag: use letters, digits, '.', '_' or '-' "
                    "(at most 40)."
                )
            elif tag not in normalised:
                normalised.append(tag)
        if len(normalised) > TAGS_MAX:
            errors.setdefault("tags", []).append(f"At most {TAGS_MAX} tags.")
        # Safety tags first, in vocabulary order, then free tags as given.
        clean["tags"] = [t for t in SAFETY_TAGS if t in normalised] + [
            t for t in normalised if t not in SAFETY_TAGS
        ]

    threshold = values.get("watch_threshold")
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            errors["watch_threshold"] = ["Must be a number, or null for none."]
        elif not 0 < threshold <= sys.float_info.max:  # no NaN, infinity, 400-digit integer
            errors["watch_threshold"] = ["Must be a finite number above 0."]
        else:
            clean["watch_threshold"] = float(threshold)

    if errors:
        raise ValidationError(errors)
    return clean


def annotation_snapshot(annotation: FeatureAnnotation | None) -> dict[str, Any]:
    if annotation is None:
        return dict(EMPTY)
    return {field: getattr(annotation, field) for field in FIELDS}


def _check_index(sae: SaeRecord, index: int) -> None:
    if not 0 <= index < sae.width:
        raise ValidationError(
            {"index": [f"Feature {index} is not in {sae.name} (0 to {sae.width - 1})."]}
        )


def _locked(sae: SaeRecord, index: int) -> FeatureAnnotation | None:
    return FeatureAnnotation.objects.select_for_update().filter(sae=sae, index=index).first()


@transaction.atomic
def annotation_save(
    *,
    sae: SaeRecord,
    index: int,
    actor: Actor,
    values: Mapping[str, Any],
    via: str = FeatureAnnotationChange.Via.WEB,
) -> FeatureAnnotationChange | None:
    """Set a feature's label, description, tags and watch threshold (fields left out of
    ``values`` become empty). Returns the recorded change, or None when nothing changed."""
    _check_index(sae, index)
    after = annotation_values_clean(values)
    annotation = _locked(sae, index)
    if annotation is None:
        # Two first edits of one feature at once: locking the SAE row makes the second wait
        # for the first to commit, and then see (and record its change against) the new row.
        list(SaeRecord.objects.select_for_update().filter(pk=sae.pk).values_list("pk"))
        annotation = _locked(sae, index)
    before = annotation_snapshot(annotation)
    changed = [field for field in FIELDS if before[field] != after[field]]
    if not changed:
        return None
    if annotation is None:
        annotation = FeatureAnnotation(sae=sae, index=index)
    for field in changed:
        setattr(annotation, field, after[field])
    annotation.updated_by = actor.user
    annotation.save()
    change = FeatureAnnotationChange.objects.create(
        annotation=annotation,
        changed_by=actor.user,
        via=via,
        before={field: before[field] for field in changed},
        after={field: after[field] for field in changed},
    )
    audit_record(
        "annotation.change",
        actor=actor,
        obj=annotation,
        object_repr=f"{sae.name} #{index}",
        before=change.before,
        after=change.after,
        detail={"sae": sae.name, "index": index, "via": via},
    )
    return change


def annotations_export(sae: SaeRecord, *, actor: Actor | None = None) -> dict[str, Any]:
    """Every annotation of ``sae`` as a JSON-ready document that ``annotations_import`` reads.
    With ``actor``, the export is recorded in the audit log as theirs."""
    rows = FeatureAnnotation.objects.filter(sae=sae).select_related("updated_by").order_by("index")
    document = {
        "format": EXPORT_FORMAT,
        "sae": sae.name,
        "sae_params_sha256": sae.params_sha256,
        "exported_at": timezone.now().isoformat(),
        "annotations": [
            {
                "index": row.index,
                **annotation_snapshot(row),
                "updated_by": row.updated_by.username if row.updated_by else None,
                "updated_at": row.updated_at.isoformat(),
            }
            for row in rows
        ],
    }
    if actor is not None:
        count = len(document["annotations"])
        audit_record(
            "annotation.export",
            actor=actor,
            obj=sae,
            object_id=sae.name,
            detail={"count": count},
        )
    return document


@dataclass(frozen=True)
class ImportProblem:
    """What is wrong, where: ``entry`` is 1-based in the file's ``annotations`` list."""

    entry: int | None
    field: str
    message: str
    index: int | None = None

    def __post_init__(self) -> None:  # an unknown field's name is the file's
        object.__setattr__(self, "field", quotable(self.field))
        object.__setattr__(self, "message", quotable(self.message))

    def __str__(self) -> str:
        where = "file" if self.entry is None else f"entry {self.entry}"
        if self.index is not None:
            where += f" (feature {self.index})"
        return (
            f"{where}, {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "entry": self.entry,
            "index": self.index,
            "field": self.field,
            "message": self.message,
        }


class AnnotationImportError(Refused):
    """An annotations file refused whole, with every problem found."""

    problems: list[ImportProblem]

    def __init__(self, problems: list[ImportProblem]) -> None:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        message = f"Nothing was imported: {problems[0]}{more}"
        super().__init__(message, status=400, problems=problems)


@dataclass(frozen=True)
class ImportResult:
    created: int
    changed: int
    unchanged: int


def annotations_parse(raw: bytes) -> Any:
    """Decode an uploaded file, naming the line and column of a JSON syntax error."""
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise AnnotationImportError(
            [ImportProblem(None, "", "The file is not UTF-8 text.")]
        ) from None
    except json.JSONDecodeError as exc:
        raise AnnotationImportError(
            [
                ImportProblem(
                    None, "", f"Not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
                )
            ]
        ) from None
    except (ValueError, RecursionError) as exc:  # a 4,301-digit integer; deep nesting
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise AnnotationImportError([ImportProblem(None, "", f"Not JSON: {reason}.")]) from None


def _import_check(sae: SaeRecord, data: Any) -> list[tuple[int, dict[str, Any]]]:
    """Every entry as (index, clean values), or ``AnnotationImportError`` listing all problems."""
    problems: list[ImportProblem] = []
    if not isinstance(data, dict):
        raise AnnotationImportError(
            [ImportProblem(None, "", 'Expected an object with an "annotations" list.')]
        )
    if data.get("format", EXPORT_FORMAT) != EXPORT_FORMAT:
        problems.append(ImportProblem(None, "format", f"Expected {EXPORT_FORMAT!r}."))
    sha = data.get("sae_params_sha256")
    if sha is not None and sha != sae.params_sha256:
        problems.append(
            ImportProblem(
                None,
                "sae_params_sha256",
                f"These annotations are for another SAE ({data.get('sae') or sha}); feature "
                f"indices mean different latents in {sae.name}.",
            )
        )
    entries = data.get("annotations")
    if not isinstance(entries, list):
        problems.append(ImportProblem(None, "annotations", "Must be a list of annotations."))
        raise AnnotationImportError(problems)

    checked: list[tuple[int, dict[str, Any]]] = []
    seen: dict[int, int] = {}
    for number, entry in enumerate(entries, start=1):
        if len(problems) >= IMPORT_MAX_PROBLEMS:
            break
        if not isinstance(entry, dict):
            problems.append(ImportProblem(number, "", "Must be an object."))
            continue
        index = entry.get("index")
        if isinstance(index, bool) or not isinstance(index, int):
            problems.append(ImportProblem(number, "index", "Must be a whole number."))
            index = None
        elif not 0 <= index < sae.width:
            problems.append(
                ImportProblem(number, "index", f"Must be from 0 to {sae.width - 1}.", index)
            )
        elif index in seen:
            problems.append(
                ImportProblem(number, "index", f"Feature {index} is also entry {seen[index]}.")
            )
        else:
            seen[index] = number
        values = {k: v for k, v in entry.items() if k != "index" and k not in _EXPORT_ONLY}
        try:
            clean = annotation_values_clean(values)
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                problems.extend(ImportProblem(number, field, m, index) for m in messages)
            continue
        if index is not None:
            checked.append((index, clean))
    if problems:
        raise AnnotationImportError(problems)
    return checked


def annotations_import(sae: SaeRecord, data: Any, *, actor: Actor) -> ImportResult:
    """Apply an export document (or one written by hand) to ``sae``: all entries or none.

    Features the file leaves out keep their annotations; each entry replaces its feature's
    annotation and is recorded in its history as made by ``actor`` through an import.
    """
    checked = _import_check(sae, data)
    existing = set(
        FeatureAnnotation.objects.filter(sae=sae, index__in=[i for i, _ in checked]).values_list(
            "index", flat=True
        )
    )
    created = changed = 0
    with transaction.atomic():
        for index, values in checked:
            change = annotation_save(
                sae=sae,
                index=index,
                actor=actor,
                values=values,
                via=FeatureAnnotationChange.Via.IMPORT,
            )
            if change is not None:
                if index in existing:
                    changed += 1
                else:
                    created += 1
        result = ImportResult(
            created=created, changed=changed, unchanged=len(checked) - created - changed
        )
        audit_record(
            "annotation.import",
            actor=actor,
            obj=sae,
            object_id=sae.name,
            detail={"entries": len(checked), "created": created, "changed": changed},
        )
    return result
