"""The report's HTML (a Django template) rendered to PDF bytes with WeasyPrint.

Everything the page needs is inline (the print stylesheet, the SVG plots), so rendering reads
no URL and no file but the system's fonts (DejaVu, which Debian ships).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.template.loader import render_to_string

from reports.pdf.document import ReportDocument
from scopeweb.bidi import show_bidi

TEMPLATE = "reports/pdf/report.html"


@dataclass(frozen=True)
class RenderedPdf:
    data: bytes
    pages: int


def report_html(document: ReportDocument) -> str:
    return render_to_string(TEMPLATE, {"doc": document, "case": document.case})


def render_pdf(document: ReportDocument) -> RenderedPdf:
    return html_to_pdf(report_html(document))


def html_to_pdf(html: str) -> RenderedPdf:
    """A report's HTML as a PDF (unsigned). Bidi controls in it are shown, not obeyed."""
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    # The template inlines everything; a URL in reviewers' text must never make the worker
    # fetch anything, so only data: URLs are allowed.
    fetcher = URLFetcher(allowed_protocols=("data",))
    rendered = HTML(string=show_bidi(html), url_fetcher=fetcher).render()
    data = rendered.write_pdf()
    assert data is not None  # without a target, write_pdf returns the bytes
    return RenderedPdf(data=bytes(data), pages=len(rendered.pages))
