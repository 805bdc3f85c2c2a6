"""A staging Gemma 3 server with the tracer installed: OpenAI-compatible ``/v1/chat/completions``
and ``/v1/completions`` over Python's threading HTTP server, one generation at a time.

It is the serving runtime the tracer is built for, small enough to run beside ``make run``: a
chat request becomes a trace in Scope Web when the manifest samples it. ``manage.py
serve_gemma`` starts it; ``bench/tracing.py`` drives it to measure what tracing adds.

Each request's trace id comes from its ``traceparent`` header (W3C) or is made here; the answer
carries the ``traceparent`` with the sampling decision, so callers can pass it on. The route
(``/v1/chat/completions``) and an ``X-Tenant`` header become the request's tags, which the
manifest's rules match.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch

from scopeweb_tracer.sae import LoadedSae
from scopeweb_tracer.tracer import GemmaTracer
from traces.chat_messages import chat_messages
from traces.engine.model import LoadedModel
from traces.engine.prompt_ids import prompt_token_ids

log = logging.getLogger(__name__)
MAX_NEW_TOKENS = 512
MAX_BODY = 1 << 20


class BadRequest(ValueError):
    pass


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    traceparent: str
    sampled: bool
    stopped: bool  # an end-of-turn token ended it, not max_tokens


class StagingModel:
    """The model, its tracer (or none: tracing off), and the lock that serialises generation."""

    def __init__(self, loaded: LoadedModel, tracer: GemmaTracer | None) -> None:
        self.loaded = loaded
        self.tracer = tracer
        self.lock = threading.Lock()

    def complete(
        self,
        prompt: str | list[dict[str, str]],
        *,
        max_tokens: int,
        tags: Mapping[str, str],
        traceparent: str | None,
        seed: int | None = None,
        temperature: float = 0.0,
    ) -> Completion:
        ids = prompt_token_ids(self.loaded, [prompt])[0]
        options: dict[str, Any] = {"max_new_tokens": max_tokens, "pad_token_id": 0}
        if temperature > 0:
            options.update(do_sample=True, temperature=temperature, top_k=50)
        else:
            options["do_sample"] = False
        input_ids = torch.tensor([ids], device=self.loaded.device)
        with self.lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            if self.tracer is None:
                output = self.loaded.model.generate(input_ids, **options)
                header, sampled = traceparent or "", False
            else:
                request = self.tracer.begin(traceparent=traceparent, tags=tags)
                output = self.tracer.generate(
                    input_ids,
                    request=request,
                    messages=prompt if isinstance(prompt, list) else None,
                    prompt=prompt if isinstance(prompt, str) else None,
                    **options,
                )
                header, sampled = self.tracer.traceparent(request), request.decision.sampled
        new = output[0, len(ids) :].tolist()
        eos = {1, 106}  # <eos>, <end_of_turn>
        text_ids = [t for t in new if t not in eos]
        return Completion(
            text=self.loaded.tokenizer.decode(text_ids),
            prompt_tokens=len(ids),
            completion_tokens=len(new),
            traceparent=header,
            sampled=sampled,
            stopped=len(text_ids) < len(new),
        )


def _max_tokens(body: Mapping[str, Any]) -> int:
    value = body.get("max_tokens", body.get("max_completion_tokens", 64))
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_NEW_TOKENS:
        raise BadRequest(f"max_tokens must be an integer from 1 to {MAX_NEW_TOKENS}")
    return value


def _options(body: Mapping[str, Any]) -> dict[str, Any]:
    temperature = body.get("temperature", 0.0)
    if not isinstance(temperature, int | float) or isinstance(temperature, bool):
        raise BadRequest("temperature must be a number")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise BadRequest("seed must be an integer")
    return {"temperature": float(temperature), "seed": seed, "max_tokens": _max_tokens(body)}


def chat_prompt(body: Mapping[str, Any]) -> list[dict[str, str]]:
    raw = body.get("messages")
    if isinstance(raw, list):
        raw = [
            {"role": "model" if m.get("role") == "assistant" else m.get("role"), **{
                "content": m.get("content")}}
            if isinstance(m, dict) else m
            for m in raw
        ]  # fmt: skip
    messages, problems = chat_messages(raw)
    if problems:
        raise BadRequest("; ".join(problems))
    return messages


class Handler(BaseHTTPRequestHandler):
    server: StagingHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _answer(self, status: int, body: Mapping[str, Any], traceparent: str = "") -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if traceparent:
            self.send_header("traceparent", traceparent)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            self._answer(200, {"object": "list", "data": [{"id": self.server.model_name,
                                                           "object": "model"}]})  # fmt: skip
        else:
            self._answer(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        if self.path not in ("/v1/chat/completions", "/v1/completions"):
            self._answer(404, {"error": {"message": f"no route {self.path}"}})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise BadRequest(f"the body is over {MAX_BODY} bytes")
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise BadRequest("the body must be a JSON object")
            self._complete(body)
        except (BadRequest, ValueError) as exc:
            self._answer(400, {"error": {"message": str(exc), "type": "invalid_request_error"}})

    def _complete(self, body: dict[str, Any]) -> None:
        chat = self.path == "/v1/chat/completions"
        if chat:
            prompt: str | list[dict[str, str]] = chat_prompt(body)
        else:
            prompt = body.get("prompt")  # type: ignore[assignment]
            if not isinstance(prompt, str) or not prompt:
                raise BadRequest("prompt must be a non-empty string")
        options = _options(body)
        tags = {"route": self.path}
        if self.headers.get("X-Tenant"):
            tags["tenant"] = self.headers["X-Tenant"][:256]
        done = self.server.staging.complete(
            prompt, tags=tags, traceparent=self.headers.get("traceparent"), **options
        )
        self._answer(HTTPStatus.OK, _openai_body(chat, done, self.server.model_name),
                     done.traceparent)  # fmt: skip


def _openai_body(chat: bool, done: Completion, model: str) -> dict[str, Any]:
    finish = "stop" if done.stopped else "length"
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
    if chat:
        choice["message"] = {"role": "assistant", "content": done.text}
    else:
        choice["text"] = done.text
    return {
        "id": f"cmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": {
            "prompt_tokens": done.prompt_tokens,
            "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens,
        },
    }


class StagingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], staging: StagingModel, model_name: str) -> None:
        super().__init__(address, Handler)
        self.staging = staging
        self.model_name = model_name


def staging_tracer(
    loaded: LoadedModel,
    manifest: Mapping[str, Any],
    saes: Mapping[str, LoadedSae],
    ship: Any,
) -> GemmaTracer:
    return GemmaTracer(
        loaded.model, manifest=manifest, saes=saes, ship=ship, decode=loaded.tokenizer.decode
    )
