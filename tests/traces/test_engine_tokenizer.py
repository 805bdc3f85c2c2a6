"""The Gemma 3 tokenizer rebuilt from the GGUF: real ids from the real package, and the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from traces.engine.model_files import ModelFiles, default_model_files
from traces.engine.tokenizer import _cache_file, load_tokenizer, tokenizer_from_gguf


def _tiny_gguf(path: Path) -> Path:
    """A GGUF holding only a five-piece SentencePiece vocabulary (a unit-test fake)."""
    writer = GGUFWriter(str(path), "gemma3")
    pieces = ["<pad>", "<eos>", "<bos>", "<unk>", "a", "b", "▁", "ab", "▁ab", "ba"]
    # Higher score merges first: "ab" outranks "ba", so "aba" becomes "ab" + "a".
    scores = [0.0, 0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0, -9.0]
    types = [3, 3, 3, 2, 1, 1, 1, 1, 1, 1]
    writer.add_tokenizer_model("llama")
    writer.add_token_list(pieces)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(2)
    writer.add_eos_token_id(1)
    writer.add_unk_token_id(3)
    writer.add_tensor("dummy", np.zeros(1, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_merges_follow_piece_scores(tmp_path: Path) -> None:
    tokenizer = tokenizer_from_gguf(_tiny_gguf(tmp_path / "tiny.gguf"))
    assert tokenizer.encode("aba").tokens == ["<bos>", "ab", "a"]
    assert tokenizer.encode(" ab").tokens == ["<bos>", "▁ab"]


@pytest.fixture(scope="module")
def real_files() -> ModelFiles:
    return default_model_files()


@pytest.mark.django_db
def test_real_gemma3_ids_match_sentencepiece(real_files: ModelFiles) -> None:
    tokenizer = load_tokenizer(real_files)
    # Ids of google/gemma-3-270m's own tokenizer; a Unigram rebuild gives "▁w or ld" instead.
    encoding = tokenizer.encode("Hello world, how are you?")
    assert encoding.ids == [2, 9259, 1902, 236764, 1217, 659, 611, 236881]
    assert tokenizer.get_vocab_size() == 262_144
    assert tokenizer.decode(tokenizer.encode("naïve café 😀 東京").ids) == "naïve café 😀 東京"


@pytest.mark.django_db
def test_a_damaged_cache_is_rebuilt(real_files: ModelFiles, tmp_path: Path) -> None:
    files = ModelFiles(root=tmp_path, source=real_files.gguf())
    cache = _cache_file(files)
    cache.parent.mkdir(parents=True)
    cache.write_text("{not a tokenizer")
    tokenizer = load_tokenizer(files)
    assert tokenizer.encode("Hello world").ids == [2, 9259, 1902]
    assert cache.read_text().startswith("{") and len(cache.read_text()) > 1_000_000
