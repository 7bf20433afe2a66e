"""The tiny VAE against its transparency targets: does the codec, or the generator, set the numbers?

Two targets on the test split, both read with the committed in-domain evaluator (`tiny-evt`):
- recognisability: the event classifier's mAP on reconstructions >= 0.9 x its mAP on the originals;
- distance: FD[tiny-evt] of the reconstructions against the real clips <= 0.25 x FD of the teacher's samples
  (the teacher's FD is the instrument ladder's `teacher` row, `results/<tier>/instrument.json`).
The multi-scale mel distance is reported beside the silence and low-pass baselines
(`train.vae.evaluate_reconstruction`). `codec_targets` measures; it decides nothing but the two comparisons.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from soundctm.metrics import functional as Fm
from soundctm.metrics.indomain import EventEmbedder, evaluate_classifier, load_labels
from soundctm.nn.vae import AudioAutoencoder
from soundctm.train.components import load_split
from soundctm.train.vae import evaluate_reconstruction, reconstruct

MAP_RATIO_TARGET = 0.9  # mAP(reconstructions) / mAP(originals) at least this
FD_RATIO_TARGET = 0.25  # FD(reconstructions) / FD(teacher) at most this


def teacher_fd(instrument_json: str | Path) -> float | None:
    """FD of the ladder's `teacher` row in an instrument.json (None when the file or the row is absent)."""
    path = Path(instrument_json)
    if not path.exists():
        return None
    rows = {r.get("row"): r for r in json.loads(path.read_text()).get("rows", [])}
    metrics = rows.get("teacher", {}).get("metrics", {})
    fd = next((v for k, v in metrics.items() if k.startswith("FD[")), None)
    return None if fd is None else float(fd["value"])


def codec_targets(vae: AudioAutoencoder, corpus, evaluator: EventEmbedder, fd_teacher: float | None = None,
                  batch_size: int = 16) -> dict:
    """Measure `vae` on `corpus`'s test split against the two targets (module docstring).

    Returns {"n_clips", "map_original", "map_reconstruction", "map_ratio", "fd_reconstruction", "fd_teacher",
    "fd_ratio", "meets_map_target", "meets_fd_target", "reconstruction": evaluate_reconstruction(...)};
    the FD entries that need `fd_teacher` are None without it.
    """
    ids, audio, _ = load_split(corpus, "test")
    _, gt = load_labels(corpus.root)
    labels = np.stack([gt[i] for i in ids])
    recon = reconstruct(vae, audio, batch_size)
    orig_w = [a[0].numpy().astype(np.float32) for a in audio]
    rec_w = [a[0].numpy().astype(np.float32) for a in recon]
    m_orig = evaluate_classifier(evaluator.model, orig_w, labels)["mAP"]
    m_rec = evaluate_classifier(evaluator.model, rec_w, labels)["mAP"]
    fd_rec = Fm.frechet_distance_from_embeddings(evaluator.forward(rec_w)["embeddings"].astype(np.float64),
                                                 evaluator.forward(orig_w)["embeddings"].astype(np.float64))
    fd_ratio = None if not fd_teacher else fd_rec / fd_teacher
    return {
        "n_clips": len(ids),
        "evaluator": str(getattr(evaluator, "path", "") or evaluator.name),
        "map_original": m_orig,
        "map_reconstruction": m_rec,
        "map_ratio": m_rec / m_orig,
        "map_ratio_target": MAP_RATIO_TARGET,
        "meets_map_target": bool(m_rec / m_orig >= MAP_RATIO_TARGET),
        "fd_reconstruction": fd_rec,
        "fd_teacher": fd_teacher,
        "fd_ratio": fd_ratio,
        "fd_ratio_target": FD_RATIO_TARGET,
        "meets_fd_target": None if fd_ratio is None else bool(fd_ratio <= FD_RATIO_TARGET),
        "reconstruction": evaluate_reconstruction(vae, audio, batch_size=batch_size, recon=recon),
    }


def summary_lines(res: dict) -> list[str]:
    """The targets as a few lines of text."""
    yes = {True: "meets", False: "does NOT meet", None: "not decided (no teacher FD)"}
    mel = res["reconstruction"]
    fd = (f"FD[tiny-evt] of reconstructions {res['fd_reconstruction']:.1f}"
          + (f" / teacher {res['fd_teacher']:.1f} = {res['fd_ratio']:.3f}" if res["fd_ratio"] is not None else ""))
    return [
        f"tiny-evt mAP: originals {res['map_original']:.3f}, reconstructions {res['map_reconstruction']:.3f}, "
        f"ratio {res['map_ratio']:.3f} (target >= {res['map_ratio_target']}): {yes[res['meets_map_target']]}",
        f"{fd} (target <= {res['fd_ratio_target']}): {yes[res['meets_fd_target']]}",
        "mel distance: " + ", ".join(f"{k} {v['mel_distance']['mean']:.3f}" for k, v in mel.items()),
    ]
