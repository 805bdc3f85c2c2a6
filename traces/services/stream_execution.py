"""Analysing an ingest batch into its day's stream runs (an ``ingest`` worker).

A batch is one chunk of each stream run: its requests are appended to the day's prompt set
(stored redacted where the profile says so), read teacher-forced (prompt, then the completion
the service gave) by one forward pass that feeds every SAE of the manifest, and committed with
the batch's state in one transaction, so a redelivered batch never doubles a trace. Chunks are
numbered in commit order; the batch's lock on the day's leader run serialises the workers of
one stream.
"""

from __future__ import annotations

import time
from typing import Any

from django.db import transaction
from django.utils import timezone

from scopeweb.jobs.services import JobError
from traces.bundle.chunks import write_chunk
from traces.chat_messages import ChatMessages, PromptInput, chat_messages, chat_text
from traces.ingest.models import IngestBatch, IngestedRequest
from traces.models import AnalysisRun, Prompt, PromptSet
from traces.services.originals import content_digest, run_token_redaction
from traces.services.prompt_sets import stored_content
from traces.services.run_execution import chunk_insert, run_loaded_sae, stored_codes


def _conversation(original: dict[str, Any]) -> PromptInput:
    """What the engine reads: a lone user message as plain text, else the conversation
    (through the checkpoint's chat template); turns it cannot template become a transcript."""
    given: ChatMessages = [dict(m) for m in original["messages"]]
    if len(given) == 1 and given[0]["role"] == "user":
        return given[0]["content"]
    messages, problems = chat_messages(given)
    return messages if not problems else chat_text(given)


def stream_chunk_execute(
    batch: IngestBatch, runs: list[AnalysisRun], originals: list[dict[str, Any]]
) -> None:
    from traces.engine import runtime
    from traces.engine.analyze import analyze_chunk_multi
    from traces.engine.shipped import chunk_from_shipped
    from traces.services.shipped_features import shipped_traces

    leader = runs[0]
    manifest = batch.manifest
    inputs = [_conversation(original) for original in originals]
    completions = [str(o.get("completion") or "") for o in originals]
    dtype = runtime.default_dtype()
    try:
        loaded = runtime.model_for(leader.model_reference, dtype)
    except ValueError as exc:
        raise JobError(f"The model {leader.model_reference!r} cannot be loaded: {exc}") from None
    saes = [run_loaded_sae(run, loaded) for run in runs]
    stored = [stored_content(prompt, manifest.profile) for prompt in inputs]
    redaction = run_token_redaction(manifest.profile)
    keys = list(range(len(inputs)))
    started = time.monotonic()
    shipped, why = shipped_traces(
        originals, runs, saes, manifest.top_k, manifest.max_tokens_capture
    )
    if shipped is not None:
        results = chunk_from_shipped(
            loaded,
            list(zip(keys, inputs, strict=True)),
            shipped,
            saes=len(saes),
            top_k=manifest.top_k,
            redaction=redaction,
        )
        activations = "the tracer's, from the request's own forward passes"
    else:
        results = analyze_chunk_multi(
            loaded,
            saes,
            list(zip(keys, inputs, strict=True)),
            top_k=manifest.top_k,
            capture_limit=manifest.max_tokens_capture,
            redaction=redaction,
            completions=dict(zip(keys, completions, strict=True)),
        )
        activations = f"recomputed teacher-forced ({why})"
    seconds = time.monotonic() - started
    with transaction.atomic():
        locked = IngestBatch.objects.select_for_update().get(pk=batch.pk)
        if locked.state != IngestBatch.State.PENDING:
            return  # another delivery committed it
        chunk = AnalysisRun.objects.select_for_update().get(pk=leader.pk).chunks_done
        prompts = _append_prompts(leader.prompt_set, originals, inputs, stored, results[0])
        requests = {r.position: r for r in IngestedRequest.objects.filter(batch=batch)}
        for run, sae, result in zip(runs, saes, results, strict=True):
            for item, prompt in zip(result.traces, prompts, strict=True):
                item.key = prompt.pk
            write_chunk(run.artifact_prefix, chunk, result.arrays, stored_codes(redaction))
            by_prompt = chunk_insert(run, chunk, result, seconds)
            AnalysisRun.objects.filter(pk=run.pk).update(
                chunks_total=chunk + 1,
                dtype=dtype,
                device_kind=runtime.device_kind(loaded),
                pins={
                    "model_weights": loaded.weights_sha256,
                    "tokenizer": loaded.tokenizer_sha256,
                    "sae_params": sae.params_sha256,
                },
            )
            if run is leader:
                for position, prompt in enumerate(prompts):
                    request = requests[position]
                    request.trace = by_prompt[prompt.pk]
                    request.token_check = _token_check(
                        request, result.traces[position], shipped is not None
                    )
                    request.activations = activations[:300]
                    request.save(update_fields=["trace", "token_check", "activations"])
        IngestBatch.objects.filter(pk=batch.pk).update(
            state=IngestBatch.State.DONE, done_at=timezone.now()
        )


def _append_prompts(
    prompt_set: PromptSet,
    originals: list[dict[str, Any]],
    inputs: list[PromptInput],
    stored: list[tuple[str, ChatMessages, dict[str, int]]],
    result: Any,
) -> list[Prompt]:
    locked = PromptSet.objects.select_for_update().get(pk=prompt_set.pk)
    start = locked.prompt_count
    prompts = Prompt.objects.bulk_create(
        Prompt(
            prompt_set=locked,
            position=start + i,
            line=start + i + 1,
            external_id=original["trace_id"],
            text=text,
            messages=messages,
            text_sha256=content_digest(prompt),
            redactions=found,
            tags=[],
            metadata={"trace_id": original["trace_id"], "service": original.get("service", "")},
            token_count=item.prompt_tokens,
            over_capture_limit=item.truncated,
        )
        for i, (original, prompt, (text, messages, found), item) in enumerate(
            zip(originals, inputs, stored, result.traces, strict=True)
        )
    )
    counts = [item.prompt_tokens for item in result.traces]
    PromptSet.objects.filter(pk=locked.pk).update(
        prompt_count=start + len(prompts),
        token_total=locked.token_total + sum(counts),
        token_max=max([locked.token_max, *counts]),
        over_limit_count=locked.over_limit_count + sum(1 for t in result.traces if t.truncated),
    )
    return prompts


def _token_check(sampled: IngestedRequest, item: Any, from_tracer: bool) -> str:
    """The token counts read against those the request reported, when it reported them. A
    tracer reads one completion token fewer than it generated: the last is never fed back."""
    completion_tokens = item.tokens - item.prompt_tokens
    if from_tracer and sampled.output_tokens is not None:
        completion_tokens += 1
    parts = []
    if sampled.input_tokens is not None:
        same = "matches" if sampled.input_tokens == item.prompt_tokens else "differs from"
        parts.append(f"prompt {item.prompt_tokens} {same} the span's {sampled.input_tokens}")
    if sampled.output_tokens is not None:
        same = "matches" if sampled.output_tokens == completion_tokens else "differs from"
        parts.append(f"completion {completion_tokens} {same} the span's {sampled.output_tokens}")
    return "; ".join(parts)[:200]
