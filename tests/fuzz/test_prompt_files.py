"""Fuzzing prompt files: the parser, the upload API and page, the import the worker runs, and a
gate run's prompt file.

A refused file names its problems (by line where there is one) and leaves nothing behind: no
job, no prompt set, no prompt, no stored upload. An accepted file is stored as the parser read it.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from hypothesis import event, given
from hypothesis import strategies as st

from gates.models import Gate
from gates.services.definitions import gate_token_create
from scopeweb.accounts.actor import Actor
from scopeweb.jobs.models import Job, JobState
from scopeweb.retention.models import RetentionProfile
from tests.fuzz.conftest import (
    Snapshot,
    example,
    fuzz_client,
    fuzz_settings,
    no_server_error,
    nothing_written,
    stored_files,
    tried,
)
from tests.fuzz.multipart import multipart
from tests.fuzz.strategies import (
    SPECIAL,
    Raw,
    damaged,
    dumps,
    json_values,
    legal_text,
    mutated,
    nasty_text,
    short_text,
    weighted,
)
from tests.gates.page_kit import make_gate
from traces.models import Prompt, PromptSet
from traces.prompt_files import Limits, ParsedPrompt, PromptFileError, parse_prompt_file
from traces.services.prompt_sets import prompt_set_import, stored_content

pytestmark = pytest.mark.django_db

LIMITS = Limits(max_bytes=150_000, max_prompts=10, max_chars=5_000)
_SURROGATE = re.compile(r"[\ud800-\udfff]")

# --- what a prompt file holds -----------------------------------------------------------------

# A few texts and ids again and again, so that files repeat them.
prompt_texts = weighted(
    (3, st.sampled_from(("Hello there", "hello there", " Hello there ", "Tell me a story."))),
    (5, nasty_text),
)
ids = weighted(
    (3, st.sampled_from(("p1", "p2", "1", " p1 "))),
    (2, st.integers(-5, 10**25)),
    (2, json_values),
)
tag_values = weighted(
    (3, st.lists(short_text, max_size=4)),
    (1, st.sampled_from(("a;b|c", " ; ", "x" * 70))),
    (1, json_values),
)
roles = st.sampled_from(("user", "assistant", "model", "system", "User", "tool", ""))
# How much of a file is damaged: mostly none or a line, now and then all of it.
dirt = st.sampled_from((0, 0, 0, 1, 3, 10))


def unique(text: str, number: int) -> str:
    """``text`` made unique in its file (a repeated prompt refuses the file)."""
    return f"{text} #{number}"


@st.composite
def conversations(draw: st.DrawFn, number: int, clean: bool) -> list[dict[str, Any]]:
    """Turns in the order a chat template wants (``clean``), or mostly so with any content."""
    system = ["system"] if draw(st.booleans()) else []
    order = system + [("user", "model")[turn % 2] for turn in range(draw(st.integers(1, 4)))]
    if clean:
        return [{"role": role, "content": unique(draw(legal_text), number)} for role in order]
    return [{"role": draw(st.just(role) | roles), "content": draw(prompt_texts)} for role in order]


@st.composite
def clean_jsonl_rows(draw: st.DrawFn, number: int) -> dict[str, Any]:
    row: dict[str, Any] = (
        {"messages": draw(conversations(number, clean=True))}
        if draw(st.integers(0, 4)) == 0
        else {"prompt": unique(draw(legal_text), number)}
    )
    if draw(st.booleans()):
        row["id"] = draw(st.sampled_from((f"p{number}", number, f" id {number} ")))
    if draw(st.booleans()):
        row["tags"] = draw(st.lists(legal_text, max_size=3) | st.just(" a; b |c "))
    if draw(st.booleans()):
        row[draw(legal_text)] = draw(st.none() | st.booleans() | st.integers() | legal_text)
    return row


@st.composite
def dirty_jsonl_rows(draw: st.DrawFn, number: int) -> dict[str, Any]:
    row: dict[str, Any] = (
        {"messages": draw(conversations(number, clean=False))}
        if draw(st.integers(0, 4)) == 0
        else {"prompt": draw(prompt_texts)}
    )
    if draw(st.booleans()):
        row["id"] = draw(ids)
    if draw(st.booleans()):
        row["tags"] = draw(tag_values)
    if draw(st.integers(0, 3)) == 0:
        row[draw(short_text)] = draw(json_values)
    return row


bad_jsonl_lines = weighted(
    (1, st.sampled_from(('{"prompt": "cut', "[1, 2]", "null", "42", '"text"', "{}", "   "))),
    (1, nasty_text),
    (1, st.just(Raw('{"prompt": "x", "n": ' + "1" * 5_000 + "}"))),
    (
        1,
        st.sampled_from((Raw('{"prompt": "x", "n": NaN}'), Raw('{"prompt": "x", "n": -Infinity}'))),
    ),
    (1, st.just(Raw('{"prompt": ' + "[" * 5_000 + "]" * 5_000 + "}"))),
)


@st.composite
def jsonl_texts(draw: st.DrawFn) -> str:
    damage = draw(dirt)
    lines = []
    for number in range(draw(weighted((6, st.integers(1, 12)), (1, st.just(0))))):
        row: Any
        if draw(st.integers(0, 9)) >= damage:
            row = draw(clean_jsonl_rows(number))
        elif draw(st.integers(0, 5)):
            row = draw(dirty_jsonl_rows(number).flatmap(mutated))
        else:
            row = draw(bad_jsonl_lines)
        lines.append(dumps(row, ascii_only=draw(st.booleans())))
    return draw(st.sampled_from(("\n", "\r\n", "\n\n"))).join(lines) + draw(
        st.sampled_from(("", "\n", "\n \n"))
    )


csv_cells = weighted((3, prompt_texts), (1, ids.map(str)), (1, st.sampled_from(("a;b", "x|y"))))
csv_headers = st.sampled_from(("prompt", "Prompt ", "PROMPT", "id", "tags", "note", "", "prompt"))
CLEAN_HEADERS = (["prompt"], ["id", "prompt"], ["prompt", "tags", "note"], [" Prompt", "ID", "x"])


@st.composite
def csv_texts(draw: st.DrawFn) -> str:
    damage = draw(dirt)
    if draw(st.integers(0, 9)) >= damage:
        header = list(draw(st.sampled_from(CLEAN_HEADERS)))
    else:
        header = draw(st.lists(csv_headers | short_text, max_size=5))
        if draw(st.integers(0, 4)) and not any(h.strip().lower() == "prompt" for h in header):
            header.insert(draw(st.integers(0, len(header))), "prompt")
    rows = []
    for number in range(draw(weighted((6, st.integers(1, 10)), (1, st.just(0))))):
        if draw(st.integers(0, 9)) >= damage:
            rows.append(
                [
                    unique(draw(legal_text), number) if name.strip().lower() == "prompt"
                    else draw(st.sampled_from((f"p{number}", ""))) if name.lower() == "id"
                    else draw(st.sampled_from(("a; b", "")) | legal_text)
                    for name in header
                ]
            )  # fmt: skip
        else:
            width = max(0, len(header) + draw(st.sampled_from((0, 0, 0, -1, 1))))
            rows.append(draw(st.lists(csv_cells, min_size=width, max_size=width)))
    if damage and draw(st.integers(0, 6)) == 0:  # by hand: stray and unbalanced quotes
        quote = draw(st.sampled_from(('"', '""', "'", "")))
        return "\n".join(",".join(quote + cell for cell in row) for row in [header, *rows])
    buffer = io.StringIO()
    writer = csv.writer(
        buffer,
        quoting=draw(st.sampled_from((csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC))),
        lineterminator=draw(st.sampled_from(("\r\n", "\n"))),
    )
    for row in [header, *rows]:
        writer.writerow(row)
    return buffer.getvalue()


@st.composite
def txt_texts(draw: st.DrawFn) -> str:
    damage = draw(dirt)
    lines = [
        unique(draw(legal_text), number).replace("\n", " ").replace("\r", " ")
        if draw(st.integers(0, 9)) >= damage
        else draw(prompt_texts | st.sampled_from(SPECIAL))
        for number in range(draw(weighted((6, st.integers(1, 12)), (1, st.just(0)))))
    ]
    return draw(st.sampled_from(("\n", "\r\n"))).join(lines)


EXTENSIONS = {
    "jsonl": ("jsonl", "ndjson", "JSONL"),
    "csv": ("csv", "CSV"),
    "txt": ("txt", "text"),
}


@dataclass(frozen=True)
class PromptUpload:
    filename: str
    file_format: str
    data: bytes


@st.composite
def prompt_uploads(draw: st.DrawFn) -> PromptUpload:
    kind = draw(st.sampled_from(("jsonl", "jsonl", "csv", "txt")))
    text = draw({"jsonl": jsonl_texts(), "csv": csv_texts(), "txt": txt_texts()}[kind])
    extension = draw(
        weighted(
            (8, st.sampled_from(EXTENSIONS[kind])),
            (1, st.sampled_from(("json", "exe", "", "csv.txt", "jsonl "))),
        )
    )
    stem = draw(weighted((6, st.just("prompts")), (1, nasty_text), (1, st.just("../../etc/x"))))
    file_format = draw(weighted((8, st.just("")), (2, st.just(kind)), (1, short_text)))
    data = draw(weighted((20, damaged(text, clean_weight=40)), (1, st.binary(max_size=200))))
    return PromptUpload(f"{stem}.{extension}" if extension else stem, file_format, data)


# --- the parser -------------------------------------------------------------------------------


def _line_count(data: bytes) -> int:
    """Lines as an editor counts them (CSV counts a lone CR inside a quoted field as one)."""
    return max(data.count(b"\n"), len(data.splitlines())) + 1


def _parse(upload: PromptUpload, limits: Limits) -> tuple[str, list[ParsedPrompt]] | None:
    """The parser's reading, or None for a file it refuses (checking how it refuses)."""
    try:
        return parse_prompt_file(
            upload.data, filename=upload.filename, limits=limits, file_format=upload.file_format
        )
    except PromptFileError as exc:
        assert exc.problems and str(exc)
        for problem in exc.problems:
            assert problem.message
            assert problem.line is None or 1 <= problem.line <= _line_count(upload.data) + 1
        return None


