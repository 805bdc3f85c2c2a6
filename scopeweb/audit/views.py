"""The audit-log page (filters, pages, chain status on demand) and its CSV export."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone

from scopeweb.accounts.access import access
from scopeweb.accounts.actor import Actor
from scopeweb.audit.forms import AuditFilterForm
from scopeweb.audit.models import AuditEvent
from scopeweb.audit.selectors import audit_event_list, audit_events_shown
from scopeweb.audit.services import anchor_problem, audit_chain_check, audit_record

EVENTS_PER_PAGE = 50
CSV_COLUMNS = (
    "id", "at", "actor", "actor_id", "via", "action", "object_type", "object_id", "object_repr",
    "source", "before", "after", "detail", "prev_hash", "hash",
)  # fmt: skip
# A spreadsheet would run a cell starting with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@access("read_audit_log")
def audit_log(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET)
    page = None
    if form.is_valid():
        events = audit_event_list(form.query())
        page = Paginator(events, EVENTS_PER_PAGE).get_page(request.GET.get("page"))
        page.object_list = audit_events_shown(page.object_list)
    chain = audit_chain_check() if request.GET.get("verify") == "1" else None
    # An anchor quoted by a signed report ("ID:SHA256"): does the log still hold it?
    anchor = request.GET.get("anchor", "").strip()[:200]
    export_query = request.GET.copy()
    for name in ("page", "verify", "anchor"):
        export_query.pop(name, None)
    broken = chain.broken_id if chain is not None else None
    context = {
        "form": form,
        "page": page,
        "chain": chain,
        "broken": AuditEvent.objects.filter(pk=broken).first() if broken is not None else None,
        "export_query": export_query.urlencode(),
        "anchor": anchor,
        "anchor_problem": anchor_problem(anchor) if anchor else "",
    }
    return render(request, "audit/audit_log.html", context)


class _Echo:
    """csv.writer writes into this; each row comes back as a string to stream."""

    def write(self, value: str) -> str:
        return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return f"'{text}" if text.startswith(_FORMULA_START) else text


def _csv_rows(events: Any) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for event in events.iterator(chunk_size=2000):
        yield writer.writerow([_cell(getattr(event, name)) for name in CSV_COLUMNS])


@access("read_audit_log")
def audit_events_csv(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """The filtered events as CSV, streamed; the export is itself an event ("audit.export"),
    and lists the events recorded before it."""
    form = AuditFilterForm(request.GET)
    if not form.is_valid():
        problems = "; ".join(
            f"{name}: {' '.join(str(e) for e in errors)}" for name, errors in form.errors.items()
        )
        return HttpResponse(f"Bad filter: {problems}\n", status=400, content_type="text/plain")
    query = form.query()
    export = audit_record(
        "audit.export", actor=Actor.of(request), detail={"filters": query.as_params()}
    )
    events = audit_event_list(query).filter(id__lt=export.pk)
    response = StreamingHttpResponse(_csv_rows(events), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="audit-log-{stamp}.csv"'
    return response
