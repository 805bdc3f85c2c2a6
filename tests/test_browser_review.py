"""The reviewer's story in a real browser, on a real run of Gemma 3 270M with the shipped SAE.

Sign in as a reviewer, open a run, open a trace, choose a token and see its features, colour the
strip by one, annotate it with a safety tag and a watch threshold just under its peak in that
trace, find the trace in the triage queue and mark it reviewed from the keyboard.

The run is made in this process before the browser starts; the live server needs no worker.
Screenshots of each step go to ``SCOPEWEB_SCREENSHOT_DIR`` (default ``var/screenshots``).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser_kit import Story, needs_chromium, orm, screenshots, sign_in
from tests.factories import PASSWORD
from traces.services.saes import shipped_sae_folders

pytestmark = [
    pytest.mark.browser,
    # The live server runs in another thread: it must see committed rows, and the seeded roles
    # and retention profiles must survive the flush.
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    needs_chromium,
    pytest.mark.skipif(not shipped_sae_folders(), reason="no SAE shipped yet"),
]


def _strip_styles(page: Any) -> list[str]:
    styles: list[str] = page.eval_on_selector_all(
        "#strip .tok", "spans => spans.map(s => s.style.cssText)"
    )
    return styles


def test_reviewer_story(story: Story, live_server: Any, page: Any) -> None:
    from playwright.sync_api import expect

    base = live_server.url
    save = screenshots("review")

    def shot(name: str) -> None:
        save(page, name)

    # Sign in as the reviewer; open the run from the run list.
    sign_in(page, base, "rita", PASSWORD)
    page.click("nav a:has-text('Runs')")
    page.click(f"table a[href='/runs/{story.run_id}/']")
    expect(page.locator("h1")).to_contain_text(f"Run {story.run_id}")
    expect(page.locator("text=review story").first).to_be_visible()
    shot("run")

    # Open the trace of the last prompt from the run page.
    page.click(f"a[href='/traces/{story.trace_id}/']")
    expect(page.locator("h1")).to_contain_text(f"Trace {story.trace_id}")
    page.wait_for_selector("#token-panel table.panel-features")  # the JS chose token 0
    styles_before = _strip_styles(page)
    shot("trace")

    # Choose the token where the feature first fires: the panel lists its features with values.
    page.click(f"#strip .tok[data-i='{story.token}']")
    expect(page.locator("#token-panel h2")).to_contain_text(f"Token {story.token}")
    expect(page.locator(f"#strip .tok[data-i='{story.token}']")).to_have_class(
        re.compile(r"(^|\s)sel(\s|$)")
    )
    rows = page.locator("#token-panel tr[data-k]")
    assert rows.count() >= 1
    for value in rows.locator("td.value").all_inner_texts():
        assert float(value.split()[0]) > 0
    row = page.locator(f"#token-panel tr[data-f='{story.feature}']")
    expect(row).to_have_count(1)
    shot("token")

    # Colour the strip by that feature: the legend names it and the token colours change.
    row.locator("a.recolour").click()
    page.wait_for_url(f"**/traces/{story.trace_id}/?*feature={story.feature}*")
    expect(page.locator(".legend .legend-title")).to_contain_text(str(story.feature))
    expect(page.locator("#id_feature")).to_have_value(str(story.feature))
    expect(page.locator(f"#token-panel tr.colouring[data-f='{story.feature}']")).to_have_count(1)
    expect(page.locator("#token-panel h2")).to_contain_text(f"Token {story.token}")
    styles_after = _strip_styles(page)
    assert styles_after != styles_before
    assert any(styles_after), "no token is coloured"
    shot("coloured")

    # Open its page from the keyboard: ↓ down to the feature's row, then Enter.
    k = int(page.get_attribute(f"#token-panel tr[data-f='{story.feature}']", "data-k") or 0)
    for _ in range(k + 1):
        page.keyboard.press("ArrowDown")
    expect(page.locator("#token-panel tr.focus")).to_have_attribute("data-f", str(story.feature))
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/saes/{story.sae_name}/features/{story.feature}/")
    expect(page.locator("h1")).to_contain_text(f"Feature {story.feature} of")
    expect(page.locator("text=Not annotated yet.")).to_be_visible()

    # Annotate it: a label, the jailbreak tag, a watch threshold just under its peak here.
    threshold = story.threshold
    page.fill("#id_label", "asks to ignore instructions")
    page.check("input[name=safety_tags][value=jailbreak]")
    page.fill("#id_watch_threshold", str(threshold))
    shot("annotate")
    with page.expect_navigation():
        page.click("#edit button[type=submit]")
    expect(page.locator(f"text=Saved feature {story.feature}.")).to_be_visible()
    annotation = page.locator("section.card:has(h2:text('Annotation'))")
    expect(annotation).to_contain_text("asks to ignore instructions")
    expect(annotation.locator(".badge:has-text('watched')")).to_be_visible()
    history = page.locator("section.card:has(h2:text('History')) tbody tr")
    expect(history).to_have_count(1)
    expect(history.first).to_contain_text("rita")
    expect(history.first).to_contain_text("jailbreak")
    expect(history.first).to_contain_text(str(threshold))
    shot("feature")

    # The trace is in the triage queue, alone; r marks it reviewed and empties the queue.
    page.click("nav a:has-text('Triage')")
    expect(page.locator("#queue-length")).to_have_text("1 in the queue")
    expect(page.locator(".triage-card h2")).to_contain_text(f"Trace {story.trace_id}:")
    tripped = page.locator("table.tripped tbody tr")
    expect(tripped).to_have_count(1)
    expect(tripped.first).to_contain_text("asks to ignore instructions")
    expect(tripped.first).to_contain_text("jailbreak")
    shot("triage")
    page.keyboard.press("r")
    expect(page.locator("text=The queue is empty")).to_be_visible()
    expect(page.locator("#queue-length")).to_have_text("0 in the queue")
    shot("reviewed")

    def reviews() -> list[tuple[int, str, str]]:
        from traces.models import TriageReview

        return list(TriageReview.objects.values_list("trace_id", "reviewer__username", "decision"))

    assert orm(reviews) == [(story.trace_id, "rita", "reviewed")]
