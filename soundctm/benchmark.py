"""Shared machinery of the `reproduce/` scripts: generation over a test split, timing, provenance,
the paper's rows, and the CI regression subset.

A `reproduce/tableN.py` is preset + generation + evaluation + comparison; what they share lives here.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from soundctm.data.latent_cache import file_checksum
from soundctm.edm import karras_sigmas
from soundctm.metrics.evaluate import evaluate_arrays
from soundctm.metrics.indomain import tiny_clap, tiny_evt
from soundctm.nn.text import Conditioner, get_text_encoder
from soundctm.nn.vae import AudioAutoencoder
from soundctm.provenance import device_name, git_commit, provenance  # noqa: F401  (re-exported)
from soundctm.rng import prior_noise
from soundctm.sampling import heun_sample, karras_steps, sample
from soundctm.train.checkpoint import load_export

REPO = Path(__file__).resolve().parent.parent
TINY_RESULTS = REPO / "results" / "tiny"
TINY_CHECKPOINTS = TINY_RESULTS / "checkpoints"


@dataclass(frozen=True)
class Row:
    """One row of a table: who generates, with which sampler settings, and the paper's numbers."""

    model: str
    kind: str  # "teacher" | "student" | "baseline"
    steps: int
    omega: float
    nu: float | None
    paper: dict  # the paper's numbers for this row (its own metric columns)
    channels_sr: str = "1/44.1kHz"
    needs: str | None = None  # baselines we cannot run: the checkpoint they need


# Table 3 of the paper (AudioCaps, full band): FD_openl3, KL_passt, CLAP, inference seconds on one H100.
TABLE3_PAPER_COLUMNS = ("FD_openl3", "KL_passt", "CLAP", "seconds_H100")
TABLE3_ROWS = [
    Row("Stable Audio Open", "baseline", 100, 7.0, None,
        {"FD_openl3": 78.24, "KL_passt": 2.14, "CLAP": 0.29, "seconds_H100": None}, "2/44.1kHz",
        needs="the Stable Audio Open 1.0 checkpoint and its T5 text encoder"),
    Row("AudioLDM2-48kHz", "baseline", 200, 3.5, None,
        {"FD_openl3": 101.11, "KL_passt": 2.04, "CLAP": 0.37, "seconds_H100": None}, "1/48kHz",
        needs="the AudioLDM2-48kHz checkpoint, its VAE/vocoder and its text encoders"),
    Row("Teacher w/ Heun solver", "teacher", 40, 5.0, None,
        {"FD_openl3": 72.34, "KL_passt": 1.74, "CLAP": 0.36, "seconds_H100": 2.50}),
    *[Row("SoundCTM-DiT", "student", n, 5.0, nu, dict(zip(TABLE3_PAPER_COLUMNS, vals))) for n, nu, vals in [
        (1, 1.0, (84.07, 1.74, 0.36, 0.06)),
        (2, 1.0, (79.96, 1.61, 0.38, 0.10)),
        (4, 1.0, (83.14, 1.57, 0.37, 0.18)),
        (8, 5.0, (79.05, 1.29, 0.40, 0.35)),
        (16, 5.0, (72.24, 1.27, 0.42, 0.71)),
    ]],
]


def cond_mode(model) -> str:
    return "pooled" if model.cond_shape[0] == 1 else "tokens"


@torch.no_grad()
def generate(model, row: Row, cond: torch.Tensor, uncond: torch.Tensor, seeds: Sequence[int], *,
             batch: int = 40) -> torch.Tensor:
    """Latents [B, C, T] for `row`: the teacher with Heun on its N-point grid, the student with
    Algorithm 1 (gamma = 0, `row.steps` jumps, CFG omega, nu). Example i's prior noise comes from seeds[i]."""
    out = []
    seeds = list(seeds)
    for i in range(0, len(seeds), batch):
        z_T = prior_noise(seeds[i:i + batch], tuple(model.latent_shape))
        c = cond[i:i + batch]
        if row.kind == "teacher":
            out.append(heun_sample(model, z_T, karras_sigmas(row.steps), c, uncond, omega=row.omega))
        elif row.kind == "student":
            out.append(sample(model, z_T, karras_steps(row.steps), c, uncond, omega=row.omega, nu=row.nu))
        else:
            raise ValueError(f"row {row.model!r} of kind {row.kind!r} cannot be generated here")
    return torch.cat(out)