def _clean(prompt: ParsedPrompt, limits: Limits) -> None:
    """What the parser must never hand on: text the database or the tokenizer cannot take."""
    for text in [prompt.text, prompt.external_id, *prompt.tags, *map(str, prompt.metadata)]:
        assert "\x00" not in text and not _SURROGATE.search(text), repr(prompt)
    assert prompt.text.strip() and len(prompt.text) <= limits.max_chars
    assert len(prompt.external_id) <= 200


@fuzz_settings(3)
@given(upload=prompt_uploads(), small=st.booleans())
def test_the_parser_returns_clean_prompts_or_names_every_problem(
    upload: PromptUpload, small: bool
) -> None:
    tried("prompt files (parser)")
    limits = Limits(max_bytes=2_000, max_prompts=3, max_chars=100) if small else LIMITS
    parsed = _parse(upload, limits)
    event("parsed" if parsed else "refused")
    if parsed is not None:
        _, prompts = parsed
        assert 0 < len(prompts) <= limits.max_prompts
        for prompt in prompts:
            _clean(prompt, limits)


# Clean files round-trip: what the parser reads is what was written.
plain = st.text(
    st.characters(exclude_categories=("Cs", "Cc", "Zl", "Zp"), exclude_characters="\x85"),
    min_size=1,
    max_size=40,
).filter(lambda text: text.strip() == text and text != "")


