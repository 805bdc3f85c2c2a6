"""Blocked encoding (``scopeweb_tracer.encode``) against the dense JumpReLU on a generated wide SAE,
and how ``load_sae`` holds a file's weights: mapped in place for float32, converted for
bfloat16."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from scopeweb_tracer.encode import block_width, encode_sparse
from scopeweb_tracer.sae import JumpReluSae, load_sae
from tests.traces.engine_fakes import write_sae_folder

D_IN, D_SAE, TOKENS, K = 64, 65536, 50, 32
NEGATIVE_THRESHOLDS = 8  # latents that fire whenever pre > 0: the encoder's max(θ, 0) floor


def _params(seed: int = 0, skip: bool = False) -> dict[str, torch.Tensor]:
    """A random float32 JumpReLU SAE where about 40 latents fire per token of ``_tokens``."""
    generator = torch.Generator().manual_seed(seed)
    threshold = 3.3 + (torch.rand(D_SAE, generator=generator) - 0.5) * 0.1  # ≈ N(0, 1) tail
    b_enc = torch.randn(D_SAE, generator=generator) * 0.01
    negative = torch.randperm(D_SAE, generator=generator)[:NEGATIVE_THRESHOLDS]
    threshold[negative], b_enc[negative] = -0.5, -0.05  # quiet on a zero token all the same
    params = {
        "w_enc": torch.randn(D_IN, D_SAE, generator=generator) / D_IN**0.5,
        "w_dec": torch.randn(D_SAE, D_IN, generator=generator) / 8,
        "b_enc": b_enc,
        "b_dec": torch.randn(D_IN, generator=generator) * 0.1,
        "threshold": threshold,
    }
    if skip:
        params["affine_skip_connection"] = torch.randn(D_IN, D_IN, generator=generator) / 8
    return params


def _tokens(seed: int = 1) -> torch.Tensor:
    """Random directions of norm √d_in, so that each latent's pre-activation is about N(0, 1)."""
    x = torch.randn(TOKENS, D_IN, generator=torch.Generator().manual_seed(seed))
    scaled: torch.Tensor = x * (D_IN**0.5 / x.norm(dim=1, keepdim=True))
    return scaled


