"""The first-run story in a real browser: an admin makes users, a reviewer imports prompts.

Drives Debian's chromium through Playwright against the live server and a real worker process.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.browser_kit import needs_chromium, sign_in, sign_out
from tests.factories import PASSWORD, make_user

pytestmark = [
    pytest.mark.browser,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    needs_chromium,
]


def _prompt_file(path: Path, count: int, bad_line: int | None = None) -> Path:
    rng = random.Random(7)
    words = [
        "the",
        "river",
        "bank",
        "model",
        "asked",
        "about",
        "weather",
        "safety",
        "tokens",
        "code",
        "poem",
    ]
    lines = [
        json.dumps({"prompt": " ".join(rng.choices(words, k=rng.randint(3, 30))) + f" #{i}"})
        for i in range(count)
    ]
    if bad_line is not None:
        lines[bad_line - 1] = '{"prompt": "no closing quote}'
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def first_admin() -> None:
    # Made before the browser starts: Playwright's event loop forbids the ORM in its thread.
    make_user("admin", "admin")


def test_first_run_story(
    first_admin: None,
    live_server: Any,
    celery_worker_process: subprocess.Popen[bytes],
    page: Any,
    tmp_path: Path,
) -> None:
    base = live_server.url

    # The admin makes a reviewer and an auditor.
    sign_in(page, base, "admin", PASSWORD)
    passwords = {}
    for name, role in [("rita", "reviewer"), ("audrey", "auditor")]:
        page.goto(f"{base}/manage/users/new/")
        page.fill("#id_username", name)
        page.select_option("#id_role", role)
        page.click("button[type=submit]")
        passwords[name] = page.inner_text("#new-password")
    sign_out(page)

    # The reviewer uploads 500 prompts and watches them import with token counts.
    sign_in(page, base, "rita", passwords["rita"])
    page.goto(f"{base}/prompt-sets/upload/")
    page.fill("#id_name", "five hundred")
    page.select_option("#id_profile", "UK")
    page.set_input_files("#id_file", str(_prompt_file(tmp_path / "p500.jsonl", 500)))
    page.click("button[type=submit]")
    page.click("text=Open the prompt set", timeout=120_000)
    facts = page.inner_text(".facts")
    assert "500" in facts and "Imported" in facts
    first_row = page.inner_text("table.prompts tbody tr:first-child")
    assert first_row.split()[-1].isdigit()  # the token count column

    # A file with a bad line is refused, naming the line.
    page.goto(f"{base}/prompt-sets/upload/")
    page.fill("#id_name", "broken")
    page.select_option("#id_profile", "US")
    page.set_input_files("#id_file", str(_prompt_file(tmp_path / "bad.jsonl", 80, bad_line=77)))
    page.click("button[type=submit]")
    page.wait_for_selector(".state.failed", timeout=120_000)
    assert "line 77" in page.inner_text("#job-status")
    page.goto(f"{base}/prompt-sets/")
    assert page.locator("text=broken").count() >= 1  # listed among refused imports
    assert page.locator("a:has-text('five hundred')").count() == 1
    sign_out(page)

    # The auditor can neither upload nor edit profiles, and is not offered either.
    sign_in(page, base, "audrey", passwords["audrey"])
    assert page.locator("a:has-text('Prompt sets')").count() == 0
    assert page.locator("a:has-text('Retention')").count() == 0
    assert page.goto(f"{base}/prompt-sets/upload/").status == 403
    assert page.goto(f"{base}/manage/retention/UK/").status == 403
