"""AudioCaps-format captioned audio: the official CSVs plus a folder of audio files.

CSV columns (the official ones): `audiocap_id,youtube_id,start_time,caption`. Audio for a row is
looked up in `audio_dir` under these names, first match wins (extensions .wav, .flac, .ogg, .mp3):
`<youtube_id>`, `Y<youtube_id>`, `<youtube_id>_<start_time>` (start as in the CSV, as an integer
and with one or three decimals), `Y<youtube_id>_<start_time>`, `<audiocap_id>`.

On construction every referenced file is checked once; missing, unreadable, zero-length and
non-finite clips are excluded and counted in one summary line, e.g.
`AudioCaps test.csv: 957 rows, 942 usable, 11 missing, 2 unreadable, 1 zero-length, 1 non-finite`.
Files at another sample rate are resampled with soxr and multi-channel files are averaged to mono;
each of these is said once per dataset. Clips are cropped (from the start) or zero-padded to
`clip_samples`.
"""

from __future__ import annotations

import csv
import os
import sys
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from soundctm.audio import load_audio  # noqa: F401  (re-exported)

REQUIRED_COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
BAD_KINDS = ("missing", "unreadable", "zero-length", "non-finite")


@dataclass(frozen=True)
class CaptionRow:
    """One CSV row."""

    audiocap_id: str
    youtube_id: str
    start_time: str
    caption: str


def read_captions_csv(csv_path: str | os.PathLike) -> list[CaptionRow]:
    """Read an AudioCaps-format CSV; raises a clear error naming missing columns."""
    csv_path = Path(csv_path)
    if not csv_path.exists():
        raise FileNotFoundError(f"AudioCaps CSV not found: {csv_path}")
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ValueError(
                f"{csv_path.name}: missing column(s) {missing}; found {header}; "
                f"an AudioCaps CSV needs columns {list(REQUIRED_COLUMNS)}"
            )
        reader.fieldnames = header
        rows = []
        for r in reader:
            rows.append(
                CaptionRow(
                    str(r["audiocap_id"]).strip(),
                    str(r["youtube_id"]).strip(),
                    str(r["start_time"]).strip(),
                    str(r["caption"] or "").strip(),
                )
            )
    return rows


def captions_by_clip(csv_path: str | os.PathLike) -> dict[str, list[str]]:
    """youtube_id -> its captions in CSV order (e.g. the 5 captions per clip of the test set)."""
    out: dict[str, list[str]] = OrderedDict()
    for r in read_captions_csv(csv_path):
        out.setdefault(r.youtube_id, []).append(r.caption)
    return dict(out)


def _start_variants(start: str) -> list[str]:
    out = [start]
    try:
        v = float(start)
    except ValueError:
        return out
    for s in (str(int(v)) if v == int(v) else None, f"{v:.1f}", f"{v:.3f}", f"{int(v * 1000)}"):
        if s is not None and s not in out:
            out.append(s)
    return out


def candidate_stems(row: CaptionRow) -> list[str]:
    """File stems tried for a row, in order."""
    y = row.youtube_id
    stems = [y, f"Y{y}"]
    for s in _start_variants(row.start_time):
        stems += [f"{y}_{s}", f"Y{y}_{s}"]
    stems.append(row.audiocap_id)
    return stems


@dataclass
class ScanReport:
    """What the construction-time check found. Counts are in CSV rows; `bad` lists (kind, file, detail)."""

    csv_name: str
    rows: int = 0
    usable: int = 0
    counts: dict = field(default_factory=lambda: {k: 0 for k in BAD_KINDS})
    bad: list = field(default_factory=list)
    resampled_files: int = 0
    multichannel_files: int = 0

    def summary(self) -> str:
        parts = [f"AudioCaps {self.csv_name}: {self.rows} rows, {self.usable} usable"]
        parts += [f"{self.counts[k]} {k}" for k in BAD_KINDS]
        return ", ".join(parts)


