"""Artifact keys and the one way an artifact is made: `cached(store, name, compute, codec)`.

An artifact is an immutable file in the store (`experiments.store`) named by a hash of everything that
determines it (`settings_hash` of its settings, the checksums of the models it used, `code_hash` of the
package sources it depends on). `cached` reads it when the store has it, else computes it and writes it
through the store (atomically; a URI store uploads it at once), so every artifact of every kind is made the
same way and the store knows what this process wrote (`Store.written`).

Codecs (how a value is written and read back): `LATENTS` (a [N, C, T] tensor, safetensors with the settings
in its metadata), `SCORES` (`stats.ItemScores`, .npz with a .json settings sidecar written first), `ARRAY`
(a numpy array, .npy) and `JSON` (a dict).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from soundctm.data.latent_cache import file_checksum
from soundctm.experiments import applications as A
from soundctm.experiments.spec import Row, Run
from soundctm.experiments.stats import ItemScores
from soundctm.experiments.store import Store
from soundctm.io import atomic_write, load_safetensors, save_safetensors, settings_hash, write_json

__all__ = ["settings_hash", "code_hash", "file_sha", "train_key", "model_name", "generation_code",
           "GENERATION_CODE", "SCORING_CODE", "Codec", "LATENTS", "SCORES", "ARRAY", "JSON", "cached", "Models"]

_PKG = Path(__file__).resolve().parents[1]
# The code an artifact depends on: a change to any of these files re-generates (never re-trains).
GENERATION_CODE = ("edm.py", "ctm.py", "sampling.py", "rng.py", "nn", "experiments/generation.py")
SCORING_CODE = ("metrics", "audio.py", "experiments/generation.py")


@functools.cache
def code_hash(parts: tuple[str, ...]) -> str:
    """Hash of the package sources in `parts` (files or folders relative to soundctm/); read once per process."""
    h = hashlib.sha256()
    for part in parts:
        p = _PKG / part
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
            h.update(str(f.relative_to(_PKG)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def file_sha(path: str | os.PathLike) -> str:
    """The checksum of a model file (part of every artifact key that used it)."""
    return file_checksum(path)


def train_key(run: Run, seed: int) -> str:
    """The progress key of training `run` with one seed (`Runner.event`)."""
    return f"train-{settings_hash(run.single(seed).settings())}"


def model_name(sha: str) -> str:
    """A trained model's name in the store."""
    return f"models/{sha}.safetensors"


def generation_code(row: Row) -> tuple[str, ...]:
    """The code a row's samples depend on: an application row's also on its application (`A.APP_CODE`), a
    consistency model's ("cm") also on its consistency function (cd.py)."""
    code = GENERATION_CODE + A.APP_CODE if A.is_app(row) else GENERATION_CODE
    return code + ("cd.py",) if row.source == "sampler" and row.sampler == "cm" else code


@dataclass(frozen=True)
class Codec:
    """How one kind of artifact is written (`save(path, value, settings)`, atomically) and read (`load(path)`)."""

    save: Callable[[Path, Any, dict], None]
    load: Callable[[Path], Any]
    sidecar: str | None = None  # the suffix of a settings file written before the artifact, if any


def _save_latents(path: Path, z, settings: dict) -> None:
    save_safetensors(path, {"z": z}, {"settings": settings})


def _save_scores(path: Path, sc: ItemScores, settings: dict) -> None:
    """The settings sidecar first, then the scores (atomically): the .npz is the artifact's commit point."""
    arrays = {"unit": sc.unit, "pair": sc.paired_units, "frames": sc.frames, "frame_counts": sc.frame_counts}
    if sc.probs is not None:
        arrays["probs"] = sc.probs
    if sc.clap is not None:
        arrays["clap"] = sc.clap
    write_json(path.with_suffix(".json"), settings)

    def _w(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, _w)


def _load_scores(path: Path) -> ItemScores:
    with np.load(path, allow_pickle=False) as f:
        return ItemScores(f["unit"], f["frames"], f["frame_counts"], f["probs"] if "probs" in f else None,
                          f["clap"] if "clap" in f else None, f["pair"])


def _save_array(path: Path, values, settings: dict) -> None:
    def _w(tmp):
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(values))

    atomic_write(path, _w)


LATENTS = Codec(_save_latents, lambda p: load_safetensors(p)[0]["z"])
SCORES = Codec(_save_scores, _load_scores, sidecar=".json")
ARRAY = Codec(_save_array, lambda p: np.load(p, allow_pickle=False))
JSON = Codec(lambda p, v, s: write_json(p, v), lambda p: json.loads(Path(p).read_text()))


def cached(store: Store, name: str, compute: Callable[[], Any], codec: Codec, settings: dict | None = None, *,
           on_hit: Callable[[], None] | None = None):
    """The artifact `name`: read from `store` when there, else `compute()`d, written with `codec` into the
    store's local folder and published (`Store.record`: a URI store uploads it, the sidecar first) and
    returned. `settings` is what the codec records beside the value (the key's settings); `on_hit` is called
    when the artifact was found."""
    path = store.fetch(name)
    if path is not None:
        if on_hit is not None:
            on_hit()
        return codec.load(path)
    value = compute()
    local = store.local_dir / name
    codec.save(local, value, settings or {})
    if codec.sidecar is not None:
        store.record(str(Path(name).with_suffix(codec.sidecar)))
    store.record(name)
    return value


@dataclass
class Models:
    """The trained models a runner (and the runners made from it: `Runner.with_items`) uses: per run, the
    export of every training seed, its checksum, and where it was made (a model trained by a Ray task)."""

    exports: dict[Run, list[Path]] = field(default_factory=dict)
    shas: dict[Run, list[str]] = field(default_factory=dict)
    origin: dict[Run, list[str]] = field(default_factory=dict)

    def set(self, run: Run, seed: int, export: Path, sha: str, origin: str) -> None:
        n = run.seeds.index(seed)
        for d, v in ((self.exports, export), (self.shas, sha), (self.origin, origin)):
            d.setdefault(run, [None] * len(run.seeds))[n] = v

    def adopt(self, run: Run, exports: list[Path], shas: list[str]) -> None:
        self.exports[run], self.shas[run] = exports, shas
