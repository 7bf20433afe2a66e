"""Atomic file writes and safetensors export with JSON metadata (no pickle in anything we hand out)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (hex), read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive advisory lock on `path` (created if missing) for the `with` block.

    For builders that several processes may start at once (Ray workers on one machine each finding the
    corpus, the tiny components or the latent cache missing): the second waits for the first, then finds
    what it built. POSIX `flock`; on a shared filesystem without flock support it locks per node only.
    """
    import fcntl  # POSIX only: imported where used so that the module imports everywhere

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield path
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _umask() -> int:
    """The process's umask, read without changing it where the OS says it (Linux), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def settings_hash(obj, digits: int = 16) -> str:
    """The key of a JSON-able settings object: the first `digits` hex digits of the sha256 of its JSON (sorted
    keys; anything JSON cannot write, by `str`). Every cached thing in the package is named by one."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:digits]


def atomic_write(path: str | os.PathLike, write_fn) -> Path:
    """Call `write_fn(tmp_path)` then rename onto `path`; a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file 0600; a written file gets the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    def _w(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False, default=str)
            f.write("\n")

    return atomic_write(path, _w)


def write_text(path: str | os.PathLike, text: str) -> Path:
    def _w(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    return atomic_write(path, _w)


def save_safetensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> Path:
    """Save tensors with `metadata` (any JSON-able dict) stored under the `soundctm` metadata key."""

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {"soundctm": json.dumps(metadata, sort_keys=True, default=str)}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Inverse of `save_safetensors`: (tensors, metadata)."""

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    tensors = {}
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        for k in f.keys():
            tensors[k] = f.get_tensor(k)
    return tensors, json.loads(meta.get("soundctm", "{}"))


def save_state(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Training state (tensors, numbers, strings, plain containers), written atomically."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Load a training state with `weights_only=True` (no arbitrary code from the file)."""
    return torch.load(path, map_location="cpu", weights_only=True)
