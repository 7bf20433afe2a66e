"""In-domain evaluators for the tiny tier (trained here, no downloads).

- `logmel` (v1): model-free log-mel frames [F, 64]; a cheap FD baseline and the extraction
  benchmark's workload.
- `tiny-evt` (v2): sound-event classifier on the tiny corpus. Log-mel front end + small CNN,
  multi-label BCE on the corpus's ground-truth label vectors. Its per-frame penultimate features
  are the FD / KID embeddings; softmax over its temperature-scaled logits `z / T` is the per-clip
  class distribution for KL / IS (the roles VGGish and PaSST play in the paper tier).
  Trained on the corpus train split; the temperature T is then fitted on the val split by
  minimising the NLL of the softmax against the normalised ground-truth label vector (one
  parameter, bounded Brent search on log T: deterministic). Without it (v1, T = 1) the softmax
  over BCE logits (range about -14..36) is so peaked that every disagreement costs about
  log(1/1e-6) and KL saturated near 10-11 for every system. Held-out test accuracy, T and the
  val NLL before/after are stored in the file's metadata with the weights hash.
  KL reported as `KL[tiny-evt]` is stable-audio-metrics' KL(gen || ref)
  (`functional.kl_passt_sam`); `KL_audioldm[tiny-evt]` is audioldm_eval's KL(ref || gen).

  A versioned name means one file: the committed evaluator
  `soundctm/assets/tiny/evaluators/tiny-evt-v2-<settings>-<corpus checksum>.safetensors` is
  what `tiny_evt()` (and `soundctm evaluate --embedder-set tiny`) loads; its weights hash is
  verified on load. Nothing is trained implicitly: a missing evaluator, or one built for another
  corpus checksum, is an `EvaluatorError` naming the file and the command that rebuilds it,
  `soundctm build-evaluator [--corpus ROOT] [--out DIR] --rebuild` (`build_main`).
- `tiny-clap`: the corpus's tiny CLAP (`soundctm.nn.text`), audio and text towers, for the
  CLAP score; by default the committed `soundctm/assets/tiny/clap.safetensors` (the text encoder
  `soundctm generate` uses), else the cached tiny component.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torch import nn

from soundctm.audio import LogMel, read_audio
from soundctm.cmdline import Parser, in_dir, out_dir, run
from soundctm.data.corpus import load_ground_truth, read_manifest, tiny_corpus
from soundctm.io import load_safetensors, save_safetensors
from soundctm.metrics.registry import Embedder, prepare_waveforms, register
from soundctm.nn.text import get_text_encoder
from soundctm.paths import cache_dir, committed_tiny_dir, require_files, tiny_components_dir

__all__ = [
    "LogMel",
    "LogMelEmbedder",
    "EvtConfig",
    "EventClassifier",
    "EventEmbedder",
    "train_event_classifier",
    "evaluate_classifier",
    "corpus_checksum",
    "EvaluatorError",
    "fit_temperature",
    "softmax_nll",
    "weights_sha1",
    "evaluator_filename",
    "committed_evaluators_dir",
    "load_evaluator",
    "build_evaluator",
    "tiny_evt",
    "build_main",
    "TinyClapEmbedder",
    "tiny_clap",
]


# ----------------------------------------------------------------------------- front end
class LogMelEmbedder(Embedder):
    """Model-free embedder: every log-mel frame (n_fft 1024, hop 320 at 16 kHz, 64 bands) is one
    64-d embedding. No logits."""

    name, version = "logmel", "1"
    sample_rate, window, hop = 16000, 1024, 320
    outputs = ("embeddings",)

    def __init__(self, device: str = "cpu"):
        self.front = LogMel(self.sample_rate, n_fft=1024, hop=self.hop, n_mels=64).to(device)
        self.device = device

    @torch.no_grad()
    def forward(self, waveforms: list[np.ndarray]) -> dict[str, np.ndarray]:
        embs, frames = [], []
        for w in waveforms:
            m = self.front(torch.from_numpy(w).to(self.device)[None])[0].T  # [T, 64]
            embs.append(m.cpu().numpy())
            frames.append(len(m))
        return {"embeddings": np.concatenate(embs), "frames": np.array(frames, np.int64)}


# ----------------------------------------------------------------------------- event classifier
@dataclass(frozen=True)
class EvtConfig:
    """Settings of the tiny event classifier; all of them go into the cache file name/metadata."""

    sample_rate: int = 16000
    n_fft: int = 1024
    mel_hop: int = 512
    n_mels: int = 64
    channels: tuple[int, ...] = (16, 32, 64, 64)
    embed_dim: int = 64
    epochs: int = 30
    batch_size: int = 32
    lr: float = 5e-3
    weight_decay: float = 1e-4
    seed: int = 0
    version: str = "2"  # 1: T = 1 (saturating KL); 2: + temperature fitted on the val split

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]


class EventClassifier(nn.Module):
    """Log-mel CNN: waveform [B, N] -> (frame embeddings [B, T', D], logits [B, K]).

    Four conv blocks (3x3 conv, BatchNorm, ReLU, 2x2 max pool) -> mean over frequency ->
    per-frame Linear + ReLU to D (the penultimate, FD features; one frame per 16 mel hops) ->
    mean over frames -> Linear to K class logits.
    """

    def __init__(self, n_classes: int, cfg: EvtConfig = EvtConfig()):
        super().__init__()
        self.cfg = cfg
        self.front = LogMel(cfg.sample_rate, cfg.n_fft, cfg.mel_hop, cfg.n_mels)
        self.register_buffer("band_mean", torch.zeros(cfg.n_mels, 1))
        self.register_buffer("band_std", torch.ones(cfg.n_mels, 1))
        layers, c_in = [], 1
        for c in cfg.channels:
            layers += [
                nn.Conv2d(c_in, c, 3, padding=1),
                nn.BatchNorm2d(c),
                nn.ReLU(),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            c_in = c
        self.conv = nn.Sequential(*layers)
        self.embed = nn.Sequential(nn.Linear(c_in, cfg.embed_dim), nn.ReLU())
        self.head = nn.Linear(cfg.embed_dim, n_classes)

    @property
    def frame_hop(self) -> int:
        return self.cfg.mel_hop * 2 ** len(self.cfg.channels)

    def features(self, mel: torch.Tensor) -> torch.Tensor:
        """mel: [B, n_mels, T] (log-mel) -> frame embeddings [B, T', D]."""
        x = (mel - self.band_mean) / self.band_std
        h = self.conv(x[:, None])  # [B, C, F', T']
        return self.embed(h.mean(dim=2).transpose(1, 2))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """wav: [B, N] -> (embeddings [B, T', D], logits [B, K])."""
        e = self.features(self.front(wav))
        return e, self.head(e.mean(dim=1))


def _pad_batch(wavs: Sequence[np.ndarray], min_len: int) -> tuple[torch.Tensor, list[int]]:
    n = max(max(len(w) for w in wavs), min_len)
    out = torch.zeros(len(wavs), n)
    for i, w in enumerate(wavs):
        out[i, : len(w)] = torch.from_numpy(np.asarray(w, np.float32))
    return out, [max(len(w), min_len) for w in wavs]


class EventEmbedder(Embedder):
    """Wraps a trained `EventClassifier` as an Embedder (`tiny-evt`).

    Outputs "embeddings" (per-frame penultimate features, FD / KID) and "logits" = the model's
    logits divided by `temperature` (from the file's metadata; 1.0 for v1), so that the softmax
    every consumer takes (KL, IS, reference statistics) is the calibrated distribution.
    """

    outputs = ("embeddings", "logits")
    batch_size = 32

    def __init__(
        self,
        model: EventClassifier,
        name: str = "tiny-evt",
        version: str | None = None,
        classes: Sequence[str] = (),
        meta: dict | None = None,
        device: str = "cpu",
    ):
        self.model = model.eval().to(device)
        self.device = device
        self.name = name
        self.version = version or model.cfg.version
        self.sample_rate = model.cfg.sample_rate
        self.window = model.frame_hop
        self.hop = model.frame_hop
        self.classes = list(classes)
        self.meta = dict(meta or {})
        self.temperature = float(self.meta.get("temperature", 1.0))
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"tiny-evt temperature must be a positive finite number, got {self.temperature}")
        self.path: Path | None = None  # the file it was loaded from (set by load_evaluator)

    def to(self, device: str) -> EventEmbedder:
        self.model.to(device)
        self.device = device
        return self

    def settings(self) -> dict[str, Any]:
        s = super().settings()
        s["weights"] = self.meta.get("weights_sha1", "")
        s["temperature"] = self.temperature
        return s

    @torch.no_grad()
    def forward(self, waveforms: list[np.ndarray]) -> dict[str, np.ndarray]:
        embs, frames, logits = [], [], []
        # clips are embedded one length-group at a time, so zero padding never leaks into a clip
        for i in range(0, len(waveforms), self.batch_size):
            part = waveforms[i : i + self.batch_size]
            lens = {len(w) for w in part}
            groups = [part] if len(lens) == 1 else [[w] for w in part]
            for g in groups:
                x = torch.from_numpy(np.stack(g)).to(self.device)
                e, lg = self.model(x)
                embs += list(e.cpu().numpy())
                frames += [e.shape[1]] * len(g)
                logits.append((lg.double() / self.temperature).cpu().numpy())
        return {
            "embeddings": np.concatenate(embs).astype(np.float32),
            "frames": np.array(frames, np.int64),
            "logits": np.concatenate(logits).astype(np.float32),
        }


def train_event_classifier(
    train_wavs: Sequence[np.ndarray],
    train_labels: np.ndarray,
    cfg: EvtConfig = EvtConfig(),
    log: bool = False,
) -> EventClassifier:
    """Train the event classifier with multi-label BCE.

    train_wavs: N mono float arrays at cfg.sample_rate (equal lengths are fastest);
    train_labels: [N, K] in {0, 1}. Deterministic given cfg.seed (single thread recommended).
    Random gain (+-6 dB) and circular time shift are the only augmentations.
    """
    y = torch.as_tensor(np.asarray(train_labels, np.float32))
    if y.ndim != 2 or len(y) != len(train_wavs):
        raise ValueError(f"labels must be [N, K] with N = {len(train_wavs)}, got {tuple(y.shape)}")
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = EventClassifier(y.shape[1], cfg)
    x, _ = _pad_batch(train_wavs, model.frame_hop)
    with torch.no_grad():  # the front end is fixed: compute the log-mels once
        mels = torch.cat([model.front(x[i : i + 64]) for i in range(0, len(x), 64)])  # [N, M, T]
        model.band_mean.copy_(mels.mean(dim=(0, 2))[:, None])
        model.band_std.copy_(mels.std(dim=(0, 2))[:, None].clamp_min(1e-3))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(x) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.2)
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    for epoch in range(cfg.epochs):
        perm = torch.randperm(len(x), generator=g)
        total = 0.0
        for i in range(0, len(x), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            # augmentation in the log-mel domain: gain of +-6 dB (additive) and a circular time shift
            gain_db = torch.rand(len(idx), 1, 1, generator=g) * 12 - 6
            shift = int(torch.randint(0, mels.shape[2], (1,), generator=g))
            mb = torch.roll(mels[idx] + gain_db * (math.log(10) / 10), shift, dims=2)
            logits = model.head(model.features(mb).mean(dim=1))
            loss = loss_fn(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if log:
            print(f"[tiny-evt] epoch {epoch + 1}/{cfg.epochs} bce {total / len(x):.4f}", flush=True)
    return model.eval()


def _average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(-scores, kind="stable")
    lab = labels[order]
    if lab.sum() == 0:
        return float("nan")
    hits = np.cumsum(lab)
    prec = hits / np.arange(1, len(lab) + 1)
    return float((prec * lab).sum() / lab.sum())


@torch.no_grad()
def evaluate_classifier(
    model: EventClassifier, wavs: Sequence[np.ndarray], labels: np.ndarray
) -> dict[str, float]:
    """Held-out accuracy: mAP over classes, micro-F1 and exact-label accuracy at threshold 0.5."""
    model.eval()
    y = np.asarray(labels, np.float64)
    x, _ = _pad_batch(wavs, model.frame_hop)
    logits = torch.cat([model(x[i : i + 64])[1] for i in range(0, len(x), 64)]).numpy()
    pred = (logits > 0).astype(np.float64)
    tp = (pred * y).sum()
    f1 = 2 * tp / max(pred.sum() + y.sum(), 1e-9)
    aps = [_average_precision(logits[:, k], y[:, k]) for k in range(y.shape[1])]
    return {
        "mAP": float(np.nanmean(aps)),
        "micro_f1": float(f1),
        "exact_accuracy": float((pred == y).all(axis=1).mean()),
        "n_clips": int(len(y)),
    }


# ----------------------------------------------------------------------------- calibration
def softmax_nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean NLL of softmax(logits / T) against the normalised label vectors.

    logits: [N, K]; labels: [N, K] multi-hot (rows with no label are ignored). Per clip:
    -sum_k q_k log softmax(z / T)_k with q = y / sum(y) (the target the softmax should match).
    """
    z = np.asarray(logits, np.float64) / float(temperature)
    y = np.asarray(labels, np.float64)
    if z.shape != y.shape or z.ndim != 2:
        raise ValueError(f"logits {z.shape} and labels {y.shape} must both be [N, K]")
    keep = y.sum(axis=1) > 0
    if not keep.any():
        raise ValueError("no clip has a label: cannot fit a temperature")
    z, y = z[keep], y[keep]
    q = y / y.sum(axis=1, keepdims=True)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-(q * logp).sum(axis=1).mean())


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 100.0)
) -> dict[str, float]:
    """Temperature scaling (Guo et al. 2017) of the softmax posterior: argmin_T `softmax_nll`.

    One parameter, found by bounded Brent search on log T within `bounds` (xatol 1e-8);
    deterministic given the logits. Returns {"temperature", "nll_t1", "nll"} (NLL at T = 1 and
    at the fitted T).
    """

    lo, hi = (math.log(b) for b in bounds)
    r = minimize_scalar(
        lambda s: softmax_nll(logits, labels, math.exp(s)),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-8},
    )
    t = float(math.exp(r.x))
    return {"temperature": t, "nll_t1": softmax_nll(logits, labels, 1.0), "nll": softmax_nll(logits, labels, t)}


@torch.no_grad()
def _logits(model: EventClassifier, wavs: Sequence[np.ndarray]) -> np.ndarray:
    x, _ = _pad_batch(wavs, model.frame_hop)
    return torch.cat([model(x[i : i + 64])[1] for i in range(0, len(x), 64)]).double().numpy()


# ----------------------------------------------------------------------------- corpus glue
def corpus_checksum(root: str | os.PathLike) -> str:
    """12-hex content checksum of a corpus: the manifest's checksum (`corpus.json`) when present,
    else sha1 of its split CSVs and ground truth."""
    root = Path(root)
    m = read_manifest(root)
    if m and m.get("checksum"):
        return str(m["checksum"])[:12]
    h = hashlib.sha1()
    for name in ("train.csv", "test.csv", "ground_truth.json"):
        p = root / name
        if p.exists():
            h.update(name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:12]


def read_split(root: str | os.PathLike, split: str) -> list[dict[str, str]]:
    """Rows of `root/<split>.csv` (AudioCaps layout: audiocap_id, youtube_id, start_time, caption)."""

    p = Path(root) / f"{split}.csv"
    if not p.exists():
        raise FileNotFoundError(f"split file not found: {p}")
    with open(p, newline="") as f:
        return list(csv.DictReader(f))


def load_labels(root: str | os.PathLike) -> tuple[list[str], dict[str, np.ndarray]]:
    """(class names, youtube_id -> multi-label vector [K] float32) from the corpus ground truth."""

    gt = load_ground_truth(root)
    return list(gt.classes), {y: gt.labels[i].astype(np.float32) for i, y in enumerate(gt.youtube_ids)}


def _load_split_audio(root: Path, split: str, sample_rate: int):
    rows = read_split(root, split)
    ids = list(dict.fromkeys(r["youtube_id"] for r in rows))
    wavs = []
    for yid in ids:
        x, sr = read_audio(root / "audio" / f"{yid}.wav")
        wavs.append(prepare_waveforms([x], sr, sample_rate, names=[f"{yid}.wav"])[0])
    return ids, wavs


def _default_corpus_root() -> Path:
    return Path(tiny_corpus().root)


class EvaluatorError(RuntimeError):
    """A committed/cached evaluator is missing, corrupt, or was built for another corpus. The message
    names the file and the command that rebuilds it."""


def weights_sha1(tensors: dict[str, torch.Tensor]) -> str:
    """12-hex sha1 of a state dict's tensors (sorted by name, raw bytes): the `weights_sha1` field."""
    return hashlib.sha1(b"".join(v.numpy().tobytes() for _, v in sorted(tensors.items()))).hexdigest()[:12]


def _evaluator_sha1(weights: str, temperature: float) -> str:
    """Identity of weights + temperature (what a versioned evaluator name stands for)."""
    return hashlib.sha1(f"{weights}|temperature={float(temperature)!r}".encode()).hexdigest()[:12]


def evaluator_filename(cfg: EvtConfig, corpus_csum: str) -> str:
    return f"tiny-evt-v{cfg.version}-{cfg.key()}-{corpus_csum}.safetensors"


def committed_evaluators_dir() -> Path:
    """`evaluators/` of the package's tiny models (`soundctm.paths.committed_tiny_dir()`)."""
    return committed_tiny_dir() / "evaluators"


def _rebuild_command(out_dir: Path, corpus_root: Path | None = None) -> str:
    corpus = "" if corpus_root is None else f" --corpus {corpus_root}"
    return f"soundctm build-evaluator{corpus} --out {out_dir} --rebuild"


def load_evaluator(
    path: str | os.PathLike,
    corpus_root: str | os.PathLike | None = None,
    cfg: EvtConfig | None = None,
    device: str = "cpu",
) -> EventEmbedder:
    """Load a `tiny-evt` file and verify it: the weights hash recomputed from the file must equal the
    `weights_sha1` in its metadata (and weights + temperature the `evaluator_sha1`, v2); with
    `corpus_root`, the corpus checksum recorded in the file must equal that corpus's. `cfg`, when given,
    must match the settings recorded in the file. Raises `EvaluatorError` naming the file."""

    path = Path(path)
    rebuild = _rebuild_command(path.parent, None if corpus_root is None else Path(corpus_root))
    if not path.exists():
        raise EvaluatorError(f"tiny-evt evaluator not found: {path}; build it with `{rebuild}`")
    try:
        tensors, meta = load_safetensors(path)
    except Exception as e:
        raise EvaluatorError(f"cannot read tiny-evt evaluator {path}: {e}; rebuild it with `{rebuild}`") from e
    got = weights_sha1(tensors)
    if meta.get("weights_sha1") != got:
        raise EvaluatorError(
            f"tiny-evt evaluator {path}: weights hash {got} does not match the recorded "
            f"{meta.get('weights_sha1')!r} (file modified or corrupt); rebuild it with `{rebuild}`"
        )
    temperature = float(meta.get("temperature", 1.0))
    if "evaluator_sha1" in meta and meta["evaluator_sha1"] != _evaluator_sha1(got, temperature):
        raise EvaluatorError(
            f"tiny-evt evaluator {path}: weights + temperature hash does not match the recorded "
            f"{meta['evaluator_sha1']!r}; rebuild it with `{rebuild}`"
        )
    file_cfg = EvtConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()})
    if cfg is not None and file_cfg != cfg:
        raise EvaluatorError(f"tiny-evt evaluator {path} was built with {file_cfg}, expected {cfg}")
    if corpus_root is not None:
        csum = corpus_checksum(corpus_root)
        if meta.get("corpus_checksum") != csum:
            raise EvaluatorError(
                f"tiny-evt evaluator {path} was built for corpus checksum {meta.get('corpus_checksum')!r}, "
                f"but the corpus at {corpus_root} has checksum {csum!r}: its inputs changed. Rebuild it "
                f"with `{rebuild}` (then commit the new file if it is the committed evaluator)"
            )
    model = EventClassifier(len(meta["classes"]), file_cfg)
    model.load_state_dict(tensors, strict=True)
    emb = EventEmbedder(model, version=file_cfg.version, classes=meta["classes"], meta=meta, device=device)
    emb.path = path
    return emb


def build_evaluator(
    corpus_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: EvtConfig = EvtConfig(),
    log: bool = True,
    device: str = "cpu",
) -> EventEmbedder:
    """Train the classifier on the train split (one thread), fit its temperature on the val split
    (v2+), measure test accuracy, and write `out_dir/evaluator_filename(...)` (overwriting)."""

    root = Path(corpus_root)
    csum = corpus_checksum(root)
    path = Path(out_dir) / evaluator_filename(cfg, csum)
    classes, gt = load_labels(root)
    t0 = time.perf_counter()
    ids, wavs = _load_split_audio(root, "train", cfg.sample_rate)
    labels = _labels_for(ids, gt, "train")
    calibrate = int(cfg.version) >= 2
    if calibrate and not (root / "val.csv").exists():
        raise EvaluatorError(f"tiny-evt v{cfg.version} fits its temperature on the val split; {root} has no val.csv")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = train_event_classifier(wavs, labels, cfg, log=log)
        test_ids, test_wavs = _load_split_audio(root, "test", cfg.sample_rate)
        acc = evaluate_classifier(model, test_wavs, _labels_for(test_ids, gt, "test"))
        cal = None
        if calibrate:
            val_ids, val_wavs = _load_split_audio(root, "val", cfg.sample_rate)
            cal = fit_temperature(_logits(model, val_wavs), _labels_for(val_ids, gt, "val"))
    finally:
        torch.set_num_threads(threads)
    state = {k: v for k, v in model.state_dict().items()}
    digest = weights_sha1(state)
    meta = {
        "name": "tiny-evt",
        "version": cfg.version,
        "config": asdict(cfg),
        "classes": classes,
        "corpus_checksum": csum,
        "corpus_root": str(root),
        "n_train": len(ids),
        "test_accuracy": acc,
        "train_seconds": round(time.perf_counter() - t0, 2),
        "weights_sha1": digest,
    }
    if cal is not None:
        meta.update(
            temperature=cal["temperature"],
            temperature_fit={
                "split": "val",
                "n_clips": len(val_ids),
                "objective": "mean NLL of softmax(logits / T) vs the label vector normalised to sum 1",
                "method": "bounded Brent on log T in [log 0.05, log 100], xatol 1e-8",
                "val_nll_t1": cal["nll_t1"],
                "val_nll": cal["nll"],
            },
            evaluator_sha1=_evaluator_sha1(digest, cal["temperature"]),
        )
    save_safetensors(path, state, meta)
    if log:
        extra = "" if cal is None else f"; T {cal['temperature']:.4f} (val NLL {cal['nll_t1']:.4f} -> {cal['nll']:.4f})"
        print(f"[tiny-evt] trained on {len(ids)} clips; test {acc}{extra}; saved {path}", flush=True)
    return load_evaluator(path, root, cfg, device=device)


def _default_evaluator(cfg: EvtConfig) -> Path:
    """The committed evaluator for `cfg` (else one in the user cache): found by name, no corpus needed."""

    prefix = f"tiny-evt-v{cfg.version}-{cfg.key()}-"
    dirs = [committed_evaluators_dir(), cache_dir() / "tiny" / "evaluators"]
    for d in dirs:
        found = sorted(d.glob(prefix + "*.safetensors")) if d.is_dir() else []
        if len(found) > 1:
            raise EvaluatorError(
                f"several tiny-evt v{cfg.version} evaluators in {d} ({', '.join(f.name for f in found)}): "
                "pass tiny_evt(path=...) or corpus_root= to choose one"
            )
        if found:
            return found[0]
    raise EvaluatorError(
        f"no tiny-evt v{cfg.version} evaluator ({prefix}*.safetensors) in {' or '.join(map(str, dirs))}; "
        f"build it with `soundctm build-evaluator --out {dirs[1]}` (trains on the tiny corpus, ~2 min)"
    )


def tiny_evt(
    corpus_root: str | os.PathLike | None = None,
    cfg: EvtConfig = EvtConfig(),
    cache: str | os.PathLike | None = None,
    device: str = "cpu",
    log: bool = True,
    *,
    path: str | os.PathLike | None = None,
    build: bool = False,
    rebuild: bool = False,
) -> EventEmbedder:
    """The `tiny-evt` embedder. Loads and verifies an evaluator file; trains only when asked.

    path: load this file (weights hash verified; corpus checksum too when corpus_root is given).
    With nothing given: the committed `soundctm/assets/tiny/evaluators/tiny-evt-v{version}-*`
      (else the one in `cache_dir()/tiny/evaluators`), no corpus needed; this is what
      `soundctm evaluate --embedder-set tiny` uses.
    corpus_root / cache: the evaluator for that corpus (default `tiny_corpus()`) by name,
      `tiny-evt-v{version}-{settings hash}-{corpus checksum}.safetensors`, looked up in `cache`
      (default `cache_dir()/tiny/evaluators`) and then in the committed directory. Missing, or
      present only for another corpus checksum: `EvaluatorError` naming the file and the rebuild
      command, unless `build=True` (train the missing one into `cache`).
    rebuild: train and overwrite `cache/<name>` even if it exists.
    """

    if path is not None:
        return load_evaluator(path, corpus_root, device=device)
    if corpus_root is None and cache is None and not (build or rebuild):
        return load_evaluator(_default_evaluator(cfg), cfg=cfg, device=device)

    root = Path(corpus_root) if corpus_root is not None else _default_corpus_root()
    out_dir = Path(cache) if cache is not None else cache_dir() / "tiny" / "evaluators"
    name = evaluator_filename(cfg, corpus_checksum(root))
    if rebuild:
        return build_evaluator(root, out_dir, cfg, log=log, device=device)
    dirs = [out_dir] + [d for d in (committed_evaluators_dir(),) if d.resolve() != out_dir.resolve()]
    for d in dirs:
        if (d / name).exists():
            return load_evaluator(d / name, root, cfg, device=device)
    if build:
        return build_evaluator(root, out_dir, cfg, log=log, device=device)
    prefix = f"tiny-evt-v{cfg.version}-{cfg.key()}-"
    stale = [f for d in dirs if d.is_dir() for f in sorted(d.glob(prefix + "*.safetensors"))]
    if stale:
        raise EvaluatorError(
            f"tiny-evt evaluator {stale[0]} was built for another corpus (checksum "
            f"{stale[0].stem.rsplit('-', 1)[-1]}); the corpus at {root} has checksum "
            f"{corpus_checksum(root)}, so {name} is needed: its inputs changed. Rebuild it with "
            f"`{_rebuild_command(stale[0].parent, root)}` (nothing is retrained implicitly)"
        )
    raise EvaluatorError(
        f"no tiny-evt evaluator {name} in {' or '.join(map(str, dirs))}; build it with "
        f"`soundctm build-evaluator --corpus {root} --out {out_dir}` (or tiny_evt(..., build=True))"
    )


def _labels_for(ids: Sequence[str], gt: dict[str, np.ndarray], split: str) -> np.ndarray:
    missing = [i for i in ids if i not in gt]
    if missing:
        raise KeyError(
            f"ground_truth.json has no labels for {len(missing)} {split} clip(s), e.g. {missing[:3]}"
        )
    return np.stack([gt[i] for i in ids])


# ----------------------------------------------------------------------------- tiny CLAP
class TinyClapEmbedder(Embedder):
    """The tiny corpus's CLAP (`soundctm.nn.text.TinyCLAP`) as an Embedder (`tiny-clap`):
    audio embeddings [B, D] (one per clip, unit norm) and caption embeddings [B, D] (unit norm)."""

    outputs = ("embeddings",)
    has_text = True
    batch_size = 32

    def __init__(self, clap, name: str = "tiny-clap", version: str = "1", device: str = "cpu"):
        self.clap = clap.eval().to(device)
        self.name, self.version = name, str(version)
        self.sample_rate = int(clap.sample_rate)
        self.window = int(clap.audio.config.n_fft)
        self.hop = None
        self.device = device
        self.weights = clap.checksum()

    def to(self, device: str) -> TinyClapEmbedder:
        self.clap.to(device)
        self.device = device
        return self

    def settings(self) -> dict[str, Any]:
        s = super().settings()
        s["weights"] = self.weights
        return s

    @torch.no_grad()
    def forward(self, waveforms: list[np.ndarray]) -> dict[str, np.ndarray]:
        embs = []
        for i in range(0, len(waveforms), self.batch_size):
            part = waveforms[i : i + self.batch_size]
            groups = [part] if len({len(w) for w in part}) == 1 else [[w] for w in part]
            for g in groups:
                x = torch.from_numpy(np.stack(g)).to(self.device)
                embs.append(self.clap.audio_embed(x, self.sample_rate).float().cpu().numpy())
        emb = np.concatenate(embs)
        return {"embeddings": emb, "frames": np.ones(len(emb), np.int64)}

    @torch.no_grad()
    def embed_text(self, captions: Sequence[str]) -> np.ndarray:
        out = []
        caps = list(captions)
        for i in range(0, len(caps), 256):
            out.append(self.clap.text_embed(caps[i : i + 256]).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.clap.embed_dim), np.float32)


