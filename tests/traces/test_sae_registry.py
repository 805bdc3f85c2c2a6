from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.urls import reverse

from tests.conftest import client_for
from tests.traces.engine_fakes import write_sae_folder
from traces.models import SaeRecord
from traces.services.saes import sae_folder

pytestmark = pytest.mark.django_db


@pytest.fixture
def shipped_dir(tmp_path: Path, settings: object) -> Path:
    root = tmp_path / "saes"
    folder = write_sae_folder(root / "scopeweb-tiny" / "resid_post" / "layer_2_width_128_l0_medium")
    (folder / "training.json").write_text(
        json.dumps(
            {
                "heldout_quality": {
                    "tokens": 1000,
                    "l0": 50.0,
                    "fvu": 0.2,
                    "dead_share": 0.01,
                    "delta_ce": 0.3,
                }
            }
        )
    )
    settings.SHIPPED_SAE_DIR = root  # type: ignore[attr-defined]
    return folder


def test_shipped_saes_are_registered_once_with_their_quality(shipped_dir: Path) -> None:
    call_command("register_sae", shipped=True, stdout=io.StringIO())
    call_command("register_sae", shipped=True, stdout=io.StringIO())
    record = SaeRecord.objects.get()
    assert record.name == "scopeweb-tiny-resid_post-layer_2_width_128_l0_medium"
    assert (record.site, record.layer, record.width, record.shipped) == ("resid_post", 2, 128, True)
    assert record.quality["fvu"] == 0.2
    assert Path(sae_folder(record)) == shipped_dir


def test_register_command_refuses_a_folder_without_params(tmp_path: Path) -> None:
    folder = write_sae_folder(tmp_path / "x")
    (folder / "params.safetensors").unlink()
    with pytest.raises(CommandError, match=r"missing params\.safetensors"):
        call_command("register_sae", str(folder))


def test_registry_page_lists_figures(shipped_dir: Path, reviewer: User, auditor: User) -> None:
    call_command("register_sae", shipped=True, stdout=io.StringIO())
    page = client_for(reviewer).get(reverse("sae_list")).content.decode()
    assert "scopeweb-tiny" in page and "0.200" in page and "shipped" in page
    assert client_for(auditor).get(reverse("sae_list")).status_code == 403
