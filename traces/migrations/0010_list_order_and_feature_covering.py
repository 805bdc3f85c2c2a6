"""Two indexes the page benchmark asked for (bench/pages.py, bench/PLANS.md):

- ``trace_run_desc_id`` on ``Trace (run_id DESC, id)``: the trace list's default order
  ("-run_id", "pk") mixes directions, so (run_id, id) could only give it per run, sorted again;
  with this one the first page is the first 51 entries of one index.
- ``tracefeature_feature_peak`` on ``TraceFeature (feature, max_activation DESC, id) INCLUDE
  (trace_id, count)``: a feature's rows in the order its page and the feature filter read them,
  holding what they read, so a flagged mark, a feature filter, a feature's counts and its
  strongest traces are index-only scans instead of one heap page per row.

Plain SQL with no model state: SQLite gets the first (it orders the same way there), PostgreSQL
both (SQLite has no INCLUDE)."""

from typing import Any

from django.db import migrations

LIST_ORDER = (
    'CREATE INDEX IF NOT EXISTS "trace_run_desc_id" ON "traces_trace" ("run_id" DESC, "id")'
)
FEATURE_PEAK = (
    'CREATE INDEX IF NOT EXISTS "tracefeature_feature_peak" ON "traces_tracefeature" '
    '("feature", "max_activation" DESC, "id") INCLUDE ("trace_id", "count")'
)


def _create(apps: Any, schema_editor: Any) -> None:
    schema_editor.execute(LIST_ORDER, params=None)
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FEATURE_PEAK, params=None)


def _drop(apps: Any, schema_editor: Any) -> None:
    schema_editor.execute('DROP INDEX IF EXISTS "trace_run_desc_id"', params=None)
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute('DROP INDEX IF EXISTS "tracefeature_feature_peak"', params=None)


class Migration(migrations.Migration):
    dependencies = [("traces", "0009_text_search_trigram")]
    operations = [migrations.RunPython(_create, _drop, elidable=False)]
