"""Bidi controls in stored text are shown on pages and in PDFs, never obeyed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from reports.pdf.render import html_to_pdf
from scopeweb.bidi import show_bidi
from tests.conftest import client_for
from tests.factories import make_prompt_set
from tests.tools import needs

TROJAN = "access = \u202eresu\u202c if admin \u2066x\u2069"


def test_each_bidi_control_becomes_a_visible_mark() -> None:
    assert show_bidi(TROJAN) == "access = ⟦U+202E⟧resu⟦U+202C⟧ if admin ⟦U+2066⟧x⟦U+2069⟧"
    controls = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))]
    assert all(c not in show_bidi("".join(controls)) for c in controls)
    assert show_bidi("שלום hello مرحبا") == "שלום hello مرحبا"  # RTL text itself stays


@pytest.mark.django_db
def test_a_prompt_list_shows_the_controls_of_a_stored_prompt(reviewer: User) -> None:
    prompt_set = make_prompt_set(prompts=[TROJAN, "plain"])
    page = client_for(reviewer).get(reverse("prompt_set_detail", args=[prompt_set.pk]))
    html = page.content.decode()
    assert page.status_code == 200 and "\u202e" not in html and "\u2066" not in html
    assert "⟦U+202E⟧resu⟦U+202C⟧" in html
    assert (
        int(page["Content-Length"]) == len(page.content)
        if page.has_header("Content-Length")
        else True
    )


@needs("pdftotext", package="poppler-utils")
def test_a_pdf_shows_the_controls(tmp_path: Path) -> None:
    path = tmp_path / "bidi.pdf"
    path.write_bytes(html_to_pdf(f"<p>{TROJAN}</p>").data)
    text = subprocess.run(
        ["pdftotext", str(path), "-"], capture_output=True, check=True, timeout=60, text=True
    ).stdout
    assert "U+202E" in text and "\u202e" not in text