def _probe(path: Path, full: bool) -> tuple[str | None, str, int, int]:
    """(bad kind or None, detail, sample_rate, channels) for one audio file."""

    try:
        if path.stat().st_size == 0:
            return "zero-length", "empty file (0 bytes)", 0, 0
        info = sf.info(str(path))
    except Exception as e:  # noqa: BLE001  (libsndfile raises several types)
        return "unreadable", f"{type(e).__name__}: {e}".strip(), 0, 0
    if info.frames == 0:
        return "zero-length", "0 audio frames", info.samplerate, info.channels
    if full:
        try:
            data, _ = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as e:  # noqa: BLE001
            return "unreadable", f"{type(e).__name__}: {e}".strip(), info.samplerate, info.channels
        if data.size == 0:
            return "zero-length", "0 audio frames", info.samplerate, info.channels
        if not np.isfinite(data).all():
            return (
                "non-finite",
                f"{int((~np.isfinite(data)).sum())} NaN/Inf samples",
                info.samplerate,
                info.channels,
            )
    return None, "", info.samplerate, info.channels


class AudioCapsDataset(Dataset):
    """Captioned clips from an AudioCaps-format CSV and audio folder.

    Item: dict(audio=FloatTensor [1, clip_samples], caption=str, youtube_id=str, audiocap_id=str,
    start_time=str, index=int).

    Args:
        csv_path: CSV with columns audiocap_id, youtube_id, start_time, caption.
        audio_dir: folder with the audio files (see module docstring for accepted names).
        sample_rate: output rate in Hz (> 0); other rates are resampled with soxr.
        clip_samples: output length; crop from the start or zero-pad.
        unique_clips: one item per youtube_id (its first caption) instead of one per CSV row.
        strict: raise `ValueError` listing every bad file instead of excluding them.
        scan: "full" reads every file at construction (finds NaN/Inf); "header" only opens the headers
            (fast for large sets; non-finite samples found later are zeroed with one warning).
        verbose: print the one-line summary to stderr.
    """

    def __init__(
        self,
        csv_path: str | os.PathLike,
        audio_dir: str | os.PathLike,
        *,
        sample_rate: int,
        clip_samples: int,
        unique_clips: bool = False,
        strict: bool = False,
        scan: str = "full",
        verbose: bool = True,
    ):
        if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        if not isinstance(clip_samples, (int, np.integer)) or clip_samples <= 0:
            raise ValueError(f"clip_samples must be a positive integer, got {clip_samples!r}")
        if scan not in ("full", "header"):
            raise ValueError(f"scan must be 'full' or 'header', got {scan!r}")
        self.csv_path = Path(csv_path)
        self.audio_dir = Path(audio_dir)
        self.sample_rate = int(sample_rate)
        self.clip_samples = int(clip_samples)
        self.unique_clips = bool(unique_clips)
        all_rows = read_captions_csv(self.csv_path)
        if not self.audio_dir.is_dir():
            raise FileNotFoundError(f"audio folder not found: {self.audio_dir} (for {self.csv_path.name})")

        index = self._index_audio_dir()
        report = ScanReport(self.csv_path.name, rows=len(all_rows))
        file_status: dict[str, tuple[str | None, str, Path | None]] = {}
        self._path_of: dict[str, Path] = {}
        usable: list[CaptionRow] = []
        for r in all_rows:
            if r.youtube_id not in file_status:
                path = next((index[s] for s in candidate_stems(r) if s in index), None)
                if path is None:
                    st = ("missing", f"no file for {r.youtube_id} in {self.audio_dir}", None)
                else:
                    kind, detail, sr, ch = _probe(path, full=scan == "full")
                    st = (kind, detail, path)
                    if kind is None:
                        report.resampled_files += int(sr != self.sample_rate)
                        report.multichannel_files += int(ch > 1)
                file_status[r.youtube_id] = st
                if st[0] is not None:
                    report.bad.append((st[0], str(st[2] or r.youtube_id), st[1]))
            kind, _, path = file_status[r.youtube_id]
            if kind is None:
                usable.append(r)
                self._path_of[r.youtube_id] = path
            else:
                report.counts[kind] += 1
        report.usable = len(usable)
        self.report = report
        self.summary = report.summary()
        if strict and report.bad:
            lines = "\n".join(f"  - {k}: {p} ({d})" for k, p, d in report.bad)
            raise ValueError(f"{self.summary}\nbad files (strict=True):\n{lines}")
        if not usable:
            raise ValueError(
                f"{self.summary}: no usable rows (audio folder {self.audio_dir}); "
                "check that the audio files are there and named <youtube_id>.wav"
            )
        if verbose:
            print(self.summary, file=sys.stderr)
        if report.resampled_files:
            warnings.warn(
                f"AudioCaps {self.csv_path.name}: {report.resampled_files} file(s) are not at "
                f"{self.sample_rate} Hz and will be resampled with soxr",
                stacklevel=2,
            )
        if report.multichannel_files:
            warnings.warn(
                f"AudioCaps {self.csv_path.name}: {report.multichannel_files} multi-channel file(s) "
                "will be downmixed to mono (channel mean)",
                stacklevel=2,
            )
        self._warned_nonfinite = False
        self.all_rows = usable
        self._captions: dict[str, list[str]] = OrderedDict()
        for r in usable:
            self._captions.setdefault(r.youtube_id, []).append(r.caption)
        if self.unique_clips:
            seen: set[str] = set()
            self.rows = [r for r in usable if not (r.youtube_id in seen or seen.add(r.youtube_id))]
        else:
            self.rows = usable

    def _index_audio_dir(self) -> dict[str, Path]:
        index: dict[str, Path] = {}
        rank = {e: i for i, e in enumerate(AUDIO_EXTENSIONS)}
        best: dict[str, int] = {}
        with os.scandir(self.audio_dir) as it:
            for e in it:
                stem, ext = os.path.splitext(e.name)
                ext = ext.lower()
                if ext in rank and (stem not in best or rank[ext] < best[stem]):
                    best[stem] = rank[ext]
                    index[stem] = Path(e.path)
        return index

    @property
    def clip_ids(self) -> list[str]:
        """Usable youtube_ids, each once, in CSV order."""
        return list(self._captions)

    def captions_by_clip(self) -> dict[str, list[str]]:
        """youtube_id -> every caption of that clip among the usable rows (CSV order)."""
        return {k: list(v) for k, v in self._captions.items()}

    def audio_path(self, youtube_id: str) -> Path:
        return self._path_of[youtube_id]

    def load_clip(self, youtube_id: str) -> torch.Tensor:
        """Audio of one clip: FloatTensor [1, clip_samples]."""
        x, _ = load_audio(self._path_of[youtube_id], self.sample_rate, self.clip_samples)
        if not np.isfinite(x).all():
            if not self._warned_nonfinite:
                warnings.warn(
                    f"AudioCaps {self.csv_path.name}: non-finite samples in {youtube_id} (and maybe "
                    "others) replaced by 0; use scan='full' to exclude such files",
                    stacklevel=2,
                )
                self._warned_nonfinite = True
            x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        return torch.from_numpy(x).unsqueeze(0)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        if not -len(self.rows) <= i < len(self.rows):
            raise IndexError(f"index {i} out of range for {len(self.rows)} items")
        i = i % len(self.rows)
        r = self.rows[i]
        return {
            "audio": self.load_clip(r.youtube_id),
            "caption": r.caption,
            "youtube_id": r.youtube_id,
            "audiocap_id": r.audiocap_id,
            "start_time": r.start_time,
            "index": i,
        }

    def __repr__(self) -> str:
        return (
            f"AudioCapsDataset({self.csv_path.name}: {len(self)} items, {len(self.clip_ids)} clips, "
            f"{self.sample_rate} Hz, {self.clip_samples} samples)"
        )