def _dense_top_k(dense: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The top k of the dense activations, with -1 (and 0) where fewer than k are active."""
    values, indices = dense.topk(k, dim=1)
    return values, torch.where(values > 0, indices, torch.full_like(indices, -1))


@pytest.fixture(scope="module")
def params() -> dict[str, torch.Tensor]:
    return _params()


@pytest.fixture(scope="module")
def sae(params: dict[str, torch.Tensor]) -> JumpReluSae:
    return JumpReluSae(params)


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return _tokens()


@pytest.fixture(scope="module")
def dense(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``f [tokens, d_sae]``, the JumpReLU formula written out."""
    pre = x @ params["w_enc"] + params["b_enc"]
    return torch.relu(pre) * (pre > params["threshold"])


def test_the_generated_sae_is_wide_and_about_40_latents_fire(dense: torch.Tensor) -> None:
    l0 = (dense > 0).sum(1).float()
    assert dense.shape == (TOKENS, D_SAE)
    assert 30 <= float(l0.mean()) <= 50
    assert int(l0.min()) < K < int(l0.max())  # some tokens fill their top k, some do not


@pytest.mark.parametrize("block", [4096, 5000, 2048, D_SAE, None])
def test_blocked_top_k_equals_the_dense_top_k(
    sae: JumpReluSae,
    params: dict[str, torch.Tensor],
    x: torch.Tensor,
    dense: torch.Tensor,
    block: int | None,
) -> None:
    if block == 5000:
        assert D_SAE % block != 0  # a last block narrower than the rest
    if block is None:
        assert block_width(sae, TOKENS) == D_SAE  # a small batch takes the SAE in one block
    codes = encode_sparse(sae, x, K, block=block)
    values, indices = _dense_top_k(dense, K)
    assert codes.indices.dtype == torch.long and codes.values.dtype == torch.float32
    assert torch.equal(codes.indices, indices)
    assert torch.equal(codes.values, values)  # exactly: the merge moves values, never recomputes
    assert torch.equal(codes.l0, (dense > 0).sum(1))
    want = dense @ params["w_dec"] + params["b_dec"]
    torch.testing.assert_close(codes.recon, want, rtol=1e-5, atol=1e-5)


def test_blocks_narrower_than_k_merge_into_the_same_top_k(
    params: dict[str, torch.Tensor], x: torch.Tensor
) -> None:
    """3001 latents in blocks of 30 (the last of 1), about 70 active per token."""
    width = 3001
    narrow = {name: value[..., :width] for name, value in params.items() if name != "b_dec"}
    narrow |= {"w_dec": params["w_dec"][:width], "b_dec": params["b_dec"]}
    narrow["threshold"] = narrow["threshold"] - 1.3
    sae = JumpReluSae(narrow)
    pre = x @ narrow["w_enc"] + narrow["b_enc"]
    dense = torch.relu(pre) * (pre > narrow["threshold"])
    assert int((dense > 0).sum(1).min()) > K
    codes = encode_sparse(sae, x, K, block=30)
    values, indices = _dense_top_k(dense, K)
    assert torch.equal(codes.indices, indices) and torch.equal(codes.values, values)
    assert torch.equal(codes.l0, (dense > 0).sum(1))
    torch.testing.assert_close(
        codes.recon, dense @ narrow["w_dec"] + narrow["b_dec"], rtol=1e-5, atol=1e-5
    )


def test_fewer_active_latents_than_k_pad_with_minus_one(
    sae: JumpReluSae, x: torch.Tensor, dense: torch.Tensor
) -> None:
    k = 128  # more than any token has active
    l0 = (dense > 0).sum(1)
    assert int(l0.max()) < k
    codes = encode_sparse(sae, x, k, block=4096)
    values, indices = _dense_top_k(dense, k)
    assert torch.equal(codes.indices, indices) and torch.equal(codes.values, values)
    for token in range(TOKENS):
        n = int(l0[token])
        assert torch.equal(codes.indices[token, :n], indices[token, :n])
        assert torch.equal(codes.values[token, :n], values[token, :n])
        assert (codes.indices[token, n:] == -1).all() and (codes.values[token, n:] == 0).all()
    assert torch.equal(codes.l0, l0)


def test_a_token_with_no_active_latent_is_all_padding(sae: JumpReluSae) -> None:
    quiet = torch.zeros(1, D_IN)  # pre = b_enc, below every latent's max(θ, 0)
    assert not (sae.b_enc > sae.threshold.clamp_min(0)).any()
    codes = encode_sparse(sae, quiet, K, block=4096)
    assert int(codes.l0[0]) == 0
    assert (codes.indices == -1).all() and (codes.values == 0).all()
    torch.testing.assert_close(codes.recon[0], sae.b_dec)


def test_fired_marks_exactly_the_latents_active_on_some_token(
    sae: JumpReluSae, x: torch.Tensor, dense: torch.Tensor
) -> None:
    fired = torch.zeros(D_SAE, dtype=torch.bool)
    encode_sparse(sae, x, K, block=5000, fired=fired)
    assert torch.equal(fired, (dense > 0).any(0))
    # It only gains: latents already marked stay marked.
    inactive = int((~(dense > 0).any(0)).nonzero()[0])
    fired = torch.zeros(D_SAE, dtype=torch.bool)
    fired[inactive] = True
    encode_sparse(sae, x, K, block=4096, fired=fired)
    assert bool(fired[inactive]) and int(fired.sum()) == int((dense > 0).any(0).sum()) + 1


def test_an_affine_skip_adds_x_times_w_skip(x: torch.Tensor) -> None:
    params = _params(seed=3, skip=True)
    with_skip = JumpReluSae(params)
    without = JumpReluSae({k: v for k, v in params.items() if k != "affine_skip_connection"})
    assert with_skip.w_skip is not None and without.w_skip is None
    codes = encode_sparse(with_skip, x, K, block=4096)
    plain = encode_sparse(without, x, K, block=4096)
    skip = x @ params["affine_skip_connection"]
    torch.testing.assert_close(codes.recon - plain.recon, skip, rtol=1e-5, atol=1e-5)
    pre = x @ params["w_enc"] + params["b_enc"]
    f = torch.relu(pre) * (pre > params["threshold"])
    torch.testing.assert_close(
        codes.recon, f @ params["w_dec"] + params["b_dec"] + skip, rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(codes.recon, with_skip.decode(f, x), rtol=1e-5, atol=1e-5)
    assert torch.equal(codes.indices, plain.indices)  # the skip touches only the decode


def _mapping_of(path: Path) -> list[tuple[int, int]]:
    """The address ranges this process maps ``path`` at (from Linux's /proc/self/maps)."""
    ranges = []
    with open("/proc/self/maps", encoding="utf-8") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].strip() == str(path.resolve()):
                start, stop = (int(at, 16) for at in fields[0].split("-"))
                ranges.append((start, stop))
    return ranges


def _inside(tensor: torch.Tensor, ranges: list[tuple[int, int]]) -> bool:
    first = tensor.data_ptr()
    last = first + tensor.numel() * tensor.element_size()
    return any(start <= first and last <= stop for start, stop in ranges)


@pytest.fixture(scope="module")
def wide_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wide SAE as a Gemma Scope 2 folder (float32 file, 33 MB)."""
    folder = tmp_path_factory.mktemp("wide") / "resid_post" / "layer_2_width_65k_l0_medium"
    return write_sae_folder(folder, _params(skip=False), {"width": D_SAE})


def test_a_float32_file_loaded_in_float32_stays_memory_mapped(
    wide_folder: Path, params: dict[str, torch.Tensor], x: torch.Tensor, dense: torch.Tensor
) -> None:
    loaded = load_sae(str(wide_folder), d_model=D_IN, n_layers=4)
    mapped = _mapping_of(wide_folder / "params.safetensors")
    assert mapped, "params.safetensors is not mapped"
    for name in ("w_enc", "w_dec", "b_enc", "b_dec", "threshold"):
        tensor = getattr(loaded.sae, name)
        assert tensor.dtype == torch.float32
        assert _inside(tensor, mapped), f"{name} was copied out of the file's mapping"
        assert torch.equal(tensor, params[name])
    assert not loaded.sae.w_enc.untyped_storage().resizable()  # a view of the file, not owned
    codes = encode_sparse(loaded.sae, x, K)
    assert torch.equal(codes.indices, _dense_top_k(dense, K)[1])


def test_a_float32_file_loaded_in_bfloat16_is_converted(
    wide_folder: Path, params: dict[str, torch.Tensor]
) -> None:
    loaded = load_sae(str(wide_folder), d_model=D_IN, n_layers=4, dtype=torch.bfloat16)
    mapped = _mapping_of(wide_folder / "params.safetensors")
    for name in ("w_enc", "w_dec", "b_enc", "b_dec", "threshold"):
        tensor = getattr(loaded.sae, name)
        assert tensor.dtype == torch.bfloat16
        assert torch.equal(tensor, params[name].to(torch.bfloat16))
        assert not _inside(tensor, mapped)
    codes = encode_sparse(loaded.sae, _tokens(), K)  # float32 tokens, computed in bfloat16
    assert codes.values.dtype == torch.float32 and codes.recon.dtype == torch.float32
    assert (codes.l0 > 0).all()
