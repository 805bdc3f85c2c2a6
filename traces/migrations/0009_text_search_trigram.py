"""The trace list's "text contains" filter on PostgreSQL: trigram GIN indexes on the prompt text
and the completion, on exactly the expression Django's ``icontains`` compares
(``UPPER(column::text) LIKE UPPER(%s)``), so a search reads the matching rows instead of every
prompt. SQLite has no pg_trgm; there the filter scans, which suits its small databases."""

from typing import Any

from django.db import migrations

INDEXES = (
    ("traces_prompt_text_trgm", "traces_prompt", "text"),
    ("traces_trace_completion_trgm", "traces_trace", "completion"),
)


def _create(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm", params=None)
    for name, table, column in INDEXES:
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" '
            f'USING gin ((UPPER("{column}"::text)) gin_trgm_ops)',
            params=None,
        )


def _drop(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _, _ in INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"', params=None)


class Migration(migrations.Migration):
    dependencies = [("traces", "0008_trace_list_indexes")]
    operations = [migrations.RunPython(_create, _drop, elidable=False)]
