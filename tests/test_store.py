"""The artifact store: a folder, or a URI through pyarrow.fs (its LocalFileSystem for file://) or fsspec
(its memory filesystem), with the same behaviour; a writer killed mid-write leaves no artifact."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("pyarrow")

from soundctm.experiments.store import FsStore, LocalStore, open_store  # noqa: E402


def _spec(kind, tmp_path):
    return {"folder": str(tmp_path / "store"), "file-uri": f"file://{tmp_path}/store",
            "fsspec-memory": f"memory://soundctm-test-{os.getpid()}-{time.time_ns()}"}[kind]


@pytest.fixture(params=["folder", "file-uri", "fsspec-memory"])
def store(request, tmp_path):
    if request.param == "fsspec-memory":
        pytest.importorskip("fsspec")
    return open_store(_spec(request.param, tmp_path), mirror=tmp_path / "mirror")


def test_open_store_picks_the_backend(tmp_path):
    assert isinstance(open_store(tmp_path / "a"), LocalStore)
    s = open_store(f"file://{tmp_path}/b", mirror=tmp_path / "m")
    assert isinstance(s, FsStore) and type(s.fs).__name__ == "LocalFileSystem"
    assert s.local_dir.parent == (tmp_path / "m").resolve()  # one mirror subfolder per URI
    pytest.importorskip("fsspec")
    m = open_store("memory://x", mirror=tmp_path / "m")
    assert isinstance(m, FsStore) and type(m.fs).__name__ == "PyFileSystem"


def test_publish_fetch_list_and_records(store, tmp_path):
    payload = os.urandom(3 << 20)  # several copy chunks
    src = store.local_dir / "models" / "abc.safetensors"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(payload)
    assert not store.exists("models/abc.safetensors") or isinstance(store, LocalStore)
    store.push("models/abc.safetensors")
    assert store.exists("models/abc.safetensors")
    other = tmp_path / "elsewhere.bin"
    other.write_bytes(b"x" * 10)
    store.put_file("scores-1.npz", other)
    store.write_text("nodes/scores-1.json", '{"node_id": "n1"}')
    assert store.list() == ["scores-1.npz"]
    assert store.list("models") == ["models/abc.safetensors"]
    assert store.list("nodes") == ["nodes/scores-1.json"] and store.list("nope") == []
    assert store.read_text("nodes/scores-1.json") == '{"node_id": "n1"}'
    # another process' view: a fresh store object with an empty mirror reads the same bytes
    again = open_store(store.uri, mirror=tmp_path / "mirror2")
    got = again.fetch("models/abc.safetensors")
    assert got.read_bytes() == payload and again.fetch("scores-1.npz").read_bytes() == b"x" * 10
    assert again.fetch("missing.npz") is None and not again.exists("missing.npz")
    # published names are immutable: a second put of other bytes leaves the first
    other.write_bytes(b"y" * 10)
    again.put_file("scores-1.npz", other)
    assert open_store(store.uri, mirror=tmp_path / "mirror3").fetch("scores-1.npz").read_bytes() == b"x" * 10


def test_names_must_stay_inside_the_store(store):
    for bad in ("../x", "/etc/passwd", "", "a/../../b", "dir/"):
        with pytest.raises(ValueError):
            store.exists(bad)


def test_a_write_that_fails_midway_leaves_nothing_visible(store, tmp_path, monkeypatch):
    import shutil

    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(1 << 20))
    real = shutil.copyfileobj

    def half_then_fail(fsrc, fdst, length=0):
        fdst.write(fsrc.read(1000))
        raise OSError("disk full (injected)")

    monkeypatch.setattr(shutil, "copyfileobj", half_then_fail)
    with pytest.raises(OSError, match="injected"):
        store.put_file("scores-2.npz", src)
    monkeypatch.setattr(shutil, "copyfileobj", real)
    assert not store.exists("scores-2.npz") and store.list() == []
    if isinstance(store, LocalStore):
        assert os.listdir(store.root) == []  # not even a temporary file stays behind


_WRITER = textwrap.dedent("""
    import importlib.util, sys
    # the module alone (the experiments package would import every table's machinery: seconds)
    spec = importlib.util.spec_from_file_location("store", sys.argv[4])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    store = mod.open_store(sys.argv[1], mirror=sys.argv[2])
    store.put_file("latents-1.safetensors", sys.argv[3])   # reads the FIFO until its writer closes it
""")


@pytest.mark.parametrize("kind", ["folder", "file-uri"])
def test_a_writer_killed_mid_write_leaves_no_artifact(kind, tmp_path):
    """A real process copying into the store is SIGKILLed after half of the bytes arrived (its source
    is a FIFO we feed): the artifact name never appears; a retry then publishes the whole file."""
    spec = _spec(kind, tmp_path)
    fifo = tmp_path / "src.fifo"
    os.mkfifo(fifo)
    import soundctm.experiments.store as store_module

    proc = subprocess.Popen([sys.executable, "-c", _WRITER, spec, str(tmp_path / "mirror"), str(fifo),
                             store_module.__file__])
    try:
        half = os.urandom(1 << 20)
        deadline = time.time() + 30
        while True:  # open the FIFO once the child has opened it for reading (ENXIO until then)
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f"the writer exited ({proc.returncode}) before reading its source")
                time.sleep(0.02)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "wb") as f:
            f.write(half)
            f.flush()
            store = open_store(spec, mirror=tmp_path / "mirror-check")
            deadline = time.time() + 30
            while time.time() < deadline:  # wait until the child has written into its temporary file
                tmp_files = [p for p in (tmp_path / "store").rglob("*") if p.is_file()] \
                    if (tmp_path / "store").exists() else []
                if tmp_files and sum(p.stat().st_size for p in tmp_files) >= len(half):
                    break
                time.sleep(0.02)
            else:
                pytest.fail("the writer never wrote its temporary file")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    except BrokenPipeError:
        pass
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not store.exists("latents-1.safetensors") and store.list() == []
    full = tmp_path / "full.bin"
    full.write_bytes(half * 2)
    store.put_file("latents-1.safetensors", full)
    fresh = open_store(spec, mirror=tmp_path / "mirror-fresh")
    assert fresh.fetch("latents-1.safetensors").read_bytes() == half * 2
