"""Encoding without a dense ``[tokens, d_sae]`` matrix: width blocks, a running top-k, the L0
counted on the way, and a decode from the active latents only.

Per block of latents ``[s, e)``: ``pre = x @ w_enc[:, s:e] + b_enc[s:e]``, then JumpReLU in place
(``pre`` kept where ``pre > max(threshold, 0)``, which equals ``relu(pre) * (pre > threshold)``),
its active count added to the L0, its top-k merged into the running top-k, and its active
latents' decoder rows added into the reconstruction. A block is at most ``BLOCK_BYTES`` of
pre-activations, so memory stays flat from 16k to 1m latents.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scopeweb_tracer.sae import JumpReluSae

BLOCK_BYTES = 128 * 2**20
MIN_BLOCK = 2048
DECODE_ROWS = 16384  # active entries decoded at a time: at most 64 MiB per 1024 outputs


@dataclass
class SparseCodes:
    values: torch.Tensor  # [tokens, k] float32, 0 where fewer than k latents are active
    indices: torch.Tensor  # [tokens, k] int64, -1 where inactive
    l0: torch.Tensor  # [tokens] int64: active latents (all of them, not only the top-k)
    recon: torch.Tensor  # [tokens, d_out] float32: the reconstruction from every active latent


def block_width(sae: JumpReluSae, tokens: int, block_bytes: int = BLOCK_BYTES) -> int:
    """Latents per block: as many as fit ``block_bytes`` of pre-activations, a multiple of
    ``MIN_BLOCK`` (and all of them for a small SAE)."""
    fit = block_bytes // max(tokens * sae.w_enc.element_size(), 1)
    return min(sae.d_sae, max(MIN_BLOCK, fit // MIN_BLOCK * MIN_BLOCK))


@torch.inference_mode()
def encode_sparse(
    sae: JumpReluSae,
    x: torch.Tensor,
    top_k: int,
    *,
    block: int | None = None,
    fired: torch.Tensor | None = None,
) -> SparseCodes:
    """``x [tokens, d_in]`` (any float dtype; computed in the SAE's) → top-k, L0, reconstruction.
    ``fired [d_sae]`` (bool), when given, gains every latent active on any token."""
    x = x.to(sae.w_enc.dtype)
    tokens = x.shape[0]
    k = min(top_k, sae.d_sae)
    width = block or block_width(sae, tokens)
    floor = sae.threshold.clamp_min(0)  # pre > max(θ, 0)  ⇔  relu(pre) > 0 and pre > θ
    best_v = torch.zeros((tokens, 0), dtype=x.dtype, device=x.device)
    best_i = torch.zeros((tokens, 0), dtype=torch.long, device=x.device)
    l0 = torch.zeros(tokens, dtype=torch.long, device=x.device)
    recon = sae.b_dec.float().expand(tokens, -1).clone()
    for start in range(0, sae.d_sae, width):
        stop = min(start + width, sae.d_sae)
        pre = torch.addmm(sae.b_enc[start:stop], x, sae.w_enc[:, start:stop])  # [tokens, block]
        active = pre > floor[start:stop]
        pre.mul_(active)
        rows, cols = active.nonzero(as_tuple=True)
        # Counted from the active entries: a bool reduction over the block costs half a matmul.
        l0 += torch.bincount(rows, minlength=tokens)
        if fired is not None:
            fired[cols + start] = True
        for at in range(0, rows.numel(), DECODE_ROWS):  # bounded [entries, d_out] gathers
            r, c = rows[at : at + DECODE_ROWS], cols[at : at + DECODE_ROWS]
            weights = pre[r, c].float().unsqueeze(1)
            recon.index_add_(0, r, weights * sae.w_dec[c + start].float())
        values, where = pre.topk(min(k, stop - start), dim=1)
        best_v, picked = torch.cat([best_v, values], 1).topk(
            min(k, best_v.shape[1] + values.shape[1]), dim=1
        )
        best_i = torch.cat([best_i, where + start], 1).gather(1, picked)
    if sae.w_skip is not None:
        recon += (x @ sae.w_skip).float()
    live = best_v > 0
    return SparseCodes(
        values=(best_v.float() * live),
        indices=torch.where(live, best_i, torch.full_like(best_i, -1)),
        l0=l0,
        recon=recon,
    )
