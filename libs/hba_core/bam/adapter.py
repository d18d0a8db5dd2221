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

``arch="reference"`` builds the reference repository's module instead (its
``training/sft/models/bam_adapter.py``, with the settings of its ``run_bam.sh``): LayerNorm -> Linear ->
ReLU -> Linear, times a learnable alpha (shape (1,), init 4.0), modality dropout 0.2 (a whole clip's
vector zeroed before the LayerNorm while training), no fitted z-score. Its parameters carry the
reference's names (``ln_feats``, ``mlp.0``, ``mlp.2``, ``alpha``) so a released adapter loads as is.
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
        """Set the z-score statistics from training clips that have valid frames (feats (N, D), valid (N,)).

        NaN entries (a part of the clip without valid frames, e.g. a face but no pose) are skipped
        column by column, so one such clip cannot poison a column for every sample; a column that is
        NaN in every clip keeps mean 0, std 1. At forward time a NaN entry becomes 0 after the
        z-score, i.e. the training mean.
        """
        rows = feats[valid.bool()].double()  # (V, D)
        if rows.shape[0] == 0:
            return
        seen = ~torch.isnan(rows)
        count = seen.sum(0)  # (D,)
        mean = torch.where(count > 0, torch.nansum(rows, 0) / count.clamp_min(1), torch.zeros_like(rows[0]))
        var = torch.nansum((rows - mean) ** 2, 0) / count.clamp_min(1)  # population variance, as before
        std = torch.where(count > 0, var.sqrt(), torch.ones_like(var))
        self.feat_mean.copy_(mean.float())
        self.feat_std.copy_(std.float().clamp_min(1e-6))

    def forward(self, feats: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, D_feat), (B,) bool -> (B, H); rows without valid frames give exactly zero."""
        x = torch.nan_to_num((feats - self.feat_mean) / self.feat_std)  # (B, D)
        x = self.dropout(self.norm(x))
        z = self.act(self.fc2(self.act(self.fc1(x))))  # (B, H)
        return self.alpha * z * valid.to(z.dtype).unsqueeze(-1)


class ReferenceAdapter(nn.Module):
    """The reference's BehavioralAdapterModule: (B, D_feat) -> alpha * MLP(LayerNorm(f)), (B, H)."""

    def __init__(
        self,
        feat_dim: int,
        out_dim: int,
        hidden: int = 256,
        p_moddrop: float = 0.2,
        alpha_init: float = 4.0,
        use_ln: bool = True,
    ):
        super().__init__()
        self.p_moddrop = p_moddrop
        self.ln_feats = nn.LayerNorm(feat_dim) if use_ln else nn.Identity()  # run_bam.sh sets use_ln
        self.mlp = nn.Sequential(nn.Linear(feat_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
        self.alpha = nn.Parameter(torch.tensor([float(alpha_init)]))  # (1,), as the reference saves it

    def fit_normalizer(self, feats: torch.Tensor, valid: torch.Tensor) -> None:
        """Nothing to fit: the reference normalises per sample (L2 of the functionals) and by LayerNorm."""

    def forward(self, feats: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, D_feat), (B,) bool -> (B, H); rows without valid features give exactly zero."""
        x = torch.nan_to_num(feats)
        if self.training and self.p_moddrop > 0:  # the reference's modality dropout: drop whole clips
            keep = (torch.rand(x.shape[0], device=x.device) >= self.p_moddrop).to(x.dtype).unsqueeze(-1)
            x = x * keep
        z = self.mlp(self.ln_feats(x)) * self.alpha.view(1, 1)  # (B, H)
        return z * valid.to(z.dtype).unsqueeze(-1)


ARCHITECTURES = ("hba", "reference")


class AdapterSet(nn.Module):
    """The adapters of one dataset (audio and/or video), summing their residuals.

    ``arch`` picks the module: ``hba`` (:class:`BehavioralAdapter`, ``dropout`` = feature dropout) or
    ``reference`` (:class:`ReferenceAdapter`, ``dropout`` = its modality dropout).
    """

    def __init__(
        self,
        feat_dims: dict[str, int],
        out_dim: int,
        hidden: int = 256,
        dropout: float = 0.1,
        alpha_init: float = 0.1,
        arch: str = "hba",
    ):
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown BAM architecture {arch!r}; valid: {', '.join(ARCHITECTURES)}")
        module = BehavioralAdapter if arch == "hba" else ReferenceAdapter
        self.arch = arch
        self.adapters = nn.ModuleDict(
            {stream: module(dim, out_dim, hidden, dropout, alpha_init) for stream, dim in feat_dims.items()}
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
