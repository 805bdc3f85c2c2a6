"""Original texts of prompt sets whose profile redacts before storage (UK ``required``, FR
``strong``).

Such a prompt set stores each prompt redacted (every field: ``stored_prompts.stored_prompt``),
with the keyed digest of the original text (``Prompt.text_sha256``: ``content_digest``,
HMAC-SHA256, so that it confirms no guess). The engine must analyse the original, so it reads it
again from the upload the import kept (the import job's ``params["upload_path"]``), parsed as
the import parsed it and checked prompt by prompt against those digests. The retention purge
deletes that upload after ``RETENTION_ORIGINAL_HOURS``; a reviewer who still needs a run then
supplies the original file again (``prompt_set_original_supply``), which is accepted only when
every prompt matches.

US (``best_effort``) prompt sets store the text as given: the stored text is the original.

A conversation (``Prompt.messages``) is redacted message by message, and its hash is that of its
messages (``content_digest``), so the engine reads back exactly the conversation imported.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from scopeweb.accounts.actor import Actor
from scopeweb.audit.services import audit_record
from scopeweb.jobs.models import Job
from scopeweb.redaction import redact_tokens
from scopeweb.redaction.custom import custom_patterns_of
from scopeweb.redaction.digests import original_digest
from scopeweb.refusals import Refused
from scopeweb.retention.models import RetentionProfile
from scopeweb.storage import bytes_sha256, delete_file, exists, read_bytes, store_new
from traces.bundle.redaction import redaction_codes
from traces.chat_messages import ChatMessages, PromptInput
from traces.models import Prompt, PromptSet
from traces.prompt_files import (
    ParsedPrompt,
    PromptFileError,
    parse_prompt_file,
    prompt_limits,
    safe_file_name,
)

if TYPE_CHECKING:
    from traces.engine.analyze import TokenRedaction


class OriginalUnavailable(Exception):
    """The original texts cannot be read (gone, or no longer what was imported)."""


class OriginalRefused(Refused):
    """A re-supplied original is not the file that was imported; the message says where."""

    status = 400


def content_digest(content: PromptInput) -> str:
    """What ``Prompt.text_sha256`` holds: the keyed digest (``original_digest``, HMAC-SHA256
    under ``settings.HASH_KEY``) of a text, or of a conversation's messages as compact JSON
    (keys sorted, UTF-8), which pins every message and its role exactly. Keyed, so that the
    digest of an original never confirms a guess of the personal data redacted from it."""
    if not isinstance(content, str):
        content = json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return original_digest(content.encode("utf-8"))


def source_digest(data: bytes, profile: RetentionProfile) -> str:
    """What ``PromptSet.source_sha256`` holds: the uploaded file's sha256 (``sha256sum`` of the
    file gives it) or, for a profile that redacts before storage, its keyed digest, since a
    small file (a one-prompt set made from pasted text) is a guess one could confirm."""
    if profile.redacts_before_storage:
        return original_digest(data)
    return bytes_sha256(data)


Stored = tuple[int, int, str, ChatMessages, str]  # pk, line, text, messages, text_sha256


def _stored_prompts(prompt_set: PromptSet) -> list[Stored]:
    """(pk, line, text, messages, text_sha256) of every prompt, in file order."""
    return list(
        Prompt.objects.filter(prompt_set=prompt_set)
        .order_by("position")
        .values_list("pk", "line", "text", "messages", "text_sha256")
    )


def _mismatch(parsed: list[ParsedPrompt], stored: list[Stored], what: str) -> str | None:
    """Why ``parsed`` is not the imported file, naming the first line that differs; None when
    every prompt matches."""
    for prompt, (_, line, _, _, digest) in zip(parsed, stored, strict=False):
        if content_digest(prompt.content) != digest:
            return (
                f"{what} differs from the imported prompt set at line {prompt.line}: its prompt "
                f"does not have the sha256 of the prompt imported from line {line}."
            )
    if len(parsed) != len(stored):
        return (
            f"{what} holds {len(parsed)} prompts; the prompt set holds {len(stored)}, so it is "
            "not the file that was imported."
        )
    return None


def original_path(prompt_set: PromptSet) -> str:
    """Where the kept original upload is (or was); "" when the import left no record."""
    job = prompt_set.import_job
    return str(job.params.get("upload_path", "")) if job is not None else ""


def original_available(prompt_set: PromptSet) -> bool:
    """Whether the engine can read the originals of a prompt set that redacts before storage."""
    job = prompt_set.import_job
    if job is None or job.params.get("original_purged_at"):
        return False
    path = original_path(prompt_set)
    return exists(path)


def prompts_for_analysis(prompt_set: PromptSet) -> list[tuple[int, PromptInput]]:
    """(prompt pk, what the engine analyses) in file order: the text, or a conversation's
    messages; stored, or for a profile that redacts before storage the verified original.
    Raises ``OriginalUnavailable``."""
    stored = _stored_prompts(prompt_set)
    if not prompt_set.profile.redacts_before_storage or not any(d for *_, d in stored):
        # Stored as given (US, or imported before redaction before storage existed).
        return [(pk, messages or text) for pk, _, text, messages, _ in stored]
    name = f"prompt set {prompt_set.name!r} ({prompt_set.profile.code})"
    job = prompt_set.import_job
    path = original_path(prompt_set)
    gone = (
        f"The original texts of {name} are no longer stored (the profile keeps them only for a "
        "while after import, then only the redacted text remains). Supply the original file "
        "again on the prompt set's page, then start the run again."
    )
    if job is None or not path or job.params.get("original_purged_at"):
        raise OriginalUnavailable(gone)
    try:
        data = read_bytes(path)
    except OSError:
        raise OriginalUnavailable(gone) from None
    try:
        _, parsed = parse_prompt_file(
            data,
            filename=str(job.params.get("filename", path)),
            limits=prompt_limits(),
            file_format=str(job.params.get("format", "")),
        )
    except PromptFileError as exc:
        raise OriginalUnavailable(f"The stored original of {name} cannot be read: {exc}") from None
    problem = _mismatch(parsed, stored, f"The stored original of {name}")
    if problem:
        raise OriginalUnavailable(problem + " Supply the original file again.")
    return [(pk, prompt.content) for (pk, *_), prompt in zip(stored, parsed, strict=True)]


def prompt_texts_for_analysis(prompt_set: PromptSet) -> list[PromptInput]:
    """``prompts_for_analysis`` without the pks (texts, and conversations as messages)."""
    return [content for _, content in prompts_for_analysis(prompt_set)]


def run_token_redaction(profile: RetentionProfile) -> TokenRedaction | None:
    """What the engine needs to redact stored token strings under ``profile`` (None: store
    them as given). Worker-side: imports the engine."""
    if not profile.redacts_before_storage:
        return None
    from traces.engine.analyze import TokenRedaction

    categories = [category for _, _, category in custom_patterns_of(profile.custom_patterns)]

    def find(tokens: list[str]) -> tuple[list[str], list[str | None]]:
        return redact_tokens(tokens, profile)

    return TokenRedaction(find=find, codes=redaction_codes(categories))


def prompt_set_original_supply(
    prompt_set: PromptSet,
    *,
    file: IO[bytes],
    filename: str,
    size: int,
    actor: Actor,
) -> int:
    """Accept the original file of ``prompt_set`` again, when each of its prompts has the
    sha256 recorded at import; it becomes the stored upload that runs read. Returns the number
    of prompts. Raises ``OriginalRefused`` naming the first line that differs."""
    if not prompt_set.profile.redacts_before_storage:
        raise OriginalRefused(
            f"Prompt set {prompt_set.name!r} stores its prompts as given "
            f"({prompt_set.profile.code}); it needs no original file."
        )
    job = prompt_set.import_job
    if job is None:
        raise OriginalRefused("This prompt set has no import record to keep an original with.")
    limits = prompt_limits()
    if size > limits.max_bytes:
        raise OriginalRefused(f"The file is {size:,} bytes; the limit is {limits.max_bytes:,}.")
    data = file.read(limits.max_bytes + 1)
    file_format = str(job.params.get("format", ""))
    try:
        _, parsed = parse_prompt_file(
            data, filename=filename, limits=limits, file_format=file_format
        )
    except PromptFileError as exc:
        raise OriginalRefused(f"The file was refused: {exc}") from None
    stored = _stored_prompts(prompt_set)
    if not any(d for *_, d in stored):
        raise OriginalRefused(
            "This prompt set was imported without the sha256 of its originals, so a file "
            "cannot be checked against it."
        )
    problem = _mismatch(parsed, stored, "The file")
    if problem:
        raise OriginalRefused(problem)
    path = store_new(
        f"uploads/originals/{prompt_set.pk}/{uuid.uuid4()}/{safe_file_name(filename)}", data
    )
    try:
        with transaction.atomic():
            locked = Job.objects.select_for_update().get(pk=job.pk)
            before = str(locked.params.get("upload_path", ""))
            params = {k: v for k, v in locked.params.items() if k != "original_purged_at"}
            locked.params = params | {
                "upload_path": path,
                "filename": filename,
                "format": file_format,
                "original_supplied_at": timezone.now().isoformat(),
            }
            locked.save(update_fields=["params"])
            audit_record(
                "prompt_set.original_supplied",
                actor=actor,
                obj=prompt_set,
                detail={
                    "filename": filename,
                    "bytes": len(data),
                    "sha256": source_digest(data, prompt_set.profile),
                    "prompts": len(parsed),
                },
            )
    except Exception:
        delete_file(path)
        raise
    if before and before != path:
        delete_file(before)  # an older copy: one original is kept, not two
    prompt_set.import_job = locked
    return len(parsed)


@dataclass(frozen=True)
class RedactionSummary:
    prompts_redacted: int
    counts: dict[str, int]  # category -> spans, over every prompt and every field
    original_kept: bool  # the engine can read the originals now
    fields: dict[str, int] = field(default_factory=dict)  # field -> spans (the import's record)


@dataclass(frozen=True)
class FlagSummary:
    prompts_flagged: int
    counts: dict[str, int]  # category -> spans found and kept


def _import_redaction(prompt_set: PromptSet) -> dict[str, Any]:
    """What the import recorded about redaction (``stored_prompts.import_redaction_summary``);
    empty for a prompt set imported before it did."""
    job = prompt_set.import_job
    found = (job.result or {}).get("redaction") if job is not None else None
    return found if isinstance(found, dict) else {}


def prompt_set_redaction_summary(prompt_set: PromptSet) -> RedactionSummary | None:
    """How many prompts were redacted before storage, by category; None for a profile that
    stores prompts as given."""
    if not prompt_set.profile.redacts_before_storage:
        return None
    counts: Counter[str] = Counter()
    redacted = 0
    for found in Prompt.objects.filter(prompt_set=prompt_set).values_list("redactions", flat=True):
        if found:
            redacted += 1
            counts.update({str(k): int(v) for k, v in found.items()})
    recorded = _import_redaction(prompt_set).get("redacted_fields", {})
    fields = {str(k): int(v) for k, v in recorded.items()}
    return RedactionSummary(
        redacted, dict(sorted(counts.items())), original_available(prompt_set), fields
    )


def prompt_set_flag_summary(prompt_set: PromptSet) -> FlagSummary | None:
    """The credentials found and kept by the import of a prompt set that stores prompts as
    given (US), from the import's record; None when there were none (or another profile)."""
    if prompt_set.profile.redacts_before_storage:
        return None
    recorded = _import_redaction(prompt_set)
    counts = {str(k): int(v) for k, v in recorded.get("flagged", {}).items()}
    if not counts:
        return None
    return FlagSummary(int(recorded.get("prompts_flagged", 0)), counts)