@torch.no_grad()
def decode(vae, z: torch.Tensor, batch: int = 16) -> np.ndarray:
    """VAE-decode latents [B, C, T] to waveforms [B, N] (float32 numpy)."""
    return torch.cat([vae.decode(z[i:i + batch]).float() for i in range(0, z.shape[0], batch)])[:, 0].numpy()


def time_per_sample(fn, *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of `fn()` over `repeats` runs after `warmup` runs (seconds)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(statistics.median(times))


def fmt(x, nd: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def to_csv(rows: list[dict], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return buf.getvalue()


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when both files exist with identical bytes (sha256)."""

    return Path(a).exists() and Path(b).exists() and file_checksum(a, n=64) == file_checksum(b, n=64)


def copy_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(dst.suffix + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return dst


# ------------------------------------------------------------------------------------------------
# CI regression subset: committed checkpoints, fixed test clips and seeds, recomputed metrics.

REGRESSION_N_CLIPS = 24
REGRESSION_SEED_BASE = 0
REGRESSION_ROWS = [TABLE3_ROWS[2], TABLE3_ROWS[3], TABLE3_ROWS[5], TABLE3_ROWS[7]]  # teacher, 1, 4, 16 steps


def regression_files(root: Path = TINY_CHECKPOINTS) -> dict[str, Path]:
    return {
        "teacher": root / "teacher-tiny-dit.safetensors",
        "student": root / "student-tiny-dit.safetensors",
        "vae": root / "vae.safetensors",
        "clap": root / "clap.safetensors",
        "evaluators": root / "evaluators",
    }


def regression_metrics(corpus, files: dict[str, Path] | None = None, *, log=print) -> dict:
    """Regenerate the first REGRESSION_N_CLIPS test clips with each REGRESSION_ROWS row from the committed
    checkpoints and compute FD / KL / CLAP with the committed in-domain evaluators. Deterministic on CPU."""

    files = files or regression_files()
    vae = AudioAutoencoder.load(files["vae"]).eval()
    clap = get_text_encoder("tiny-clap", path=files["clap"]).eval()
    evt = tiny_evt(corpus_root=corpus.root, cache=files["evaluators"], log=False)
    embs = {"fd": evt, "kl": evt, "clap": tiny_clap(path=files["clap"])}
    models = {"teacher": load_export(files["teacher"]), "student": load_export(files["student"])}
    ds = corpus.dataset("test", verbose=False)
    n = min(REGRESSION_N_CLIPS, len(ds))
    items = [ds[i] for i in range(n)]
    captions = [it["caption"] for it in items]
    ref = [it["audio"][0].numpy() for it in items]
    out = {}
    for row in REGRESSION_ROWS:
        model = models[row.kind]
        conditioner = Conditioner.for_model(clap, model)
        cond, uncond = conditioner(captions), conditioner.uncond
        z = generate(model, row, cond, uncond, [REGRESSION_SEED_BASE + i for i in range(n)])
        wav = decode(vae, z)
        res = evaluate_arrays(list(wav), ref, captions, corpus.sample_rate, metrics=("fd", "kl", "clap"),
                              embedders=embs)
        key = f"{row.kind}-{row.steps}"
        out[key] = {k: float(v) for k, v in res.items() if k != "provenance"}
        out[key]["latent_mean_abs"] = float(z.abs().mean())
        log(f"[regression] {key}: " + ", ".join(f"{k}={v:.5g}" for k, v in out[key].items()))
    return out
