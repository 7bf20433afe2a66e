"""Procedural captioned sound corpus (the tiny tier's stand-in for AudioCaps), built from a seed.

Each clip holds 1-3 sound events of 13 distinct classes (`EVENT_CLASSES`, see `events.py`) with
parameters (pitch, rate, loudness, repeat count, onset, offset) and >= 5 template paraphrases
that state the events, their parameters and their temporal relations in words.
Clip i of a split is generated from its own RNG, seeded by (seed, split, i), so growing
`n_train` never changes earlier clips, and the same seed gives bit-identical files.

On-disk layout (the AudioCaps layout, so `AudioCapsDataset` reads it unchanged)::

    <root>/audio/<youtube_id>.wav   mono PCM16, `sample_rate` Hz, exactly `clip_samples` samples
    <root>/train.csv                audiocap_id,youtube_id,start_time,caption  (one row per paraphrase)
    <root>/val.csv                  one caption per clip (only when n_val > 0)
    <root>/test.csv                 one caption per clip
    <root>/test_5cap.csv            five captions per clip (the full-band evaluation protocol)
    <root>/ground_truth.json        per clip: split, labels, events (class, onset/offset s, params), captions
    <root>/ground_truth.npz         youtube_ids [N], labels uint8 [N, n_classes],
                                    envelopes float32 [N, F] (frame RMS in dBFS, hop `envelope_hop`)
    <root>/corpus.json              manifest: settings, class names, counts, content checksum, version

The manifest is written last; a directory without it (or with `.building` present) is an
unfinished build and is regenerated on the next call.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from soundctm.data.audiocaps import AudioCapsDataset
from soundctm.data.captions import caption_vocabulary, compose_caption  # noqa: F401  (re-export)
from soundctm.data.events import (
    BACKGROUND_CLASSES,
    CLASS_PARAMS,
    COUNT_UNIT_S,
    EVENT_CLASSES,
    synthesize_event,
)
from soundctm.io import atomic_write, file_lock, write_json, write_text
from soundctm.paths import cache_dir, require_files

FORMAT_VERSION = 1
CSV_COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")
N_PARAPHRASES = 5
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
# Event loudness: RMS over the event's span (capped so its peak stays <= EVENT_PEAK).
LOUDNESS_RMS = {"loud": 0.18, "quiet": 0.06}
EVENT_PEAK = 0.85
MIX_PEAK = 0.9
ENVELOPE_FLOOR_DB = -100.0
_CHIRP_MAX_S = 1.5


def envelope_hop(sample_rate: int) -> int:
    """Loudness-envelope hop in samples: 256 at 16 kHz, scaled with the sample rate (706 at 44.1 kHz)."""
    return max(1, int(round(256 * sample_rate / 16000)))


@dataclass(frozen=True)
class EventSpec:
    """One sound event. `onset`/`offset` in seconds from the clip start; params None where unused."""

    cls: str
    onset: float
    offset: float
    loudness: str  # "quiet" | "loud"
    pitch: str | None = None  # "low" | "high"
    rate: str | None = None  # "slow" | "fast"
    count: int | None = None  # repetitions (beep, bell)
    seed: int = 0  # seeds the event's own RNG (independent of the sample rate)

    @property
    def class_index(self) -> int:
        return EVENT_CLASSES.index(self.cls)


@dataclass(frozen=True)
class ClipSpec:
    """Everything that defines one clip; the audio follows from it and a sample rate."""

    youtube_id: str
    split: str
    index: int
    duration: float  # seconds
    layout: str  # single | sequence | overlap | sequence3 | sequence_background
    events: tuple[EventSpec, ...]
    captions: tuple[str, ...]

    def labels(self) -> np.ndarray:
        """Multi-label class vector, uint8 [n_classes]."""
        y = np.zeros(len(EVENT_CLASSES), dtype=np.uint8)
        for ev in self.events:
            y[ev.class_index] = 1
        return y


def clip_id(seed: int, split: str, index: int) -> str:
    """The youtube_id of clip `index` of `split` in the corpus of `seed` (e.g. 's0tr000012')."""
    code = {"train": "tr", "val": "va", "test": "te"}[split]
    return f"s{seed}{code}{index:06d}"


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), SPLIT_CODES[split], int(index)]))


def _draw_event(rng, cls: str, start: float, end: float) -> EventSpec:
    """Place one event of `cls` inside the slot [start, end] seconds and draw its parameters."""
    params = CLASS_PARAMS[cls]
    slot = max(end - start, 0.05)
    onset = start + rng.uniform(0.0, 0.15) * slot
    avail = max(end - onset, 0.05)
    count = None
    if "count" in params:
        unit = COUNT_UNIT_S[cls]
        kmax = int(np.clip(avail // unit, 1, 3))
        count = int(rng.integers(1, kmax + 1))
        dur = min(count * unit, avail)
    else:
        dur = max(rng.uniform(0.7, 0.95) * avail, min(0.25, avail))
        if cls in ("rising_chirp", "falling_chirp"):
            dur = min(dur, _CHIRP_MAX_S)
    pitch = ("low", "high")[int(rng.integers(2))] if "pitch" in params else None
    rate = ("slow", "fast")[int(rng.integers(2))] if "rate" in params else None
    loudness = ("quiet", "loud")[int(rng.integers(2))]
    seed = int(rng.integers(2**31 - 1))
    onset = round(float(onset), 3)
    offset = round(float(min(onset + dur, end)), 3)
    return EventSpec(cls, onset, offset, loudness, pitch, rate, count, seed)


def make_clip_spec(seed: int, split: str, index: int, duration: float) -> ClipSpec:
    """Deterministic spec of clip `index` of `split` (depends on seed, split, index, duration only)."""
    if split not in SPLIT_CODES:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLIT_CODES)}")
    rng = _rng(seed, split, index)
    D = float(duration)
    n_events = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
    classes = list(EVENT_CLASSES)
    if n_events == 1:
        layout = "single"
        cls = classes[int(rng.integers(len(classes)))]
        events = [_draw_event(rng, cls, 0.0, D)]
    elif n_events == 2:
        if rng.random() < 0.5:
            layout = "sequence"
            a, b = rng.choice(len(classes), size=2, replace=False)
            mid = rng.uniform(0.4, 0.6) * D
            events = [_draw_event(rng, classes[a], 0.0, mid), _draw_event(rng, classes[b], mid + 0.05, D)]
        else:
            layout = "overlap"
            bg = BACKGROUND_CLASSES[int(rng.integers(len(BACKGROUND_CLASSES)))]
            fg_pool = [c for c in classes if c != bg]
            fg = fg_pool[int(rng.integers(len(fg_pool)))]
            events = [_draw_event(rng, fg, 0.15 * D, 0.95 * D), _background(rng, bg, D)]
    else:
        if rng.random() < 0.4:
            layout = "sequence3"
            idx = rng.choice(len(classes), size=3, replace=False)
            cuts = [0.0, D / 3, 2 * D / 3, D]
            events = [
                _draw_event(rng, classes[i], cuts[k] + (0.03 if k else 0.0), cuts[k + 1])
                for k, i in enumerate(idx)
            ]
        else:
            layout = "sequence_background"
            bg = BACKGROUND_CLASSES[int(rng.integers(len(BACKGROUND_CLASSES)))]
            fg_pool = [c for c in classes if c != bg]
            a, b = rng.choice(len(fg_pool), size=2, replace=False)
            mid = rng.uniform(0.4, 0.6) * D
            events = [
                _draw_event(rng, fg_pool[a], 0.0, mid),
                _draw_event(rng, fg_pool[b], mid + 0.05, D),
                _background(rng, bg, D),
            ]
    # captions: a separate stream so caption templates can grow without moving the audio
    crng = np.random.default_rng(np.random.SeedSequence([int(seed), SPLIT_CODES[split], int(index), 7]))
    captions: list[str] = []
    for _ in range(200):
        c = compose_caption(events, layout, crng)
        if c not in captions:
            captions.append(c)
        if len(captions) == N_PARAPHRASES:
            break
    return ClipSpec(clip_id(seed, split, index), split, int(index), D, layout, tuple(events), tuple(captions))


def _background(rng, cls: str, D: float) -> EventSpec:
    ev = _draw_event(rng, cls, 0.0, D)
    onset = round(float(rng.uniform(0.0, 0.1) * D), 3)
    offset = round(float(D - rng.uniform(0.0, 0.08) * D), 3)
    return EventSpec(ev.cls, onset, offset, ev.loudness, ev.pitch, ev.rate, ev.count, ev.seed)


def synthesize_clip(spec: ClipSpec, sample_rate: int, clip_samples: int) -> np.ndarray:
    """Render a clip spec: mono float32 [clip_samples], peak <= 0.9.

    Each event is scaled to its loudness (RMS over its own span, peak-capped), events are summed,
    and the mixture is scaled down only if its peak exceeds 0.9 (quiet clips stay quiet).
    """
    if sample_rate <= 0 or clip_samples <= 0:
        raise ValueError(f"sample_rate and clip_samples must be positive, got {sample_rate}, {clip_samples}")
    y = np.zeros(clip_samples, dtype=np.float64)
    for ev in spec.events:
        a = int(round(ev.onset * sample_rate))
        b = min(int(round(ev.offset * sample_rate)), clip_samples)
        if b <= a:
            continue
        x = synthesize_event(
            ev.cls,
            b - a,
            sample_rate,
            np.random.default_rng(ev.seed),
            pitch=ev.pitch,
            rate=ev.rate,
            count=ev.count,
        )
        rms = float(np.sqrt(np.mean(x**2)))
        peak = float(np.max(np.abs(x)))
        if peak > 0:
            x = x * min(LOUDNESS_RMS[ev.loudness] / max(rms, 1e-12), EVENT_PEAK / peak)
        y[a:b] += x
    peak = float(np.max(np.abs(y)))
    if peak > MIX_PEAK:
        y *= MIX_PEAK / peak
    return y.astype(np.float32)


def retake_spec(spec: ClipSpec, take: int) -> ClipSpec:
    """Another take of the same scene: every event keeps its class, timing and parameters (so the
    captions still describe it), but draws a new realisation (a new event seed, derived from the old
    seed and `take`). take 0 is the clip itself. The instrument's `real-other` row: the noise floor of
    a metric, a second real clip for each caption."""
    if take == 0:
        return spec
    events = tuple(
        replace(ev, seed=int(np.random.SeedSequence([ev.seed, int(take), 11]).generate_state(1)[0] & 0x7FFFFFFF))
        for ev in spec.events
    )
    return replace(spec, events=events)


def render_take(seed: int, split: str, index: int, take: int, sample_rate: int, clip_samples: int) -> np.ndarray:
    """Take `take` of clip `index` of `split` as float32 [clip_samples], quantised to PCM16 like the
    corpus files (take 0 equals the file on disk)."""
    spec = make_clip_spec(seed, split, index, clip_samples / sample_rate)
    pcm = to_pcm16(synthesize_clip(retake_spec(spec, take), sample_rate, clip_samples))
    return pcm.astype(np.float32) / 32768.0


def frame_rms_db(audio: np.ndarray, hop: int) -> np.ndarray:
    """Loudness envelope: RMS of non-overlapping frames of `hop` samples in dBFS, floored at -100.

    audio: [N] -> float32 [N // hop].
    """
    audio = np.asarray(audio, dtype=np.float64)
    n = len(audio) // hop
    frames = audio[: n * hop].reshape(n, hop)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    return np.maximum(20.0 * np.log10(np.maximum(rms, 1e-12)), ENVELOPE_FLOOR_DB).astype(np.float32)


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> int16 (round to nearest, clipped), exactly what the WAV files hold."""
    return np.clip(np.round(np.asarray(audio, dtype=np.float64) * 32767.0), -32768, 32767).astype(np.int16)


# ---------------------------------------------------------------------------------------------
# Corpus on disk
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusInfo:
    """A built corpus: where it is and what it holds (mirrors `corpus.json`)."""

    root: Path
    seed: int
    sample_rate: int
    clip_samples: int
    n_train: int
    n_val: int
    n_test: int
    class_names: tuple[str, ...]
    checksum: str
    envelope_hop: int
    format_version: int = FORMAT_VERSION
    counts: dict = field(default_factory=dict)

    @property
    def audio_dir(self) -> Path:
        return self.root / "audio"

    @property
    def corpus_id(self) -> str:
        """Short identity for cache keys: settings plus content checksum."""
        return f"synth-s{self.seed}-{self.sample_rate}-{self.clip_samples}-{self.checksum[:12]}"

    def csv_path(self, split: str) -> Path:
        """'train' | 'val' | 'test' | 'test_5cap' -> its CSV path."""
        names = {"train": "train.csv", "val": "val.csv", "test": "test.csv", "test_5cap": "test_5cap.csv"}
        if split not in names:
            raise ValueError(f"unknown split {split!r}; expected one of {list(names)}")
        return self.root / names[split]

    def dataset(self, split: str = "train", **kwargs):
        """An `AudioCapsDataset` over one split (kwargs pass through, e.g. unique_clips=True)."""

        return AudioCapsDataset(
            self.csv_path(split),
            self.audio_dir,
            sample_rate=self.sample_rate,
            clip_samples=self.clip_samples,
            **kwargs,
        )

    def ground_truth(self) -> GroundTruth:
        return load_ground_truth(self.root)


@dataclass
class GroundTruth:
    """Per-clip ground truth of a corpus (all splits), rows aligned with `youtube_ids`.

    labels: uint8 [N, n_classes]; envelopes: float32 [N, clip_samples // envelope_hop] (dBFS);
    events[i]: list of dicts {class, class_index, onset, offset, loudness, pitch, rate, count}
    (seconds; params None where the class does not use them); captions[i]: the clip's paraphrases.
    """

    youtube_ids: list[str]
    splits: list[str]
    classes: list[str]
    labels: np.ndarray
    envelopes: np.ndarray
    envelope_hop: int
    sample_rate: int
    events: list[list[dict]]
    captions: list[list[str]]
    layouts: list[str]

    def index(self, youtube_id: str) -> int:
        if not hasattr(self, "_pos"):
            self._pos = {y: i for i, y in enumerate(self.youtube_ids)}
        try:
            return self._pos[youtube_id]
        except KeyError:
            raise KeyError(f"clip {youtube_id!r} is not in this corpus's ground truth") from None

    def clip(self, youtube_id: str) -> dict:
        """Everything about one clip: labels [n_classes], envelope [F], events, captions, split, layout."""
        i = self.index(youtube_id)
        return {
            "youtube_id": youtube_id,
            "split": self.splits[i],
            "labels": self.labels[i],
            "envelope": self.envelopes[i],
            "events": self.events[i],
            "captions": self.captions[i],
            "layout": self.layouts[i],
        }


def load_ground_truth(root: str | os.PathLike) -> GroundTruth:
    """Read `<root>/ground_truth.json` + `<root>/ground_truth.npz`."""
    root = Path(root)

    require_files(
        [
            ("corpus ground truth", root / "ground_truth.json"),
            ("corpus ground-truth arrays", root / "ground_truth.npz"),
        ],
        hint="build the corpus with soundctm.data.corpus.build_corpus(root)",
    )
    meta = json.loads((root / "ground_truth.json").read_text())
    with np.load(root / "ground_truth.npz", allow_pickle=False) as z:
        ids = [str(s) for s in z["youtube_ids"]]
        labels = z["labels"]
        env = z["envelopes"]
    clips = meta["clips"]
    if [c["youtube_id"] for c in clips] != ids:
        raise ValueError(f"{root}: ground_truth.json and ground_truth.npz list different clips")
    return GroundTruth(
        ids,
        [c["split"] for c in clips],
        list(meta["classes"]),
        labels,
        env,
        int(meta["envelope_hop"]),
        int(meta["sample_rate"]),
        [c["events"] for c in clips],
        [c["captions"] for c in clips],
        [c["layout"] for c in clips],
    )


def _csv_text(rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    w.writerows(rows)
    return buf.getvalue()


def _settings(seed, sample_rate, clip_samples, n_train, n_val, n_test) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "seed": int(seed),
        "sample_rate": int(sample_rate),
        "clip_samples": int(clip_samples),
        "n_train": int(n_train),
        "n_val": int(n_val),
        "n_test": int(n_test),
        "classes": list(EVENT_CLASSES),
        "n_paraphrases": N_PARAPHRASES,
    }


def _info_from_manifest(root: Path, m: dict) -> CorpusInfo:
    return CorpusInfo(
        root=root,
        seed=m["seed"],
        sample_rate=m["sample_rate"],
        clip_samples=m["clip_samples"],
        n_train=m["n_train"],
        n_val=m["n_val"],
        n_test=m["n_test"],
        class_names=tuple(m["classes"]),
        checksum=m["checksum"],
        envelope_hop=m["envelope_hop"],
        format_version=m["format_version"],
        counts=m.get("counts", {}),
    )


def read_manifest(root: str | os.PathLike) -> dict | None:
    """The corpus manifest (dict) of a finished build, or None if there is none."""
    p = Path(root) / "corpus.json"
    if not p.exists() or (Path(root) / ".building").exists():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


_OWN_FILES = (
    "train.csv",
    "val.csv",
    "test.csv",
    "test_5cap.csv",
    "ground_truth.json",
    "ground_truth.npz",
    "corpus.json",
)


def build_corpus(
    root: str | os.PathLike,
    *,
    seed: int = 0,
    sample_rate: int = 16000,
    clip_samples: int = 32768,
    n_train: int = 1200,
    n_val: int = 0,
    n_test: int = 120,
    overwrite: bool = False,
    progress: bool = True,
) -> CorpusInfo:
    """Generate (or reuse) a captioned corpus under `root`; see the module docstring for the layout.

    Reuses an existing build whose manifest matches every setting. A finished build with other
    settings raises unless `overwrite=True`. An unfinished build (no manifest) is regenerated.
    """
    for name, v in (("sample_rate", sample_rate), ("clip_samples", clip_samples)):
        if int(v) <= 0:
            raise ValueError(f"{name} must be positive, got {v}")
    for name, v in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if int(v) < 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
    if n_train + n_test + n_val == 0:
        raise ValueError("the corpus would be empty: n_train + n_val + n_test == 0")
    root = Path(root).expanduser()
    settings = _settings(seed, sample_rate, clip_samples, n_train, n_val, n_test)
    # one builder at a time (e.g. two Ray workers finding the corpus missing); the second then reuses it
    with file_lock(root.parent / f".{root.name}.lock"):
        return _build_corpus_locked(root, settings, seed, sample_rate, clip_samples, n_train, n_val, n_test,
                                    overwrite, progress)


def _build_corpus_locked(root: Path, settings: dict, seed: int, sample_rate: int, clip_samples: int, n_train: int,
                         n_val: int, n_test: int, overwrite: bool, progress: bool) -> CorpusInfo:
    manifest = read_manifest(root)
    if manifest is not None:
        same = all(manifest.get(k) == v for k, v in settings.items())
        if same and _files_present(root, manifest):
            return _info_from_manifest(root, manifest)
        if same:
            pass  # files went missing: rebuild
        elif not overwrite:
            diff = {k: (manifest.get(k), v) for k, v in settings.items() if manifest.get(k) != v}
            raise FileExistsError(
                f"{root} holds a corpus built with other settings ({diff}, as (existing, requested)); "
                "pass overwrite=True to replace it or choose another root"
            )
    elif root.exists() and any(root.iterdir()) and not (root / ".building").exists() and not overwrite:
        if not (root / "audio").is_dir() and not (root / "train.csv").exists():
            raise FileExistsError(
                f"{root} is not empty and is not a corpus directory; "
                "choose an empty directory or pass overwrite=True"
            )

    # start (or restart) a build: mark it unfinished before touching anything
    root.mkdir(parents=True, exist_ok=True)
    (root / ".building").write_text("unfinished corpus build\n")
    for name in _OWN_FILES:
        p = root / name
        if p.exists():
            p.unlink()
    if (root / "audio").exists():
        shutil.rmtree(root / "audio")
    audio_dir = root / "audio"
    audio_dir.mkdir()


    duration = clip_samples / sample_rate
    hop = envelope_hop(sample_rate)
    plan = (
        [("train", i) for i in range(n_train)]
        + [("val", i) for i in range(n_val)]
        + [("test", i) for i in range(n_test)]
    )
    digest = hashlib.sha256()
    digest.update(json.dumps(settings, sort_keys=True).encode())
    specs: list[ClipSpec] = []
    labels = np.zeros((len(plan), len(EVENT_CLASSES)), dtype=np.uint8)
    envelopes = np.zeros((len(plan), clip_samples // hop), dtype=np.float32)
    bar = None
    if progress:
        bar = tqdm(total=len(plan), desc=f"corpus {root.name}", unit="clip", mininterval=2.0)
    for k, (split, i) in enumerate(plan):
        spec = make_clip_spec(seed, split, i, duration)
        pcm = to_pcm16(synthesize_clip(spec, sample_rate, clip_samples))
        sf.write(audio_dir / f"{spec.youtube_id}.wav", pcm, sample_rate, subtype="PCM_16", format="WAV")
        digest.update(spec.youtube_id.encode())
        digest.update(pcm.tobytes())
        specs.append(spec)
        labels[k] = spec.labels()
        envelopes[k] = frame_rms_db(pcm.astype(np.float64) / 32767.0, hop)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    # CSVs: audiocap_id unique over the whole corpus
    next_id = [1]

    def rows(split, per_clip):
        out = []
        for s in specs:
            if s.split != split:
                continue
            for c in s.captions[:per_clip]:
                out.append((next_id[0], s.youtube_id, 0, c))
                next_id[0] += 1
        return out


    csv_texts = {"train.csv": _csv_text(rows("train", N_PARAPHRASES))}
    if n_val:
        csv_texts["val.csv"] = _csv_text(rows("val", 1))
    csv_texts["test.csv"] = _csv_text(rows("test", 1))
    csv_texts["test_5cap.csv"] = _csv_text(rows("test", N_PARAPHRASES))
    for name, text in csv_texts.items():
        write_text(root / name, text)
        digest.update(name.encode())
        digest.update(text.encode())

    gt = {
        "format_version": FORMAT_VERSION,
        "sample_rate": int(sample_rate),
        "clip_samples": int(clip_samples),
        "classes": list(EVENT_CLASSES),
        "envelope_hop": hop,
        "envelope_frames": int(clip_samples // hop),
        "envelope_unit": (
            f"dBFS, RMS of non-overlapping frames of envelope_hop samples, floor {ENVELOPE_FLOOR_DB}"
        ),
        "time_unit": "seconds from clip start",
        "clips": [
            {
                "youtube_id": s.youtube_id,
                "split": s.split,
                "index": s.index,
                "layout": s.layout,
                "labels": [int(v) for v in s.labels()],
                "events": [_event_dict(ev) for ev in s.events],
                "captions": list(s.captions),
            }
            for s in specs
        ],
    }
    gt_text = json.dumps(gt, indent=1) + "\n"
    write_text(root / "ground_truth.json", gt_text)
    digest.update(gt_text.encode())

    ids = np.array([s.youtube_id for s in specs])
    atomic_write(
        root / "ground_truth.npz",
        lambda tmp: _savez(tmp, youtube_ids=ids, labels=labels, envelopes=envelopes),
    )
    digest.update(labels.tobytes())
    digest.update(envelopes.tobytes())

    counts = {split: sum(1 for s in specs if s.split == split) for split in ("train", "val", "test")}
    counts["train_rows"] = counts["train"] * N_PARAPHRASES
    counts["events_per_class"] = {c: int(labels[:, j].sum()) for j, c in enumerate(EVENT_CLASSES)}
    counts["layouts"] = {
        lay: sum(1 for s in specs if s.layout == lay)
        for lay in ("single", "sequence", "overlap", "sequence3", "sequence_background")
    }
    manifest = dict(settings)
    manifest.update(
        {
            "checksum": digest.hexdigest(),
            "envelope_hop": hop,
            "counts": counts,
            "files": {
                "audio_dir": "audio",
                **{n: n for n in csv_texts},
                "ground_truth": ["ground_truth.json", "ground_truth.npz"],
            },
        }
    )

    write_json(root / "corpus.json", manifest)
    (root / ".building").unlink()
    return _info_from_manifest(root, manifest)


def _savez(tmp, **arrays):
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _event_dict(ev: EventSpec) -> dict:
    d = asdict(ev)
    d["class"] = d.pop("cls")
    d["class_index"] = ev.class_index
    d.pop("seed")
    return d


def _files_present(root: Path, manifest: dict) -> bool:
    if not (root / "ground_truth.npz").exists() or not (root / "ground_truth.json").exists():
        return False
    for name in ("train.csv", "test.csv", "test_5cap.csv"):
        if not (root / name).exists():
            return False
    counts = manifest.get("counts", {})
    n = counts.get("train", 0) + counts.get("val", 0) + counts.get("test", 0)
    audio = root / "audio"
    return audio.is_dir() and sum(1 for _ in audio.glob("*.wav")) == n


TINY_CORPUS = {
    "seed": 0,
    "sample_rate": 16000,
    "clip_samples": 32768,
    "n_train": 1200,
    "n_val": 60,
    "n_test": 120,
}


def tiny_corpus(cache: str | os.PathLike | None = None, *, progress: bool = True) -> CorpusInfo:
    """The tiny tier's corpus (16 kHz, 2.048 s clips, seed 0: 1200 train / 60 val / 120 test clips).

    Built on first use under `<cache>/corpus/tiny-16k-seed0` (cache defaults to
    `soundctm.paths.cache_dir()`), reused afterwards.
    """

    base = Path(cache).expanduser() if cache is not None else cache_dir()
    return build_corpus(base / "corpus" / "tiny-16k-seed0", progress=progress, **TINY_CORPUS)


__all__ = [
    "EVENT_CLASSES",
    "EventSpec",
    "ClipSpec",
    "CorpusInfo",
    "GroundTruth",
    "build_corpus",
    "tiny_corpus",
    "make_clip_spec",
    "synthesize_clip",
    "caption_vocabulary",
    "load_ground_truth",
    "frame_rms_db",
    "envelope_hop",
    "clip_id",
    "read_manifest",
    "TINY_CORPUS",
    "CSV_COLUMNS",
]
