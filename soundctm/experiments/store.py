"""Where the runner's artifacts live: a directory (local, or a shared filesystem every node mounts) or
a URI (`s3://bucket/prefix`, `gs://bucket/prefix`, `hdfs://...`, `file:///path`, or any fsspec protocol).

Artifacts are immutable files named by a hash of what made them (`scores-<hash>.npz`,
`models/<sha>.safetensors`, ...), so a store needs little: `exists`, `fetch` (a local path to read),
`put_file` / `push` (publish a finished local file) and small text records (`write_text`, `read_text`,
`list`). Every write is atomic: the bytes go to a temporary name in the same folder and are then
renamed (moved) onto the final name, so a task killed mid-write never leaves a half artifact under
an artifact's name (on S3/GCS the final object is created by one copy of a complete object).

    open_store("/nfs/soundctm/artifacts")      # LocalStore: code reads and writes the folder itself
    open_store("s3://bucket/soundctm")         # FsStore: pyarrow.fs.S3FileSystem (credentials: the
                                               # usual AWS environment / instance role)
    open_store("memory://x")                   # FsStore over fsspec (protocols pyarrow lacks)

A URI store is used through a local mirror folder (`local_dir`): the runner's code writes an
artifact there, `push(name)` uploads it, `fetch(name)` downloads it once. URIs need `pyarrow` (the
`store` extra; Ray's `train` extra brings it too); protocols pyarrow does not know go through fsspec
(`pip install fsspec` plus its plugin, e.g. `s3fs`, `gcsfs`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path, PurePosixPath

from soundctm.io import atomic_write
from soundctm.paths import cache_dir

__all__ = ["Store", "LocalStore", "FsStore", "open_store", "is_uri"]


def is_uri(spec) -> bool:
    return isinstance(spec, str) and "://" in spec


def _check_name(name: str) -> str:
    p = PurePosixPath(name)
    if not name or p.is_absolute() or ".." in p.parts or name.endswith("/"):
        raise ValueError(f"artifact names are relative paths inside the store, got {name!r}")
    return str(p)


def _temporary(name: str) -> bool:
    base = PurePosixPath(name).name
    return base.startswith(".") or base.endswith(".tmp")


class Store:
    """The interface (see the module docstring). `uri` names the store for other processes/nodes."""

    uri: str
    local_dir: Path  # where this process reads and writes artifacts

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def fetch(self, name: str) -> Path | None:
        """A local path holding the artifact `name`, or None when the store lacks it."""
        raise NotImplementedError

    def put_file(self, name: str, src: str | os.PathLike) -> None:
        """Publish a finished local file under `name` (atomic; a no-op when `name` already exists)."""
        raise NotImplementedError

    def push(self, name: str) -> None:
        """Publish `local_dir / name` (written by this process) to the store."""
        self.put_file(name, self.local_dir / name)

    @property
    def mirrored(self) -> bool:
        """A URI store, read and written through its local mirror folder (`local_dir`), not a folder."""
        return self.uri != str(self.local_dir)

    def record(self, name: str) -> None:
        """`local_dir / name` was written by this process (`artifacts.cached`): publish it and remember it,
        in the order written (`written`)."""
        self.push(name)
        self.__dict__.setdefault("_written", []).append(name)

    @property
    def written(self) -> list[str]:
        """The names this process wrote through `record`, in the order written."""
        return self.__dict__.setdefault("_written", [])

    def write_text(self, name: str, text: str) -> None:
        raise NotImplementedError

    def read_text(self, name: str) -> str:
        raise NotImplementedError

    def list(self, prefix: str = "") -> list[str]:
        """Names of the finished files directly inside the folder `prefix` ("" = the top), sorted."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


