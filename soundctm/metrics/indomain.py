"""In-domain evaluators for the tiny tier (trained here, no downloads).

- `logmel` (v1): model-free log-mel frames [F, 64]; a cheap FD baseline and the extraction
  benchmark's workload.
- `tiny-evt` (v1): sound-event classifier on the tiny corpus. Log-mel front end + small CNN,
  multi-label BCE on the corpus's ground-truth label vectors. Its per-frame penultimate features
  are the FD embeddings, softmax over its logits the per-clip class distribution for KL / IS
  (the roles VGGish and PaSST play in the paper tier). Trained once on the corpus train split,
  its held-out accuracy on the test split is stored with it, cached in
  `cache_dir()/tiny/evaluators/` under a name carrying its settings and the corpus checksum.
- `tiny-clap`: the corpus's tiny CLAP (`soundctm.nn.text`), audio and text towers, for the
  CLAP score.
"""

from __future__ import annotations

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
from torch import nn

from soundctm.metrics.registry import Embedder, register
from soundctm.nn.vae import mel_filterbank

__all__ = [
    "LogMel",
    "LogMelEmbedder",
    "EvtConfig",
    "EventClassifier",
    "EventEmbedder",
    "train_event_classifier",
    "evaluate_classifier",
    "corpus_checksum",
    "tiny_evt",
    "TinyClapEmbedder",
    "tiny_clap",
]


# ----------------------------------------------------------------------------- front end
class LogMel(nn.Module):
    """Waveform [B, N] -> log-mel [B, n_mels, 1 + N // hop] (periodic Hann, centred STFT, power)."""

    def __init__(self, sample_rate=16000, n_fft=1024, hop=256, n_mels=64, fmin=30.0, fmax=None, floor=1e-6):
        super().__init__()
        self.n_fft, self.hop, self.floor = n_fft, hop, floor
        fb = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax or sample_rate / 2)
        self.register_buffer("fb", fb.clone(), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = "reflect" if x.shape[-1] > self.n_fft // 2 else "constant"
        spec = torch.stft(
            x.float(),
            self.n_fft,
            self.hop,
            window=self.window,
            center=True,
            pad_mode=mode,
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()
        return torch.log(self.fb @ power + self.floor)


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
    version: str = "1"

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
    """Wraps a trained `EventClassifier` as an Embedder (`tiny-evt`)."""

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

    def to(self, device: str) -> EventEmbedder:
        self.model.to(device)
        self.device = device
        return self

    def settings(self) -> dict[str, Any]:
        s = super().settings()
        s["weights"] = self.meta.get("weights_sha1", "")
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
                logits.append(lg.cpu().numpy())
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


# ----------------------------------------------------------------------------- corpus glue
def corpus_checksum(root: str | os.PathLike) -> str:
    """12-hex content checksum of a corpus: the manifest's checksum (`corpus.json`) when present,
    else sha1 of its split CSVs and ground truth."""
    root = Path(root)
    try:
        from soundctm.data.corpus import read_manifest

        m = read_manifest(root)
        if m and m.get("checksum"):
            return str(m["checksum"])[:12]
    except ImportError:
        pass
    h = hashlib.sha1()
    for name in ("train.csv", "test.csv", "ground_truth.json"):
        p = root / name
        if p.exists():
            h.update(name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:12]


def read_split(root: str | os.PathLike, split: str) -> list[dict[str, str]]:
    """Rows of `root/<split>.csv` (AudioCaps layout: audiocap_id, youtube_id, start_time, caption)."""
    import csv

    p = Path(root) / f"{split}.csv"
    if not p.exists():
        raise FileNotFoundError(f"split file not found: {p}")
    with open(p, newline="") as f:
        return list(csv.DictReader(f))


def load_labels(root: str | os.PathLike) -> tuple[list[str], dict[str, np.ndarray]]:
    """(class names, youtube_id -> multi-label vector [K] float32) from the corpus ground truth."""
    from soundctm.data.corpus import load_ground_truth

    gt = load_ground_truth(root)
    return list(gt.classes), {y: gt.labels[i].astype(np.float32) for i, y in enumerate(gt.youtube_ids)}


def _load_split_audio(root: Path, split: str, sample_rate: int):
    from soundctm.metrics.extract import read_audio
    from soundctm.metrics.registry import prepare_waveforms

    rows = read_split(root, split)
    ids = list(dict.fromkeys(r["youtube_id"] for r in rows))
    wavs = []
    for yid in ids:
        x, sr = read_audio(root / "audio" / f"{yid}.wav")
        wavs.append(prepare_waveforms([x], sr, sample_rate, names=[f"{yid}.wav"])[0])
    return ids, wavs


def _default_corpus_root() -> Path:
    from soundctm.data.corpus import tiny_corpus

    return Path(tiny_corpus().root)


def tiny_evt(
    corpus_root: str | os.PathLike | None = None,
    cfg: EvtConfig = EvtConfig(),
    cache: str | os.PathLike | None = None,
    device: str = "cpu",
    log: bool = True,
) -> EventEmbedder:
    """The `tiny-evt` embedder: load the cached classifier for this corpus, or train and cache it.

    corpus_root: AudioCaps-layout corpus (default: `soundctm.data.corpus.tiny_corpus()`).
    cache: directory for the weights (default `cache_dir()/tiny/evaluators`). The file name is
      `tiny-evt-v{version}-{settings hash}-{corpus checksum}.safetensors`; its metadata holds the
      settings, class names, corpus checksum and held-out test accuracy.
    """
    from soundctm.io import load_safetensors, save_safetensors
    from soundctm.paths import cache_dir

    root = Path(corpus_root) if corpus_root is not None else _default_corpus_root()
    csum = corpus_checksum(root)
    cache = Path(cache) if cache is not None else cache_dir() / "tiny" / "evaluators"
    path = cache / f"tiny-evt-v{cfg.version}-{cfg.key()}-{csum}.safetensors"
    if path.exists():
        tensors, meta = load_safetensors(path)
        model = EventClassifier(len(meta["classes"]), cfg)
        model.load_state_dict(tensors, strict=True)
        return EventEmbedder(model, version=cfg.version, classes=meta["classes"], meta=meta, device=device)

    classes, gt = load_labels(root)
    t0 = time.perf_counter()
    ids, wavs = _load_split_audio(root, "train", cfg.sample_rate)
    labels = _labels_for(ids, gt, "train")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = train_event_classifier(wavs, labels, cfg, log=log)
    finally:
        torch.set_num_threads(threads)
    test_ids, test_wavs = _load_split_audio(root, "test", cfg.sample_rate)
    acc = evaluate_classifier(model, test_wavs, _labels_for(test_ids, gt, "test"))
    state = {k: v for k, v in model.state_dict().items()}
    digest = hashlib.sha1(b"".join(v.numpy().tobytes() for _, v in sorted(state.items()))).hexdigest()[:12]
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
    save_safetensors(path, state, meta)
    if log:
        print(f"[tiny-evt] trained on {len(ids)} clips; test {acc}; saved {path}", flush=True)
    return EventEmbedder(model, version=cfg.version, classes=classes, meta=meta, device=device)


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
    """The `tiny-clap` embedder: TinyCLAP from `path` (safetensors) or the cached tiny component."""
    from soundctm.nn.text import get_text_encoder

    kw = {} if path is None else {"path": path}
    return TinyClapEmbedder(get_text_encoder("tiny-clap", **kw), device=device)


register("logmel", lambda **kw: LogMelEmbedder(**kw))
register("tiny-evt", lambda **kw: tiny_evt(**kw))
register("tiny-clap", lambda **kw: tiny_clap(**kw))
