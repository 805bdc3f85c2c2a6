"""The layout's rules, checked on the code itself (see the README's "Layout"):

- the layer contract (platform -> traces -> reports -> governance), as ``make lint`` runs it;
- no import cycle between modules, lazy imports included;
- one owner each for stored files and their hashing (``scopeweb.storage``) and for the bundle
  format (``traces.bundle``);
- services take an ``Actor``, never the HTTP request;
- every task a service queues by name is a registered task;
- modules stay under 400 lines, and views (pages and API) under 30.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest
from importlinter import cli

from traces.services.ingest import INGEST_TASK
from traces.services.manifests import WARM_TASK

ROOT = Path(__file__).resolve().parents[1]
APPS = ("scopeweb", "traces", "reports", "governance", "gates", "tracer", "gatecli")  # folders
PACKAGES = (
    "scopeweb",
    "traces",
    "reports",
    "governance",
    "gates",
    "scopeweb_tracer",
    "scopeweb_gate",
)
MODULE_LINES_MAX = 400
VIEW_LINES_MAX = 30


def _sources() -> Iterator[tuple[str, ast.Module]]:
    """(path relative to the root, parsed module) of every app module but migrations."""
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if "/migrations/" not in relative:
                yield relative, ast.parse(path.read_text(), relative)


def test_no_import_runs_from_a_lower_layer_to_a_higher_one() -> None:
    cwd = Path.cwd()
    os.chdir(ROOT)  # the contract lives in pyproject.toml
    try:
        assert cli.lint_imports(no_cache=True, no_logo=True) == 0, "see the contract above"
    finally:
        os.chdir(cwd)


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The import cycles between modules (strongly connected sets of more than one)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            members = stack[stack.index(module) :]
            del stack[stack.index(module) :]
            if len(members) > 1:
                found.append(sorted(members))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_the_cycle_finder_names_each_cycle_once() -> None:
    graph = grimp.ImportGraph()
    for importer, imported in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("e", "e2")]:
        graph.add_import(importer=importer, imported=imported)
    graph.add_import(importer="e2", imported="e")
    assert sorted(_cycles(graph)) == [["a", "b", "c"], ["e", "e2"]]


def test_no_module_imports_itself_back_through_others() -> None:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    assert _cycles(graph) == []


def _names(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Name):
            found.add(node.id)
    return found


def test_only_the_storage_module_touches_django_storage() -> None:
    allowed = {"scopeweb/storage.py", "scopeweb/settings.py"}
    touching = [
        path
        for path, tree in _sources()
        if path not in allowed
        and any(
            name.startswith("django.core.files.storage") or name == "default_storage"
            for name in _names(tree)
        )
    ]
    assert touching == []


def _strings(tree: ast.AST) -> Iterator[str]:
    """String constants that are not docstrings."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            yield node.value


def test_only_the_storage_module_reads_files_in_blocks_to_hash_them() -> None:
    blockwise = [
        path
        for path, tree in _sources()
        if path != "scopeweb/storage.py"
        and any(
            isinstance(node, ast.Call)
            and getattr(node.func, "id", "") == "iter"
            and node.args
            and isinstance(node.args[0], ast.Lambda)
            for node in ast.walk(tree)
        )
    ]
    assert blockwise == [], "hash with scopeweb.storage (file_sha256, path_sha256, stored_digest)"


def test_only_the_bundle_package_spells_its_file_names_or_writes_its_columns() -> None:
    # An export's own manifest (the zip's table of contents) is the export format's file.
    allowed = {"governance/services/export_build.py"}
    spelled = [
        path
        for path, tree in _sources()
        if not path.startswith("traces/bundle/")
        and path not in allowed
        and any("manifest.json" in text or "chunk-" in text for text in _strings(tree))
    ]
    assert spelled == [], "ask traces.bundle for the names"
    writers = [
        path
        for path, tree in _sources()
        if not path.startswith("traces/bundle/")
        and any(
            isinstance(node, ast.Attribute) and node.attr == "set_column" for node in ast.walk(tree)
        )
    ]
    assert writers == []


def test_services_take_an_actor_never_the_request() -> None:
    taking = [
        f"{path}:{node.name}"
        for path, tree in _sources()
        if "/services/" in path or path.endswith("/services.py")
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and "request" in {a.arg for a in node.args.args + node.args.kwonlyargs}
    ]
    assert taking == []


def test_every_task_a_service_queues_is_a_registered_task() -> None:
    from scopeweb.celery import app

    queued = {
        node.args[1].value
        for _, tree in _sources()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", "") == "job_enqueue"
        and isinstance(node.args[1], ast.Constant)
    }
    assert len(queued) == 7
    app.loader.import_default_modules()
    assert queued - set(app.tasks) == set()
    assert {INGEST_TASK, WARM_TASK} <= set(app.tasks)  # ingestion sends its tasks by name too


@pytest.mark.parametrize("app", APPS)
def test_modules_and_views_stay_small(app: str) -> None:
    lines = {path: len((ROOT / path).read_text().splitlines()) for path, _ in _sources()}
    long_modules = [
        f"{path} ({count} lines)"
        for path, count in lines.items()
        if path.startswith(f"{app}/") and count > MODULE_LINES_MAX
    ]
    assert long_modules == []
    long_views = [
        f"{path}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path, tree in _sources()
        if path.startswith(f"{app}/")
        and any(f"/{layer}/" in path or path.endswith(f"/{layer}.py") for layer in ("views", "api"))
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > VIEW_LINES_MAX
    ]
    assert long_views == []