class LocalStore(Store):
    """A directory; on a cluster, one every node mounts at the same path (NFS, a cloud filestore)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        self.local_dir = self.root
        self.uri = str(self.root)

    def _path(self, name: str) -> Path:
        return self.root / _check_name(name)

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def fetch(self, name: str) -> Path | None:
        p = self._path(name)
        return p if p.is_file() else None

    def put_file(self, name: str, src) -> None:
        dst = self._path(name)
        src = Path(src)
        if dst.is_file() or (src.exists() and src.resolve() == dst):
            return

        def _copy(tmp):
            with open(src, "rb") as f, open(tmp, "wb") as out:
                shutil.copyfileobj(f, out, 1 << 20)

        atomic_write(dst, _copy)

    def write_text(self, name: str, text: str) -> None:
        atomic_write(self._path(name), lambda tmp: Path(tmp).write_text(text))

    def read_text(self, name: str) -> str:
        return self._path(name).read_text()

    def list(self, prefix: str = "") -> list[str]:
        d = self._path(prefix) if prefix else self.root
        if not d.is_dir():
            return []
        rel = f"{_check_name(prefix)}/" if prefix else ""
        return sorted(rel + f.name for f in d.iterdir() if f.is_file() and not _temporary(f.name))


class FsStore(Store):
    """A `pyarrow.fs.FileSystem` (S3, GCS, HDFS, local, or fsspec through `PyFileSystem`) under
    `base`, used through the local mirror folder `local_dir`."""

    def __init__(self, fs, base: str, *, uri: str, mirror: str | os.PathLike):
        self.fs, self.base, self.uri = fs, base.rstrip("/"), uri
        self.local_dir = Path(mirror).expanduser().resolve()

    def _path(self, name: str) -> str:
        return f"{self.base}/{_check_name(name)}"

    def exists(self, name: str) -> bool:
        from pyarrow import fs as pafs  # optional package (the `store` extra)

        return self.fs.get_file_info(self._path(name)).type == pafs.FileType.File

    def fetch(self, name: str) -> Path | None:
        local = self.local_dir / _check_name(name)
        if local.is_file():
            return local
        if not self.exists(name):
            return None

        def _copy(tmp):
            with self.fs.open_input_stream(self._path(name)) as f, open(tmp, "wb") as out:
                shutil.copyfileobj(f, out, 1 << 20)

        return atomic_write(local, _copy)

    def _write(self, name: str, write) -> None:
        final = self._path(name)
        folder, _, base = final.rpartition("/")
        self.fs.create_dir(folder, recursive=True)
        tmp = f"{folder}/.{base}.{uuid.uuid4().hex[:12]}.tmp"
        try:
            with self.fs.open_output_stream(tmp) as out:
                write(out)
            self.fs.move(tmp, final)
        except BaseException:
            try:
                self.fs.delete_file(tmp)
            except Exception:
                pass
            raise

    def put_file(self, name: str, src) -> None:
        if self.exists(name):
            return

        def _w(out):
            with open(src, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)

        self._write(name, _w)

    def write_text(self, name: str, text: str) -> None:
        self._write(name, lambda out: out.write(text.encode()))

    def read_text(self, name: str) -> str:
        with self.fs.open_input_stream(self._path(name)) as f:
            return f.read().decode()

    def list(self, prefix: str = "") -> list[str]:
        from pyarrow import fs as pafs  # optional package (the `store` extra)

        folder = self._path(prefix) if prefix else self.base
        sel = pafs.FileSelector(folder, allow_not_found=True, recursive=False)
        rel = f"{_check_name(prefix)}/" if prefix else ""
        names = [i.base_name for i in self.fs.get_file_info(sel) if i.type == pafs.FileType.File]
        return sorted(rel + n for n in names if not _temporary(n))


def _filesystem(uri: str):
    """(pyarrow FileSystem, path) for a URI: pyarrow's own filesystems, else fsspec's through pyarrow."""
    try:
        from pyarrow import fs as pafs  # optional package (the `store` extra)
    except ImportError as e:
        raise ImportError(f"the artifact store {uri!r} is a URI, which needs pyarrow: "
                          "pip install 'soundctm[store]'") from e
    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as pa_error:  # pyarrow.ArrowInvalid: a scheme pyarrow does not know
        try:
            import fsspec  # optional package (the `store` extra)
        except ImportError:
            raise ValueError(f"pyarrow cannot open {uri!r} ({pa_error}) and fsspec is not installed") from pa_error
        fs, path = fsspec.core.url_to_fs(uri)
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def open_store(spec: str | os.PathLike | Store, *, mirror: str | os.PathLike | None = None) -> Store:
    """A store from a folder path or a URI. `mirror`: the folder under which a URI store keeps its local
    copies (default `$SOUNDCTM_CACHE/store-mirror`); each URI gets its own subfolder."""
    if isinstance(spec, Store):
        return spec
    if not is_uri(spec):
        return LocalStore(spec)
    uri = str(spec)
    fs, path = _filesystem(uri)
    root = Path(mirror) if mirror is not None else cache_dir() / "store-mirror"
    return FsStore(fs, path, uri=uri, mirror=root / hashlib.sha256(uri.encode()).hexdigest()[:12])