@fuzz_settings(1)
@given(
    rows=st.lists(
        st.tuples(plain, st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True),
                  st.lists(st.from_regex(r"[a-z]{1,8}", fullmatch=True), max_size=3), plain),
        min_size=1, max_size=8, unique_by=(lambda row: row[0], lambda row: row[1]),
    ),
    kind=st.sampled_from(("jsonl", "csv", "txt")),
    bom=st.booleans(),
)  # fmt: skip
def test_a_clean_file_reads_back_as_written(
    rows: list[tuple[str, str, list[str], str]], kind: str, bom: bool
) -> None:
    tried("prompt files (round trip)")
    if kind == "jsonl":
        text = "".join(
            dumps({"prompt": p, "id": i, "tags": t, "note": n}) + "\n" for p, i, t, n in rows
        )
    elif kind == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["id", "prompt", "tags", "note"])
        writer.writerows([i, p, ";".join(t), n] for p, i, t, n in rows)
        text = buffer.getvalue()
    else:
        text = "\n".join(p for p, *_ in rows)
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode()
    fmt, prompts = parse_prompt_file(data, filename=f"p.{kind}", limits=LIMITS)
    assert fmt == kind
    assert [p.text for p in prompts] == [p for p, *_ in rows]
    if kind != "txt":
        assert [(p.external_id, p.tags, p.metadata) for p in prompts] == [
            (i, t, {"note": n}) for _, i, t, n in rows
        ]
    if kind != "csv":
        assert [p.line for p in prompts] == list(range(1, len(rows) + 1))


