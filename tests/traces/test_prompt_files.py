from __future__ import annotations

import json

import pytest

from traces.prompt_files import Limits, ParsedPrompt, PromptFileError, parse_prompt_file

LIMITS = Limits(max_bytes=5_000_000, max_prompts=20_000, max_chars=2_000)


def parse(
    data: bytes | str, filename: str = "p.jsonl", *, limits: Limits = LIMITS, file_format: str = ""
) -> list[ParsedPrompt]:
    raw = data.encode() if isinstance(data, str) else data
    return parse_prompt_file(raw, filename=filename, limits=limits, file_format=file_format)[1]


def problems(data: bytes | str, filename: str = "p.jsonl", *, limits: Limits = LIMITS) -> list[str]:
    with pytest.raises(PromptFileError) as caught:
        parse(data, filename, limits=limits)
    return [str(problem) for problem in caught.value.problems]


def test_jsonl_reads_prompt_id_tags_and_keeps_other_keys() -> None:
    rows = parse(
        '{"prompt": "hello", "id": 7, "tags": ["a", "b"], "source": "x"}\n\n{"prompt": "second"}\n'
    )
    first, second = rows
    assert (first.line, first.text, first.external_id, first.tags) == (1, "hello", "7", ["a", "b"])
    assert first.metadata == {"source": "x"}
    assert second.line == 3


def test_every_bad_jsonl_row_is_listed_by_line() -> None:
    found = problems(
        '{"prompt": "ok"}\n{"prompt": 5}\nnot json\n["a"]\n{"text": "x"}\n'
        '{"prompt": "t", "tags": "a;b"}\n'
    )
    assert found == [
        'line 2: "prompt" must be a string',
        "line 3: not valid JSON: Expecting value (column 1)",
        'line 4: each line must be a JSON object with a "prompt" or "messages"',
        'line 5: missing "prompt" (or "messages")',
    ]


def test_csv_needs_a_prompt_column_and_names_what_it_found() -> None:
    assert problems("text,id\nhello,1\n", "p.csv") == [
        "line 1: the header has no \"prompt\" column (columns found: 'text', 'id')"
    ]


def test_csv_reads_quoted_multiline_prompts_and_reports_their_first_line() -> None:
    rows = parse('id,Prompt,tags\n1,"two\nlines",x;y\n2,plain,\n', "p.csv")
    assert [(r.line, r.text, r.tags) for r in rows] == [
        (2, "two\nlines", ["x", "y"]),
        (4, "plain", []),
    ]
    assert problems('prompt,id\n"a",1\nb,2,extra\n', "p.csv") == [
        "line 3: has 3 fields where the header has 2"
    ]


def test_plain_text_skips_blank_lines() -> None:
    rows = parse("first\n\n  \nsecond\r\n", "p.txt")
    assert [(r.line, r.text) for r in rows] == [(1, "first"), (4, "second")]


def test_wrong_encoding_names_the_line_and_byte() -> None:
    data = b"ok line\n" + "caf\xe9\n".encode("latin-1")
    assert problems(data, "p.txt") == [
        "line 2: not valid UTF-8 (byte 0xe9 at column 4); save the file as UTF-8"
    ]


def test_utf8_bom_is_accepted() -> None:
    assert [r.text for r in parse("\ufefffirst\n", "p.txt")] == ["first"]


def test_empty_file_is_refused() -> None:
    assert problems("", "p.txt") == ["The file is empty: it holds no prompts."]
    assert problems("\n \n", "p.txt") == ["The file is empty: it holds no prompts."]


def test_oversize_file_is_refused_with_the_limit() -> None:
    small = Limits(max_bytes=100, max_prompts=10, max_chars=50)
    assert problems("x" * 101, "p.txt", limits=small) == [
        "The file is 101 bytes; the limit is 100 bytes."
    ]


def test_too_many_prompts_and_too_long_prompts() -> None:
    small = Limits(max_bytes=10_000, max_prompts=2, max_chars=5)
    assert problems("a\nb\nabcdefg\n", "p.txt", limits=small) == [
        "The file holds 3 prompts; the limit is 2.",
        "line 3: the prompt has 7 characters; the limit is 5",
    ]


