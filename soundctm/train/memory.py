"""Peak training memory of a run's settings, measured in a fresh process (Table 6's memory column).

`training_memory(cfg)` runs `steps` training steps of `cfg` (every loss term active from the first
step, e.g. a GAN term that training starts later) in a new Python process
(`python -m soundctm.train.memory`) and returns what that process used:

    peak_rss_mib        the process's peak resident set size (getrusage ru_maxrss), CPU runs
    base_rss_mib        its resident set after importing torch and loading the training data
    train_rss_mib       peak_rss_mib - base_rss_mib: what the models, optimiser states, activations
                        and gradients of training added (the number the tables report on CPU)
    cuda_max_allocated_mib   torch.cuda.max_memory_allocated() of the run, GPU runs (the paper's number)

A fresh process per measurement, because an allocator keeps freed memory: a peak read inside a
process that trained something else before (a reused Ray worker) would carry that run's residue.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from soundctm.io import write_json
from soundctm.train.config import config_from_dict, resolve_config
from soundctm.train.loop import load_data, run_training

__all__ = ["training_memory", "MEMORY_STEPS"]

MEMORY_STEPS = 3


def training_memory(cfg, steps: int = MEMORY_STEPS, *, timeout: float = 900.0) -> dict[str, float]:
    """Peak memory of `steps` training steps of `cfg` (a `TrainConfig`) in a fresh process (see module doc)."""
    c = dataclasses.replace(resolve_config(cfg), steps=int(steps), export=False, checkpoint_every=10**9,
                            fidelity_items=0, threads=cfg.threads or 1, gan_start=0)  # every term of the loss active
    with tempfile.TemporaryDirectory(prefix="soundctm-mem-") as tmp:
        cfg_path = Path(tmp) / "config.json"
        cfg_path.write_text(json.dumps(c.to_dict()))
        out_path = Path(tmp) / "memory.json"
        env = {**os.environ, "OMP_NUM_THREADS": str(c.threads)}
        proc = subprocess.run([sys.executable, "-m", "soundctm.train.memory", str(cfg_path), str(Path(tmp) / "run"),
                               str(out_path)], env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"memory measurement of a {c.kind} run failed:\n{proc.stderr[-4000:]}")
        return json.loads(out_path.read_text())


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _main(argv: list[str]) -> int:
    cfg_path, run_dir, out_path = argv
    cfg = config_from_dict(json.loads(Path(cfg_path).read_text()))
    torch.set_num_threads(cfg.threads or 1)
    load_data(cfg, log=lambda *a, **k: None)  # warm the file caches / lazy imports the run will use
    base = _rss_mib()
    cuda = torch.device(cfg.device).type == "cuda" and torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    run_training(cfg, run_dir, progress=False, log=lambda *a, **k: None)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    out = {"peak_rss_mib": peak, "base_rss_mib": base, "train_rss_mib": peak - base, "steps": cfg.steps,
           "batch_size": cfg.batch_size, "device": str(cfg.device)}
    if cuda:
        out["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    write_json(out_path, out)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