# --- the upload API and page, and the import ---------------------------------------------------


@pytest.fixture
def limits(settings: Any) -> Limits:
    settings.PROMPT_FILE_MAX_BYTES = LIMITS.max_bytes
    settings.PROMPT_SET_MAX_PROMPTS = LIMITS.max_prompts
    settings.PROMPT_MAX_CHARS = LIMITS.max_chars
    return LIMITS


def _import_and_check(job: Job, upload: PromptUpload, limits: Limits, client: Client) -> None:
    """Run the worker's import in this process: it fails naming the problems and keeps nothing,
    or stores every prompt as the parser read it."""
    prompt_set = prompt_set_import(job.pk)  # never raises for a bad file
    job.refresh_from_db()
    event(f"import: {job.state}")
    assert job.state in (JobState.SUCCEEDED, JobState.FAILED), (job.state, job.error)
    parsed = _parse(upload, limits)
    if job.state == JobState.FAILED:
        assert prompt_set is None and parsed is None, job.error
        assert "Nothing from it was stored" in job.error and job.error_details
        assert not PromptSet.objects.exists() and not Prompt.objects.exists()
        assert not stored_files(), "the refused upload is still stored"
        for name in ("job_detail", "api_job"):  # the problems, as the uploader reads them
            page = client.get(reverse(name, args=[job.pk]))
            assert no_server_error("prompt files (upload API)", page, "the job's problems") == 200
        return
    assert prompt_set is not None and parsed is not None
    profile = prompt_set.profile
    stored = list(prompt_set.prompts.order_by("position"))
    assert len(stored) == len(parsed[1]) == prompt_set.prompt_count
    for row, prompt in zip(stored, parsed[1], strict=True):
        text, messages, _ = stored_content(prompt.content, profile)
        assert (row.line, row.text, row.messages) == (prompt.line, text, messages)
        if not profile.redacts_before_storage:  # else redacted too, by the redaction's rules
            assert (row.external_id, row.tags, row.metadata) == (
                prompt.external_id,
                prompt.tags,
                prompt.metadata,
            )
    answer = client.get(reverse("api_prompts", args=[prompt_set.pk]))
    assert no_server_error("prompt files (upload API)", answer, "reading the prompts") == 200
    assert [p["text"] for p in answer.json()["results"]] == [row.text for row in stored]
    assert bool(stored_files()) == profile.redacts_before_storage  # kept only to redact again


