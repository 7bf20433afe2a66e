"""Extraction throughput (files/s) with 1 worker (in-process) and 2 workers (Ray actor pool).

    .venv/bin/pytest bench/test_bench_extract.py --benchmark-only

Each round extracts 96 two-second 16 kHz clips with the model-free `logmel` embedder into a fresh
work directory (nothing reused). The in-process run uses one torch thread (each Ray actor does too);
the Ray session is started outside the timing, the actors (one model each) inside it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid

import numpy as np
import pytest
import soundfile as sf
import torch

from soundctm.distributed import map_chunks_ray
from soundctm.metrics.extract import extract_dir

N_FILES = 96


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench_audio")
    rng = np.random.default_rng(0)
    for i in range(N_FILES):
        sf.write(d / f"c{i:04d}.wav", (rng.normal(size=32768) * 0.1).astype(np.float32), 16000)
    return d


def _run(audio_dir, work_root, workers):
    r = extract_dir(
        audio_dir, "logmel", work_root / uuid.uuid4().hex, workers=workers, chunk_size=8, progress=False,
        map_chunks=map_chunks_ray if workers > 1 else None,
    )
    assert len(r.names) == N_FILES and not r.reused
    return r


def test_bench_extract_1_worker(benchmark, audio_dir, tmp_path):
    torch.set_num_threads(1)
    r = benchmark.pedantic(_run, args=(audio_dir, tmp_path, 1), rounds=3, iterations=1)
    benchmark.extra_info["files"] = N_FILES
    benchmark.extra_info["files_per_s"] = N_FILES / benchmark.stats.stats.mean
    assert r.embeddings is not None


@pytest.mark.ray
def test_bench_extract_2_workers_ray(benchmark, audio_dir, tmp_path):
    ray = pytest.importorskip("ray")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    temp = tempfile.mkdtemp(prefix="rt_", dir="/tmp")
    from soundctm.distributed import init_ray

    init_ray(num_cpus=2, _temp_dir=temp)
    try:
        r = benchmark.pedantic(_run, args=(audio_dir, tmp_path, 2), rounds=3, iterations=1)
        benchmark.extra_info["files"] = N_FILES
        benchmark.extra_info["files_per_s"] = N_FILES / benchmark.stats.stats.mean
        assert r.embeddings is not None
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
