"""Evaluation: FD, KL, IS, CLAP score, LSD, CLAP-LPAPS, intensity; embedder registry.

Light to import: the formulas (`functional`) and the registry; models load on demand via
`get_embedder(name)` (pretrained adapters in `soundctm.metrics.pretrained`, in-domain tiny
evaluators in `soundctm.metrics.indomain`). Whole-directory evaluation: `evaluate.evaluate_dirs`.
"""

from soundctm.metrics.functional import (
    clap_score,
    frechet_distance,
    inception_score,
    intensity_curve,
    intensity_mse,
    kl_audioldm,
    kl_passt_sam,
    lpaps,
    lsd,
    stats,
)
from soundctm.metrics.registry import Embedder, available_embedders, get_embedder, register

__all__ = [
    "Embedder",
    "available_embedders",
    "clap_score",
    "frechet_distance",
    "get_embedder",
    "inception_score",
    "intensity_curve",
    "intensity_mse",
    "kl_audioldm",
    "kl_passt_sam",
    "lpaps",
    "lsd",
    "register",
    "stats",
]