def tiny_clap(path: str | os.PathLike | None = None, device: str = "cpu") -> TinyClapEmbedder:
    """The `tiny-clap` embedder: TinyCLAP from `path` (safetensors); by default the committed
    `soundctm/assets/tiny/clap.safetensors` (what `soundctm generate` conditions on), else the cached tiny
    component (`soundctm build-components`)."""

    if path is None:
        committed, cached = committed_tiny_dir() / "clap.safetensors", tiny_components_dir() / "clap.safetensors"
        path = cached if cached.exists() and not committed.exists() else committed
        require_files([("the tiny CLAP (tiny-clap)", path)],
                      hint=f"it ships with the package; or build {cached} with `soundctm build-components`")
    return TinyClapEmbedder(get_text_encoder("tiny-clap", path=path), device=device)


def build_main(argv: list[str] | None = None) -> int:
    """`soundctm build-evaluator`: train tiny-evt, fit its temperature, write and verify the file."""
    return run("soundctm build-evaluator", _build, argv)


def _build(argv: list[str] | None) -> int:
    ap = Parser(prog="soundctm build-evaluator", description=build_main.__doc__, threads_default=1)
    ap.add_argument("--corpus", default=None, help="AudioCaps-layout corpus root (default: the tiny corpus)")
    ap.add_argument(
        "--out",
        default=None,
        help="output directory (default: $SOUNDCTM_CACHE/tiny/evaluators; the committed one is "
        "soundctm/assets/tiny/evaluators)",
    )
    ap.add_argument("--rebuild", action="store_true", help="train again even if the file exists (overwrites it)")
    a = ap.parse_args(argv)  # --threads defaults to 1 here: the committed file's setting
    out = out_dir(a.out if a.out else cache_dir() / "tiny" / "evaluators", "--out")
    root = in_dir(a.corpus, "--corpus folder") if a.corpus else _default_corpus_root()
    cfg = EvtConfig()
    target = out / evaluator_filename(cfg, corpus_checksum(root))
    if target.exists() and not a.rebuild:
        emb = load_evaluator(target, root, cfg)
        print(f"{target} exists and verifies; pass --rebuild to train it again")
    else:
        emb = build_evaluator(root, out, cfg)
    m = emb.meta
    print(
        json.dumps(
            {
                "file": str(target),
                "file_sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
                "weights_sha1": m["weights_sha1"],
                "evaluator_sha1": m.get("evaluator_sha1"),
                "temperature": m.get("temperature", 1.0),
                "temperature_fit": m.get("temperature_fit"),
                "test_accuracy": m["test_accuracy"],
            },
            indent=1,
        )
    )
    return 0


register("logmel", lambda **kw: LogMelEmbedder(**kw))
register("tiny-evt", lambda **kw: tiny_evt(**kw))
register("tiny-clap", lambda **kw: tiny_clap(**kw))