profiles = weighted((4, st.sampled_from(("US", "UK", "FR"))), (1, short_text))
names = weighted((6, st.just("fuzzed set")), (1, nasty_text))


@fuzz_settings(1)
@given(upload=prompt_uploads(), name=names, profile=profiles)
def test_an_uploaded_file_is_imported_whole_or_refused_leaving_nothing(
    reviewer: User, limits: Limits, upload: PromptUpload, name: str, profile: str
) -> None:
    tried("prompt files (upload API)")
    client = fuzz_client(reviewer)
    with example():
        before = Snapshot()
        body, content_type = multipart(
            {"name": name, "profile": profile, "format": upload.file_format},
            {"file": (upload.filename, upload.data)},
        )
        answer = client.post(reverse("api_prompt_sets"), body, content_type=content_type)
        status = no_server_error("prompt files (upload API)", answer, "the upload")
        if status != 202:
            assert status == 400, answer.content
            nothing_written("prompt files (upload API)", before, Snapshot(), "the upload")
            return
        job = Job.objects.get(pk=answer.json()["id"])
        assert RetentionProfile.objects.filter(code=profile).exists()
        _import_and_check(job, upload, limits, client)


@fuzz_settings(0.5)
@given(upload=prompt_uploads(), name=names, profile=profiles)
def test_the_upload_page_shows_problems_or_queues_the_import(
    reviewer: User, limits: Limits, upload: PromptUpload, name: str, profile: str
) -> None:
    tried("prompt files (upload page)")
    client = fuzz_client(reviewer)
    with example():
        before = Snapshot()
        body, content_type = multipart(
            {"name": name, "profile": profile, "file_format": upload.file_format},
            {"file": (upload.filename, upload.data)},
        )
        answer = client.post(reverse("prompt_set_upload"), body, content_type=content_type)
        status = no_server_error("prompt files (upload page)", answer, "the upload page")
        if status != 302:
            # 200: the form with the problems; 400: Django's multipart parser refused the body
            # (a part's headers over 10 KB: a file name of thousands of characters)
            assert status in (200, 400), answer.content[:500]
            nothing_written("prompt files (upload page)", before, Snapshot(), "the upload page")
            return
        job = Job.objects.get()
        _import_and_check(job, upload, limits, client)


@pytest.fixture
def gate(admin: User) -> Gate:
    return make_gate(admin)


@pytest.fixture
def gate_client(gate: Gate, admin: User) -> Client:
    key = gate_token_create(gate=gate, name="ci", actor=Actor.command(admin))[1]
    return fuzz_client(authorization=f"Bearer {key}")


@fuzz_settings(0.5)
@given(
    upload=prompt_uploads(),
    label=weighted((4, st.just("")), (2, nasty_text)),
    checkpoint=weighted((4, st.just("")), (1, nasty_text)),
)
def test_a_gate_runs_prompt_file_is_checked_whole_before_anything_is_kept(
    gate: Gate,
    gate_client: Client,
    limits: Limits,
    upload: PromptUpload,
    label: str,
    checkpoint: str,
) -> None:
    tried("prompt files (gate run)")
    with example():
        before = Snapshot()
        body, content_type = multipart(
            {"gate": gate.name, "label": label, "checkpoint": checkpoint},
            {"prompts": (upload.filename, upload.data)},
        )
        answer = gate_client.post(reverse("api_gate_runs"), body, content_type=content_type)
        status = no_server_error("prompt files (gate run)", answer, "the gate run")
        if status != 201:
            assert status == 400, answer.content
            nothing_written("prompt files (gate run)", before, Snapshot(), "the gate run")
            return
        gate_upload = PromptUpload(upload.filename, "", upload.data)  # no format to choose
        assert _parse(gate_upload, limits) is not None
