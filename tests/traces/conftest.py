from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from scopeweb.accounts.actor import Actor

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from traces.engine.model import LoadedModel
    from traces.models import PromptSet


def jsonl(prompts: list[str]) -> bytes:
    return "".join(
        json.dumps({"prompt": p, "id": f"p{i}"}) + "\n" for i, p in enumerate(prompts)
    ).encode()


@pytest.fixture(scope="session")
def gemma() -> LoadedModel:
    """The real Gemma 3 270M from the PyPI package in float32, loaded once per test run: the
    same object the engine's runs use (torch is imported only by tests that ask)."""
    from traces.engine import runtime
    from traces.engine.model import DEFAULT_MODEL

    return runtime.model_for(DEFAULT_MODEL, "float32")


@pytest.fixture
def uploads_dir(settings: pytest.FixtureRequest) -> Path:
    return Path(settings.MEDIA_ROOT) / "uploads"  # type: ignore[attr-defined]


def import_prompt_set(
    user: User | None, prompts: list[str], profile: str = "US", name: str = "set"
) -> PromptSet:
    """Import prompts through the real service, in this process."""
    from scopeweb.retention.models import RetentionProfile
    from traces.services.prompt_sets import prompt_set_import, prompt_set_upload

    data = jsonl(prompts)
    job = prompt_set_upload(
        actor=Actor.command(user),
        name=name,
        description="",
        profile=RetentionProfile.objects.get(code=profile),
        file=io.BytesIO(data),
        filename="prompts.jsonl",
        size=len(data),
        queue=False,
    )
    prompt_set = prompt_set_import(job.pk)
    assert prompt_set is not None
    return prompt_set
