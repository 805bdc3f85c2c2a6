"""A test whose tool is missing is skipped on a developer's machine but fails in CI."""

from __future__ import annotations

from typing import Any

import pytest

from tests import tools


class _Item:
    def __init__(self, marker: pytest.MarkDecorator) -> None:
        self.marker = marker.mark

    def iter_markers(self, name: str) -> list[Any]:
        return [self.marker] if self.marker.name == name else []


def test_a_missing_tool_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "IN_CI", False)
    item = _Item(tools.needs("no-such-tool-here", package="nothing"))
    with pytest.raises(pytest.skip.Exception, match="no-such-tool-here not found"):
        tools.check_tools(item)  # type: ignore[arg-type]  # an item with markers is enough


def test_a_missing_tool_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "IN_CI", True)
    item = _Item(tools.needs("no-such-tool-here", package="nothing"))
    with pytest.raises(pytest.fail.Exception, match="apt-get install nothing"):
        tools.check_tools(item)  # type: ignore[arg-type]  # an item with markers is enough


def test_a_present_tool_runs_the_test(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "IN_CI", True)
    tools.check_tools(_Item(tools.needs("sh", package="dash")))  # type: ignore[arg-type]