def test_duplicate_prompts_and_ids_point_at_the_first() -> None:
    found = problems('{"prompt": "a", "id": "x"}\n{"prompt": "b", "id": "x"}\n{"prompt": "a"}\n')
    assert found == [
        'line 2: id "x" is already used on line 1',
        "line 3: the same prompt as line 1",
    ]


def test_unknown_extension_asks_for_a_format() -> None:
    assert "name it .jsonl, .csv or .txt" in problems("a", "prompts.xlsx")[0]
    assert [r.text for r in parse("a\n", "prompts.data", file_format="txt")] == ["a"]


def test_ten_thousand_lines_with_one_bad_row_at_the_end() -> None:
    lines = [json.dumps({"prompt": f"prompt number {i}"}) for i in range(9_999)]
    lines.append('{"prompt": "unterminated')
    assert problems("\n".join(lines) + "\n") == [
        "line 10000: not valid JSON: Unterminated string starting at (column 12)"
    ]


def _chat(*messages: object, **row: object) -> str:
    return json.dumps({"messages": list(messages), **row})


def test_jsonl_reads_a_conversation_with_its_id_tags_and_a_readable_text() -> None:
    rows = parse(
        _chat(
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello?"},
            {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": "Bye."},
            id="c1",
            tags=["chat"],
            source="x",
        )
        + "\n"
        + _chat({"role": "user", "content": "One"}, {"role": "model", "content": "Two"})
        + '\n{"prompt": "plain"}\n'
    )
    first, second, plain = rows
    assert first.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello?"},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "Bye."},
    ]
    assert first.text == "system: Be brief.\nuser: Hello?\nassistant: Hi.\nuser: Bye."
    assert (first.external_id, first.tags, first.metadata) == ("c1", ["chat"], {"source": "x"})
    assert first.content == first.messages
    assert second.text == "user: One\nmodel: Two" and second.line == 2
    assert (plain.messages, plain.content) == ([], "plain")


def test_every_bad_conversation_is_listed_by_line_and_message() -> None:
    user = {"role": "user", "content": "hi"}
    lines = [
        json.dumps({"prompt": "both", "messages": [user]}),
        json.dumps({"messages": []}),
        json.dumps({"messages": "hi"}),
        _chat({"role": "bot", "content": "hi"}),
        _chat({"content": "hi"}),
        _chat({"role": "user", "content": 5}),
        _chat({"role": "user"}),
        _chat({"role": "user", "content": "  "}),
        _chat(user, "hello"),
        _chat({"role": "user", "content": "hi", "name": "Ann"}),
        _chat({"role": "assistant", "content": "first"}),
        _chat(user, user),
        _chat(user, {"role": "model", "content": "a"}, {"role": "system", "content": "b"}),
        _chat({"role": "system", "content": "alone"}),
        _chat(user, id="ok"),
    ]
    assert problems("\n".join(lines) + "\n") == [
        'line 1: give "prompt" or "messages", not both',
        'line 2: "messages" is empty: give at least one user message',
        'line 3: "messages" must be a list of {"role": ..., "content": ...} objects',
        "line 4: message 1 has the role 'bot'; use user, assistant, model or system",
        "line 5: message 1 has no role; use user, assistant, model or system",
        'line 6: message 1\'s "content" must be a string',
        'line 7: message 1 has no "content"',
        'line 8: message 1\'s "content" is empty',
        'line 9: message 2 must be an object with "role" and "content"',
        'line 10: message 1 has keys other than "role" and "content": "name"',
        "line 11: message 1 is from assistant: turns must alternate user and model (or "
        "assistant), starting with user",
        "line 12: message 2 is from user: turns must alternate user and model (or assistant), "
        "starting with user",
        "line 13: message 3 is a system message: only the first message may be one",
        "line 14: a system message needs a user message after it",
    ]


def test_conversations_are_checked_like_prompts_for_duplicates_and_length() -> None:
    chat = _chat({"role": "user", "content": "same"})
    assert problems(f"{chat}\n{chat}\n") == ["line 2: the same prompt as line 1"]
    small = Limits(max_bytes=10_000, max_prompts=10, max_chars=10)
    long = _chat({"role": "user", "content": "a long question"})
    assert problems(long + "\n", limits=small) == [
        "line 1: the prompt has 21 characters; the limit is 10"
    ]
