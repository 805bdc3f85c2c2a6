"""Other Gemma 3 checkpoints by folder or hub id, hub SAE references in the registry, and what
``auto`` precision resolves to. The hub is a local folder laid out like the hub's cache."""

from __future__ import annotations

import io
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from django.core.management import CommandError, call_command
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from scopeweb_tracer.sae import load_sae
from tests.traces.engine_fakes import tiny_gemma3, write_sae_folder
from traces.engine import runtime
from traces.engine.analyze import analyze_chunk
from traces.engine.model import load_model
from traces.models import SaeRecord

REVISION = "0123456789abcdef0123456789abcdef01234567"
HUB_SAE = "google/gemma-scope-2-270m-pt/resid_post/layer_2_width_16k_l0_medium"


def _tokenizer() -> Tokenizer:
    words = ["<pad>", "<eos>", "<bos>", "[UNK]"] + [f"w{i}" for i in range(100)]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", 2)]
    )
    return tokenizer


def _checkpoint(folder: Path) -> Path:
    tiny_gemma3().save_pretrained(folder, safe_serialization=True)
    _tokenizer().save(str(folder / "tokenizer.json"))
    return folder


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hub"


def _hub_snapshot(hub: Path, repo: str) -> Path:
    root = hub / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(REVISION)
    return root / "snapshots" / REVISION


def test_a_gemma3_checkpoint_from_a_local_folder_is_analysed(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path / "tiny-gemma3")
    loaded = load_model(str(folder))
    assert loaded.d_model == 64 and loaded.name == str(folder)
    assert len(loaded.weights_sha256) == 64 and len(loaded.tokenizer_sha256) == 64
    sae = load_sae(str(write_sae_folder(tmp_path / "sae")), d_model=64, n_layers=4)
    result = analyze_chunk(loaded, sae, [(1, "w1 w2 w3"), (2, "w4 w5")], top_k=4, capture_limit=50)
    assert [t.tokens for t in result.traces] == [4, 3]  # BOS + words
    assert result.arrays["token_ids"][0] == 2


def test_a_hub_id_loads_from_the_hub_cache_and_an_absent_one_is_refused(
    tmp_path: Path, offline_hub: Path
) -> None:
    _checkpoint(_hub_snapshot(offline_hub, "google/gemma-3-tiny-pt"))
    assert load_model("google/gemma-3-tiny-pt").d_model == 64
    with pytest.raises(ValueError, match="google/gemma-3-1b-pt: neither a folder nor a checkpoint"):
        load_model("google/gemma-3-1b-pt")


@pytest.mark.django_db
def test_register_sae_takes_a_hub_reference(offline_hub: Path) -> None:
    write_sae_folder(_hub_snapshot(offline_hub, "google/gemma-scope-2-270m-pt") / HUB_SAE[29:])
    out = io.StringIO()
    call_command("register_sae", HUB_SAE, stdout=out)
    record = SaeRecord.objects.get(reference=HUB_SAE)
    assert record.layer == 2 and record.width == 128 and "registered" in out.getvalue()
    assert load_sae(record.reference, d_model=64).sae.d_sae == 128  # what a worker loads


@pytest.mark.django_db
def test_register_sae_names_a_reference_it_cannot_find(offline_hub: Path) -> None:
    with pytest.raises(CommandError, match="cannot be had from the hub or its local cache"):
        call_command("register_sae", HUB_SAE)
    with pytest.raises(CommandError, match="neither a folder nor a hub reference"):
        call_command("register_sae", "no-such-folder")


def test_auto_precision_is_bfloat16_only_where_it_is_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert runtime.default_dtype() == "float32"
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert runtime.default_dtype() == "bfloat16"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.default_dtype() == "bfloat16"
