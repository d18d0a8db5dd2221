"""The hyper-parameters of one dataset's BAM training (paper C.2 defaults): one dataclass = Python API +
``hba-bam`` flags + the ``settings`` saved in ``bam.json``. No torch here, so ``hba-bam --help`` needs none.

``dropout`` and ``alpha_init`` depend on the architecture: :func:`bam_settings` fills them from
:data:`ARCH_DEFAULTS` when not given.

>>> bam_settings(arch="reference").alpha_init
4.0
>>> bam_settings(arch="reference", dropout=0.3).dropout
0.3
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hba_core.options import option as _opt  # a field with its CLI help

# What each architecture starts from: hba's; the reference's run_bam.sh (modality dropout 0.2, alpha 4.0).
ARCH_DEFAULTS: dict[str, dict[str, float]] = {
    "hba": {"dropout": 0.1, "alpha_init": 0.1},
    "reference": {"dropout": 0.2, "alpha_init": 4.0},
}


@dataclass(frozen=True)
class BamSettings:
    hidden: int = _opt(256, "adapter hidden size (512 reproduces Table 11)")
    dropout: float = _opt(
        ARCH_DEFAULTS["hba"]["dropout"],
        f"feature dropout (--arch reference: modality dropout, {ARCH_DEFAULTS['reference']['dropout']})",
    )
    alpha_init: float = _opt(
        ARCH_DEFAULTS["hba"]["alpha_init"],
        f"initial alpha (--arch reference: {ARCH_DEFAULTS['reference']['alpha_init']})",
    )
    arch: str = _opt(
        "hba",
        "hba: z-score, LayerNorm, GELU MLP; reference: its LayerNorm -> Linear -> ReLU -> Linear times alpha",
        choices=tuple(ARCH_DEFAULTS),
    )
    features: str = _opt(
        "hba",
        "hba: hba-descriptors' face/pose/audio; reference: the release's .pt features (import-pt) as the "
        "reference builds them (keypoints mean+std 3,318, ComParE functionals 6,373 L2-normalised)",
        choices=("hba", "reference"),
    )
    lr_adapter: float = _opt(5e-4, "Adam learning rate of the adapters")
    lr_head: float = _opt(1e-4, "Adam learning rate of the dataset's head")
    epochs: int = _opt(4, "epochs; the one with the lowest validation CE is kept")
    batch_size: int | None = _opt(None, "effective batch [default: C.2's: 4 DAIC-WOZ, 16 MUStARD/MimeQA, else 32]")
    seed: int = _opt(0, "seed of initialisation, data order and dropout")


def bam_settings(
    *, arch: str = "hba", dropout: float | None = None, alpha_init: float | None = None, **rest: Any
) -> BamSettings:
    """:class:`BamSettings` with ``dropout`` and ``alpha_init`` from :data:`ARCH_DEFAULTS` unless given."""
    defaults = ARCH_DEFAULTS[arch]
    return BamSettings(
        arch=arch,
        dropout=defaults["dropout"] if dropout is None else dropout,
        alpha_init=defaults["alpha_init"] if alpha_init is None else alpha_init,
        **rest,
    )
