"""The Behavioral Adapter Module (paper §3.6): a residual update of the pooled penultimate state from descriptors.

    f   = [mu_f, sigma_f]                      pooled descriptors of one clip, D_feat = 2 * D_raw
    x_f = Dropout(Norm(f))
    z_f = phi(W2 phi(W1 x_f + b1) + b2)
    dh  = alpha * z_f ;   h_adapt = h_penult + sum over streams of dh

Choices the paper leaves open, and why:
- Norm = a fixed per-feature z-score with the training split's mean and std (buffers saved with the
  adapter), then LayerNorm. Descriptor columns differ by orders of magnitude (OpenSMILE energies vs
  MFCCs vs landmark coordinates in [0, 1]); LayerNorm alone would let the largest columns dominate.
- phi = GELU: smooth, and unlike ReLU it does not zero half of the final residual's range.
- alpha starts at 0.1: near the SFT model at step 0 (h_adapt ~ h_penult) while every weight already
  gets gradient (alpha = 0 would stall W1, W2 until alpha moves).
- A clip with no valid frames for a stream gets dh = 0 from that stream (a mask, not a zero vector
  through the MLP, which would still add phi(W2 phi(b1) + b2)).
"""

from __future__ import annotations

import torch
from torch import nn


class BehavioralAdapter(nn.Module):
    """One stream's adapter: pooled descriptors (B, D_feat) -> residual (B, H)."""

    def __init__(self, feat_dim: int, out_dim: int, hidden: int = 256, dropout: float = 0.1, alpha_init: float = 0.1):
        super().__init__()
        self.register_buffer("feat_mean", torch.zeros(feat_dim))
        self.register_buffer("feat_std", torch.ones(feat_dim))
        self.norm = nn.LayerNorm(feat_dim)
        self.dropout = nn.Dropout(dropout)
        self.fc1 = nn.Linear(feat_dim, hidden)
        self.fc2 = nn.Linear(hidden, out_dim)
        self.act = nn.GELU()
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))

    @torch.no_grad()
    def fit_normalizer(self, feats: torch.Tensor, valid: torch.Tensor) -> None:
        """Set the z-score statistics from training clips that have valid frames (feats (N, D), valid (N,))."""
        rows = feats[valid.bool()]
        if rows.shape[0] == 0:
            return
        self.feat_mean.copy_(rows.mean(0))
        self.feat_std.copy_(rows.std(0, unbiased=False).clamp_min(1e-6))

    def forward(self, feats: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, D_feat), (B,) bool -> (B, H); rows without valid frames give exactly zero."""
        x = torch.nan_to_num((feats - self.feat_mean) / self.feat_std)  # (B, D)
        x = self.dropout(self.norm(x))
        z = self.act(self.fc2(self.act(self.fc1(x))))  # (B, H)
        return self.alpha * z * valid.to(z.dtype).unsqueeze(-1)


class AdapterSet(nn.Module):
    """The adapters of one dataset (audio and/or video), summing their residuals."""

    def __init__(
        self, feat_dims: dict[str, int], out_dim: int, hidden: int = 256, dropout: float = 0.1, alpha_init: float = 0.1
    ):
        super().__init__()
        self.adapters = nn.ModuleDict(
            {stream: BehavioralAdapter(dim, out_dim, hidden, dropout, alpha_init) for stream, dim in feat_dims.items()}
        )

    @property
    def streams(self) -> list[str]:
        return list(self.adapters)

    def delta(self, feats: dict[str, torch.Tensor], valid: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum of the streams' residuals, (B, H)."""
        return sum(adapter(feats[s], valid[s]) for s, adapter in self.adapters.items())  # type: ignore[return-value]

    def forward(
        self, h_pooled: torch.Tensor, feats: dict[str, torch.Tensor], valid: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """h_adapt = h_penult + dh, (B, H)."""
        return h_pooled + self.delta(feats, valid).to(h_pooled.dtype)
