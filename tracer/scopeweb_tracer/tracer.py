"""The tracer a Gemma 3 serving process wraps its model with.

``GemmaTracer.generate`` (and ``GemmaTracer.forward``) decide once per request, from its trace
id, whether to trace it (``sampling.decide`` on the manifest: deterministic, so every service
that sees the id decides alike, and the decision travels in ``traceparent``). An unsampled
request runs the model untouched. A sampled one runs with listening hooks on the manifest's
hook points: the residuals of the passes the request makes anyway (the prompt's, then one per
generated token) are kept up to ``max_tokens_capture`` positions. Nothing else happens on the
request's thread: a background encoder thread encodes them with the engine's encoder
(``scopeweb_tracer.encode``) and hands the payload to the ``Shipper``. A full encoder queue
drops the trace and counts it; no error of the tracer ever reaches the request.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import torch

from scopeweb_tracer.capture import attach_hooks
from scopeweb_tracer.encode import encode_sparse
from scopeweb_tracer.sae import LoadedSae
from scopeweb_tracer.sampling import (
    Decision,
    TraceContext,
    decide,
    format_traceparent,
    parse_trace_id,
    parse_traceparent,
)

log = logging.getLogger("scopeweb_tracer")
Ship = Callable[[dict[str, Any]], object]  # Shipper.submit, or anything that takes a record


@dataclass
class Captured:
    """A sampled request's hook values, in the order the passes ran."""

    limit: int
    values: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0  # spent in the hooks, on the request's thread

    def keep(self, name: str, value: torch.Tensor) -> None:
        started = time.perf_counter()
        room = self.limit - self.positions.get(name, 0)
        if room > 0:
            part = value[0, :room].detach()  # one request: row 0
            self.values.setdefault(name, []).append(part)
            self.positions[name] = self.positions.get(name, 0) + part.shape[0]
        self.seconds += time.perf_counter() - started

    def tensor(self, name: str) -> torch.Tensor:
        return torch.cat(self.values[name], 0)


@dataclass
class Request:
    """What the payload says about a request besides its activations."""

    context: TraceContext
    decision: Decision
    tags: Mapping[str, str]
    messages: list[dict[str, str]] | None
    prompt: str | None
    started_at: datetime


