from __future__ import annotations

import json
from pathlib import Path

import pytest


def jsonl(prompts: list[str]) -> bytes:
    return "".join(
        json.dumps({"prompt": p, "id": f"p{i}"}) + "\n" for i, p in enumerate(prompts)
    ).encode()


@pytest.fixture
def uploads_dir(settings: pytest.FixtureRequest) -> Path:
    return Path(settings.MEDIA_ROOT) / "uploads"  # type: ignore[attr-defined]
