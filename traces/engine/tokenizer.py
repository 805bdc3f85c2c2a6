"""The Gemma 3 tokenizer, rebuilt from the GGUF in the model package and cached.

The GGUF stores SentencePiece pieces with their scores (``tokenizer.ggml.model = "llama"``), where
a piece's score ranks the BPE merge that makes it. transformers' GGUF converter turns that into a
Unigram model, which splits ``" world"`` into ``▁w + or + ld``; SentencePiece itself gives
``▁world``. So this module rebuilds a byte-fallback BPE tokenizer (merges ordered by the score of
the piece they produce, as transformers' own SentencePiece extractor does), saves it as
``tokenizer.json`` once, and afterwards loads it with the ``tokenizers`` library in well under a
second, without torch.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
from tokenizers.models import BPE

from traces.engine.model_files import ModelFiles, default_model_files

# SentencePiece token types as GGUF stores them.
_CONTROL = 3
_USER_DEFINED = 4
TOKENIZER_FORMAT = 1  # bump when the rebuilt tokenizer changes, so caches are rebuilt

_lock = threading.Lock()
_loaded: dict[Path, Tokenizer] = {}


def _merges(vocab: dict[str, int], scores: list[float]) -> list[tuple[str, str]]:
    ranked: list[tuple[float, int, int, str, str]] = []
    for piece, piece_id in vocab.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                ranked.append((-scores[piece_id], vocab[left], vocab[right], left, right))
    ranked.sort()
    return [(left, right) for _, _, _, left, right in ranked]


def tokenizer_from_gguf(gguf_path: Path) -> Tokenizer:
    """Build the BPE tokenizer described by a Gemma 3 GGUF's metadata."""
    from gguf import GGUFReader  # imported here: only a cache rebuild needs it

    fields = GGUFReader(str(gguf_path)).fields
    tokens: list[str] = fields["tokenizer.ggml.tokens"].contents()
    scores: list[float] = fields["tokenizer.ggml.scores"].contents()
    types: list[int] = fields["tokenizer.ggml.token_type"].contents()
    bos_id = int(fields["tokenizer.ggml.bos_token_id"].contents())
    unk_id = int(fields["tokenizer.ggml.unknown_token_id"].contents())

    vocab = {piece: index for index, piece in enumerate(tokens)}
    model = BPE(
        vocab=vocab,
        merges=_merges(vocab, scores),
        unk_token=tokens[unk_id],
        byte_fallback=True,
        fuse_unk=True,
    )
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    tokenizer.add_special_tokens(
        [
            AddedToken(piece, special=True, normalized=False)
            for piece, kind in zip(tokens, types, strict=True)
            if kind in (_CONTROL, _USER_DEFINED)
        ]
    )
    bos = tokens[bos_id]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, bos_id)]
    )
    return tokenizer


def _cache_file(files: ModelFiles) -> Path:
    return files.cache_dir / f"tokenizer-v{TOKENIZER_FORMAT}.json"


def load_tokenizer(files: ModelFiles | None = None) -> Tokenizer:
    """The default model's tokenizer; the first call in a fresh data directory builds it."""
    files = files or default_model_files()
    path = _cache_file(files)
    with _lock:
        if path in _loaded:
            return _loaded[path]
        tokenizer = None
        if path.exists():
            try:
                tokenizer = Tokenizer.from_file(str(path))
            except Exception:  # a damaged cache is rebuilt, never trusted
                tokenizer = None
        if tokenizer is None:
            tokenizer = tokenizer_from_gguf(files.gguf())
            _atomic_write(path, tokenizer.to_str())
        _loaded[path] = tokenizer
        return tokenizer


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temp, path)


def count_tokens(texts: list[str], files: ModelFiles | None = None) -> list[int]:
    """Tokens per text, counting the BOS token the model sees first."""
    tokenizer = load_tokenizer(files)
    return [len(encoding.ids) for encoding in tokenizer.encode_batch(texts)]
