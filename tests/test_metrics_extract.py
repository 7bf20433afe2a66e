"""Resumable chunked extraction: order independence, atomic chunks, kill-and-rerun, Ray == single process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest
import soundfile as sf

from soundctm.distributed import map_chunks_ray
from soundctm.metrics.extract import extract_dir, extract_files, list_audio, plan_chunks
from soundctm.metrics.registry import NonFiniteAudioError, get_embedder


def _write_set(d, n=40, seed=0):
    """n short clips with assorted rates, lengths and channel counts."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        sr = [16000, 8000, 22050][i % 3]
        length = int(sr * rng.uniform(0.05, 0.6))
        x = (rng.normal(size=length) * rng.uniform(0.01, 0.3)).astype(np.float32)
        if i % 5 == 0:
            x = np.stack([x, 0.5 * x], axis=1)  # stereo [N, C]
        sf.write(d / f"clip{i:03d}.wav", x, sr, subtype="FLOAT")
    return d


def _same(a, b):
    assert a.names == b.names
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_allclose(a.embeddings, b.embeddings, rtol=1e-6, atol=1e-6)


def test_chunks_are_order_independent_and_reused(tmp_path):
    d = _write_set(tmp_path / "audio", 23)
    emb = get_embedder("logmel")
    full = extract_dir(d, emb, tmp_path / "w1", chunk_size=5, progress=False)
    assert len(full.names) == 23 and full.computed == [0, 1, 2, 3, 4] and full.reused == []
    assert full.frames.sum() == len(full.embeddings)
    # chunk i always holds the same files, whatever order they are given in
    files = list_audio(d)
    jobs_a = plan_chunks(files, 5, "k")
    jobs_b = plan_chunks(list(reversed(files)), 5, "k")
    assert jobs_a == jobs_b
    # per-file results equal single-file embedding
    one = emb.embed([sf.read(files[7], dtype="float32")[0]], sf.info(files[7]).samplerate)
    np.testing.assert_allclose(full.per_file()[7], one["embeddings"], rtol=1e-6, atol=1e-6)
    # re-run: nothing recomputed
    again = extract_dir(d, emb, tmp_path / "w1", chunk_size=5, progress=False)
    assert again.computed == [] and again.reused == [0, 1, 2, 3, 4]
    _same(full, again)
    # a changed file invalidates only its chunk
    x, sr = sf.read(files[12], dtype="float32")
    sf.write(files[12], x * 0.5, sr, subtype="FLOAT")
    changed = extract_dir(d, emb, tmp_path / "w1", chunk_size=5, progress=False)
    assert changed.computed == [2]


def test_killed_run_loses_no_finished_chunk(tmp_path):
    """Hard-kill (SIGKILL) a single-process run right after its 3rd chunk is written, then re-run."""
    d = _write_set(tmp_path / "audio", 30)
    work = tmp_path / "work"
    code = textwrap.dedent(f"""
        import os, signal
        from soundctm.metrics.extract import extract_dir
        seen = []
        def on_chunk(i):
            seen.append(i)
            if len(seen) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
        extract_dir({str(d)!r}, "logmel", {str(work)!r}, chunk_size=4, progress=False, on_chunk=on_chunk)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    done = sorted(p.name for p in work.glob("chunk_*.npz"))
    assert len(done) == 3 and not list(work.glob(".*.tmp"))
    mtimes = {p: os.stat(work / p).st_mtime_ns for p in done}
    rerun = extract_dir(d, "logmel", work, chunk_size=4, progress=False)
    assert rerun.reused == [0, 1, 2] and rerun.computed == [3, 4, 5, 6, 7]
    assert {p: os.stat(work / p).st_mtime_ns for p in done} == mtimes  # not rewritten
    fresh = extract_dir(d, "logmel", tmp_path / "fresh", chunk_size=4, progress=False)
    _same(rerun, fresh)


def test_nan_file_error_names_it_and_keeps_other_chunks(tmp_path):
    d = _write_set(tmp_path / "audio", 12)
    bad = d / "clip005.wav"
    x, sr = sf.read(bad, dtype="float32")
    x[3] = np.nan
    sf.write(bad, x, sr, subtype="FLOAT")
    with pytest.raises(NonFiniteAudioError, match="clip005.wav"):
        extract_dir(d, "logmel", tmp_path / "w", chunk_size=4, progress=False)
    assert len(list((tmp_path / "w").glob("chunk_00000_*.npz"))) == 1


# ----------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    temp = tempfile.mkdtemp(prefix="rt_", dir="/tmp")
    from soundctm.distributed import init_ray

    init_ray(num_cpus=2, _temp_dir=temp)
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.ray
@pytest.mark.slow
def test_ray_pool_matches_single_process_and_resumes_after_failure(tmp_path, ray_session):
    d = _write_set(tmp_path / "audio", 40, seed=1)
    emb = get_embedder("logmel")
    single = extract_dir(d, emb, tmp_path / "single", chunk_size=4, progress=False)

    # a corrupt file makes one actor's chunk fail; every other chunk still finishes and is kept
    bad = d / "clip021.wav"
    good_bytes = bad.read_bytes()
    stat = os.stat(bad)
    x, sr = sf.read(bad, dtype="float32")
    x[0] = np.inf
    sf.write(bad, x, sr, subtype="FLOAT")
    work = tmp_path / "ray"
    with pytest.raises(NonFiniteAudioError, match="clip021.wav"):
        extract_dir(d, emb, work, workers=2, map_chunks=map_chunks_ray, chunk_size=4, progress=False)
    done = sorted(p.name for p in work.glob("chunk_*.npz"))
    assert len(done) == 9 and not any(p.startswith("chunk_00005_") for p in done)
    mtimes = {p: os.stat(work / p).st_mtime_ns for p in done}

    # repair the file (same bytes and mtime as before) and re-run with Ray: only chunk 5 is computed
    bad.write_bytes(good_bytes)
    os.utime(bad, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    rerun = extract_dir(d, "logmel", work, workers=2, map_chunks=map_chunks_ray, chunk_size=4, progress=False)
    assert rerun.computed == [5] and len(rerun.reused) == 9
    assert {p: os.stat(work / p).st_mtime_ns for p in done} == mtimes
    _same(rerun, single)
    # a whole run on the pool (embedder shipped by name) equals the single-process numbers
    fresh = extract_dir(d, "logmel", tmp_path / "ray2", workers=2, map_chunks=map_chunks_ray, chunk_size=4,
                        progress=False)
    assert fresh.computed == list(range(10))
    _same(fresh, single)


@pytest.mark.ray
def test_actor_resources_fit_two_actors_on_two_cpus(ray_session):
    from soundctm.distributed import actor_resources

    r = actor_resources(2)
    assert r["num_cpus"] * 2 <= ray_session.cluster_resources()["CPU"]
    assert "num_gpus" not in r  # no GPU here: asking for one would hang forever


def test_extract_files_rejects_duplicate_names(tmp_path):
    a = _write_set(tmp_path / "a", 2)
    b = _write_set(tmp_path / "b", 2)
    with pytest.raises(ValueError, match="unique"):
        extract_files(list_audio(a) + list_audio(b), "logmel", tmp_path / "w", progress=False)
