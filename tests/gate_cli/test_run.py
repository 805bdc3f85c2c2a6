"""``scopeweb-gate run`` against a fake gate API: its exit codes, what it sends, what it
writes, and that progress goes to stderr while stdout holds the summary alone."""

from __future__ import annotations

import email.parser
import email.policy
import json
import socket
from pathlib import Path

import pytest
from lxml import etree

from scopeweb_gate.cli import main
from tests.gate_cli.conftest import API, TOKEN, FakeGate, result, status

JUNIT = etree.XMLSchema(etree.parse(str(Path(__file__).parents[1] / "gates/data/junit.xsd")))


def run(gate: FakeGate, *extra: str) -> int:
    return main(["run", "--server", gate.url, "--gate", "smoke", "--wait", "--poll", "0", *extra])


def test_a_passing_run_exits_0_and_writes_its_three_outputs(
    gate: FakeGate, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gate.then(status("running"), status("passed", "pass"))
    out = tmp_path / "out"
    code = run(
        gate,
        "--json", str(out / "gate.json"),
        "--junit", str(out / "gate-junit.xml"),
        "--markdown", str(out / "gate-summary.md"),
    )  # fmt: skip
    assert code == 0
    assert json.loads((out / "gate.json").read_text()) == result("pass")
    junit = etree.parse(str(out / "gate-junit.xml"))
    JUNIT.assertValid(junit)
    assert junit.getroot().get("failures") == "0"
    summary = (out / "gate-summary.md").read_text()
    assert "Scope gate smoke passed" in summary
    assert capsys.readouterr().out.strip() == summary.strip()


def test_a_failing_run_exits_1_and_its_junit_names_the_failure(
    gate: FakeGate, tmp_path: Path
) -> None:
    gate.then(status("failed", "fail"))
    assert run(gate, "--junit", str(tmp_path / "j.xml")) == 1
    junit = etree.parse(str(tmp_path / "j.xml"))
    JUNIT.assertValid(junit)
    assert junit.getroot().get("failures") == "1"


def test_progress_goes_to_stderr_once_per_change_and_never_to_stdout(
    gate: FakeGate, capsys: pytest.CaptureFixture[str]
) -> None:
    gate.then(
        status("running", note="candidate run 3/50 prompts", done=1, total=4),
        status("running", note="candidate run 3/50 prompts", done=1, total=4),
        status("running", note="candidate run 40/50 prompts", done=2, total=4),
        status("passed", "pass"),
    )
    assert run(gate) == 0
    captured = capsys.readouterr()
    assert captured.err.count("running - candidate run 3/50 prompts (1/4)") == 1
    assert "running - candidate run 40/50 prompts (2/4)" in captured.err
    assert "run 7: queued" in captured.err
    assert "running" not in captured.out and "queued" not in captured.out
    assert captured.out.startswith("## ✅ Scope gate smoke passed")


def test_without_require_signoff_the_metrics_verdict_decides(gate: FakeGate) -> None:
    gate.then(status("awaiting_signoff", "pass", signoff="pending"), status("rejected", "pass"))
    assert run(gate) == 0
    assert len(gate.requests("GET")) == 1  # stopped at the verdict


def test_with_require_signoff_it_waits_for_the_reviewers(gate: FakeGate) -> None:
    gate.then(
        status("awaiting_signoff", "pass", signoff="pending"),
        status("passed", "pass", signoff="approved by alice"),
    )
    assert run(gate, "--require-signoff") == 0
    assert len(gate.requests("GET")) == 2


def test_a_rejected_run_with_require_signoff_exits_1(gate: FakeGate) -> None:
    gate.then(
        status("awaiting_signoff", "pass", signoff="pending"),
        status("rejected", "pass", signoff="rejected by bob: drifted"),
    )
    assert run(gate, "--require-signoff") == 1


def test_an_error_verdict_exits_2_with_the_reason(
    gate: FakeGate, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gate.then(status("error", "error", error="checkpoint not found: checkpoints/x"))
    assert run(gate, "--junit", str(tmp_path / "j.xml")) == 2
    JUNIT.assertValid(etree.parse(str(tmp_path / "j.xml")))
    assert "checkpoint not found" in capsys.readouterr().err


def test_an_unreachable_server_exits_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SCOPEWEB_GATE_TOKEN", TOKEN)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    code = main(["run", "--server", f"http://127.0.0.1:{port}", "--gate", "smoke", "--wait"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"scopeweb-gate: cannot reach http://127.0.0.1:{port}{API}/runs: " in err
    assert "refused" in err.lower()
    assert "Traceback" not in err


def test_a_refused_field_exits_2_naming_the_field(
    gate: FakeGate, capsys: pytest.CaptureFixture[str]
) -> None:
    gate.created = (400, {"detail": "No such checkpoint.", "field": "checkpoint"})
    assert run(gate, "--checkpoint", "nowhere") == 2
    assert "server said 400 on field checkpoint: No such checkpoint." in capsys.readouterr().err


def test_a_missing_prompts_file_exits_2_before_any_request(
    gate: FakeGate, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "foo.jsonl"
    assert run(gate, "--prompts", str(missing)) == 2
    assert f"scopeweb-gate: --prompts {missing}: no such file" in capsys.readouterr().err
    assert gate.seen == []


def test_waiting_past_the_timeout_exits_2(
    gate: FakeGate, capsys: pytest.CaptureFixture[str]
) -> None:
    gate.then(status("running"))
    assert run(gate, "--timeout", "0.2", "--poll", "0.02") == 2
    assert "timed out after 0.2 s waiting for run 7 (state running)" in capsys.readouterr().err


def test_the_prompts_file_is_uploaded_as_multipart(gate: FakeGate, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes(b'{"prompt": "caf\xc3\xa9 \\"quoted\\""}\r\n{"prompt": "two"}\n')
    gate.then(status("passed", "pass"))
    code = run(gate, "--prompts", str(prompts), "--checkpoint", "ckpt/a", "--label", "PR #12")
    assert code == 0
    (post,) = gate.requests("POST")
    head = f"Content-Type: {post.headers['Content-Type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + post.body)
    parts = {
        part.get_param("name", header="content-disposition"): part for part in message.iter_parts()
    }
    assert parts["prompts"].get_filename() == "prompts.jsonl"
    assert parts["prompts"].get_payload(decode=True) == prompts.read_bytes()
    assert {n: parts[n].get_content().strip() for n in ("gate", "checkpoint", "label")} == {
        "gate": "smoke",
        "checkpoint": "ckpt/a",
        "label": "PR #12",
    }


def test_without_prompts_it_posts_json(gate: FakeGate) -> None:
    gate.then(status("passed", "pass"))
    assert run(gate, "--checkpoint", "ckpt/a") == 0
    (post,) = gate.requests("POST")
    assert post.headers["Content-Type"] == "application/json"
    assert json.loads(post.body) == {"gate": "smoke", "checkpoint": "ckpt/a"}


def test_the_key_goes_as_a_bearer_header(gate: FakeGate) -> None:
    gate.then(status("passed", "pass"))
    assert run(gate) == 0
    assert {s.headers["Authorization"] for s in gate.seen} == {f"Bearer {TOKEN}"}


def test_a_missing_key_exits_2_naming_the_variable(
    gate: FakeGate, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SCOPEWEB_GATE_TOKEN")
    assert run(gate) == 2
    assert "SCOPEWEB_GATE_TOKEN" in capsys.readouterr().err
    assert gate.seen == []


def test_the_key_can_come_from_a_file(
    gate: FakeGate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SCOPEWEB_GATE_TOKEN")
    (tmp_path / "key").write_text(f"{TOKEN}\n")
    gate.then(status("passed", "pass"))
    assert run(gate, "--token-file", str(tmp_path / "key")) == 0


def test_a_wrong_key_exits_2_with_a_hint(
    gate: FakeGate, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SCOPEWEB_GATE_TOKEN", "swg_revoked")
    assert run(gate) == 2
    err = capsys.readouterr().err
    assert "server said 401: Invalid token." in err and "SCOPEWEB_GATE_TOKEN" in err


def test_without_wait_it_prints_the_run_and_exits_0(
    gate: FakeGate, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SCOPEWEB_URL", gate.url)
    assert main(["run", "--gate", "smoke"]) == 0
    assert capsys.readouterr().out == "run 7: http://scope.test/gates/runs/7/\n"
    assert [s.method for s in gate.seen] == ["POST"]


def test_transient_failures_while_polling_are_retried(gate: FakeGate) -> None:
    busy = (503, {"detail": "Service unavailable."})
    gate.then(busy, busy, status("passed", "pass"))
    assert run(gate) == 0


def test_a_server_that_stays_down_while_polling_exits_2(
    gate: FakeGate, capsys: pytest.CaptureFixture[str]
) -> None:
    gate.then((502, {"detail": "Bad gateway."}))
    assert run(gate) == 2
    assert len(gate.requests("GET")) == 4  # the first try and three retries
    assert "server said 502: Bad gateway." in capsys.readouterr().err
