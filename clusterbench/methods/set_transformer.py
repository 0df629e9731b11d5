"""The Set Transformer (Lee et al., ICML 2019) as SCAE's object encoder uses it: self-attention
blocks over the part capsules, then pooling by multi-head attention into K object capsules.

The official SCAE configuration (``attention.py``): a linear map to ``dim``; ``layers`` blocks of

    y = LayerNorm(presence · (MHA(x, x, x) + x)),   x' = LayerNorm(MLP(y) + y)

(MLP: dim → 2·dim → dim, ReLU); a linear map to ``out_dim``; and K learned seeds attending to
the set through one more MHA (no residual, no normalisation). Absent parts are masked out of
every attention with the code's rule: each key's logit drops by (1 − presence)·10³². The
presences are soft, so this makes attention nearly hard on the most present parts; it is the
configuration the published numbers come from.

Self-attention is permutation-equivariant and the pooling permutation-invariant: the K outputs
do not depend on the order of the parts (tests check it).
"""

from __future__ import annotations

import torch
from torch import nn

MASK_SCALE = 1e32  # the code's: a key of presence p gets −(1 − p)·1e32 added to its logits


def presence_mask(presence: torch.Tensor, queries: int, heads: int) -> torch.Tensor:
    """The additive attention mask (B·heads × queries × keys) for keys of ``presence`` (B×N)."""
    mask = -(1.0 - presence.float()) * MASK_SCALE  # B×N
    return mask[:, None, :].expand(-1, queries, -1).repeat_interleave(heads, dim=0)


class SelfAttentionBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, presence: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y, _ = self.attention(x, x, x, attn_mask=mask.to(x.dtype), need_weights=False)
        y = self.norm1((y + x) * presence.unsqueeze(-1).to(x.dtype))
        return self.norm2(self.mlp(y) + y)


class SetTransformer(nn.Module):
    """A set of N elements (B×N×in_dim, with presences B×N) → ``outputs`` vectors (B×outputs×out_dim)."""

    def __init__(self, in_dim: int, outputs: int, layers: int = 3, heads: int = 1, dim: int = 16, out_dim: int = 256) -> None:
        super().__init__()
        self.heads = heads
        self.embed = nn.Linear(in_dim, dim)
        self.blocks = nn.ModuleList(SelfAttentionBlock(dim, heads) for _ in range(layers))
        self.project = nn.Linear(dim, out_dim)
        self.seeds = nn.Parameter(torch.empty(1, outputs, out_dim))
        nn.init.xavier_uniform_(self.seeds[0])
        self.pool = nn.MultiheadAttention(out_dim, heads, batch_first=True)

    def forward(self, x: torch.Tensor, presence: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        self_mask = presence_mask(presence, n, self.heads)
        h = self.embed(x)
        for block in self.blocks:
            h = block(h, presence, self_mask)
        h = self.project(h)
        seeds = self.seeds.expand(len(x), -1, -1).to(h.dtype)
        pooled, _ = self.pool(seeds, h, h, attn_mask=presence_mask(presence, seeds.shape[1], self.heads).to(h.dtype), need_weights=False)
        return pooled