class GemmaTracer:
    """Wraps a transformers Gemma 3 model; see the module's docstring."""

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        manifest: Mapping[str, Any],
        saes: Mapping[str, LoadedSae],
        ship: Ship,
        decode: Callable[[list[int]], str],
        encoder_queue: int = 64,
    ) -> None:
        self.model = model
        self.manifest = manifest
        self.saes = dict(saes)
        self.ship = ship
        self.decode = decode
        self.top_k = int(manifest.get("top_k", 32))
        self.limit = int(manifest.get("max_tokens_capture", 1000))
        self.hooks = [h for s in self.saes.values() for h in (s.config.hook_in, s.config.hook_out)]
        self.counts = {"sampled": 0, "not_sampled": 0, "dropped_encoder_busy": 0, "failed": 0}
        self._jobs: queue.Queue[tuple[Request, Captured, list[int], int, float]] = queue.Queue(
            encoder_queue
        )
        self._worker = threading.Thread(target=self._encode_loop, name="scopeweb-encoder")
        self._worker.daemon = True
        self._worker.start()

    # --- the request's side ----------------------------------------------------------------

    def begin(
        self,
        *,
        trace_id: str | int | None = None,
        traceparent: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Request:
        """The request's trace context and sampling decision (made here, once)."""
        context = parse_traceparent(traceparent) if traceparent else None
        if context is None:
            number = parse_trace_id(trace_id) if trace_id is not None else _new_trace_id()
            context = TraceContext(number, secrets.randbits(64) or 1, False)
        now = datetime.now(UTC)
        decision = decide(self.manifest, context.trace_id, dict(tags or {}), now)
        context = TraceContext(context.trace_id, context.span_id, decision.sampled)
        self.counts["sampled" if decision.sampled else "not_sampled"] += 1
        return Request(context, decision, dict(tags or {}), None, None, now)

    def traceparent(self, request: Request) -> str:
        """The header to pass the decision on to the services this request calls."""
        return format_traceparent(request.context)

    def generate(
        self,
        input_ids: torch.Tensor,
        *,
        request: Request | None = None,
        messages: list[dict[str, str]] | None = None,
        prompt: str | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """``model.generate`` for one request (``input_ids [1, n]``), traced when sampled."""
        request = request or self.begin()
        if not request.decision.sampled or input_ids.shape[0] != 1:
            return self.model.generate(input_ids, **kwargs)  # type: ignore[operator,no-any-return]
        request.messages, request.prompt = messages, prompt
        captured = Captured(self.limit)
        handles = self._listen(captured)
        try:
            output = self.model.generate(input_ids, **kwargs)  # type: ignore[operator]
        finally:
            self._unlisten(captured, handles)
        self._hand_over(request, captured, output[0].tolist(), input_ids.shape[1])
        return output  # type: ignore[no-any-return]

    def forward(
        self,
        input_ids: torch.Tensor,
        *,
        request: Request | None = None,
        prompt: str | None = None,
        prompt_tokens: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """``model(input_ids)`` for one request (scoring, teacher-forced reads), traced when
        sampled; ``prompt_tokens`` marks where a given completion starts."""
        request = request or self.begin()
        if not request.decision.sampled or input_ids.shape[0] != 1:
            return self.model(input_ids=input_ids, **kwargs)
        request.prompt = prompt
        captured = Captured(self.limit)
        handles = self._listen(captured)
        try:
            output = self.model(input_ids=input_ids, **kwargs)
        finally:
            self._unlisten(captured, handles)
        ids = input_ids[0].tolist()
        self._hand_over(request, captured, ids, prompt_tokens or len(ids))
        return output

    def _listen(self, captured: Captured) -> list[Any]:
        started = time.perf_counter()
        try:
            return attach_hooks(self.model, self.hooks, captured.keep)
        except Exception:  # never the request's problem
            log.exception("scopeweb tracer: could not attach hooks")
            self.counts["failed"] += 1
            return []
        finally:
            captured.seconds += time.perf_counter() - started

    def _unlisten(self, captured: Captured, handles: list[Any]) -> None:
        started = time.perf_counter()
        for handle in handles:
            handle.remove()
        captured.seconds += time.perf_counter() - started

    def _hand_over(
        self, request: Request, captured: Captured, ids: list[int], prompt_tokens: int
    ) -> None:
        """Queue the encode (never waits). What the request paid: attaching, running and
        removing the hooks, and this hand-over."""
        started = time.perf_counter()
        try:
            overhead = captured.seconds + (time.perf_counter() - started)
            self._jobs.put_nowait((request, captured, ids, prompt_tokens, overhead))
        except queue.Full:
            self.counts["dropped_encoder_busy"] += 1

    # --- the encoder thread ----------------------------------------------------------------

    def _encode_loop(self) -> None:
        while True:
            request, captured, ids, prompt_tokens, overhead = self._jobs.get()
            try:
                self.ship(self.payload(request, captured, ids, prompt_tokens, overhead))
            except Exception:
                log.exception("scopeweb tracer: could not encode a trace")
                self.counts["failed"] += 1
            finally:
                self._jobs.task_done()

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every queued trace has been encoded and handed to the shipper."""
        deadline = time.monotonic() + timeout
        while self._jobs.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._jobs.unfinished_tasks

    @torch.inference_mode()
    def payload(
        self,
        request: Request,
        captured: Captured,
        ids: list[int],
        prompt_tokens: int,
        overhead: float,
    ) -> dict[str, Any]:
        """The plain ingest format's record, with each SAE's top-k (``features``)."""
        completion = self.decode(ids[prompt_tokens:]) if len(ids) > prompt_tokens else ""
        record: dict[str, Any] = {
            "trace_id": f"{request.context.trace_id:032x}",
            "span_id": f"{request.context.span_id:016x}",
            "completion": completion,
            "tags": dict(request.tags),
            "input_tokens": prompt_tokens,
            "output_tokens": max(len(ids) - prompt_tokens, 0),
            "started_at": request.started_at.isoformat().replace("+00:00", "Z"),
            "overhead_ms": round(overhead * 1000, 3),
        }
        if request.messages:
            record["messages"] = request.messages
        else:
            record["prompt"] = request.prompt or self.decode(ids[1:prompt_tokens])
        if self.hooks and all(h.name in captured.values for h in self.hooks):
            positions = captured.positions[self.hooks[0].name]
            record["features"] = {
                "token_ids": ids[:positions],
                "prompt_tokens": min(prompt_tokens, positions),
                "saes": {
                    name: sae_features(sae, captured, self.top_k) for name, sae in self.saes.items()
                },
            }
        return record


def sae_features(sae: LoadedSae, captured: Captured, top_k: int) -> dict[str, Any]:
    """One SAE's columns for the captured positions (as the bundle stores them), and the sums
    the server turns into FVU against the registry's dataset-level mean."""
    x = captured.tensor(sae.config.hook_in.name)
    y = captured.tensor(sae.config.hook_out.name).float()
    codes = encode_sparse(sae.sae, x, top_k)
    body = y[1:]  # BOS left out of the sums, as in the engine
    return {
        "top_idx": codes.indices.tolist(),
        "top_val": codes.values.tolist(),
        "l0": codes.l0.tolist(),
        "recon_err": (y - codes.recon).pow(2).sum(1).tolist(),
        "resid_norm": x.float().norm(dim=1).tolist(),
        "sum_y": body.sum(0).tolist(),
        "sum_y2": float(body.pow(2).sum()),
    }


def _new_trace_id() -> int:
    return secrets.randbits(128) or 1
