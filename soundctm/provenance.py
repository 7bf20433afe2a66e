"""Provenance of a result: the commit, the device, the versions and the command that made it.

The one place these are computed; every result file (training reports, component builds, metric
records, tables) takes its provenance block from `provenance(**extra)`.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy
import torch

import soundctm

REPO = Path(__file__).resolve().parent.parent


def git_commit(mark_dirty: bool = True) -> str | None:
    """HEAD of the checkout this package runs from (None outside git, and for a copy that lies inside
    some other work tree: an unpacked source tarball, a venv's site-packages); `+dirty` with tracked
    edits outside results/ (a run rewriting its own result tables does not make the code dirty)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10)
        lines = out.stdout.splitlines()
        if out.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != REPO:
            return None
        head = lines[1]
        dirty = mark_dirty and subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                               ":(exclude)results"], cwd=REPO,
                                              capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_name() -> str:
    """The CUDA device's name, or the CPU with its thread count."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def cpu_info() -> dict:
    """The processor and the vector instructions torch's CPU kernels use on it ("AVX2", "AVX512", ...).

    Training is bit-reproducible only on one kind of processor (docs/determinism.md): kernels chosen by CPU
    features round differently, so a training report names the processor it ran on."""
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")) and ":" in line:
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        capability = None
    return {"model": model or platform.processor() or platform.machine(), "capability": capability}


def provenance(*, mark_dirty: bool = True, **extra) -> dict:
    """Commit, command, versions, device, platform and time, plus `extra` (seeds, settings, wall time)."""
    return {
        "git_commit": git_commit(mark_dirty),
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "python": sys.version.split()[0],
        "versions": {"soundctm": soundctm.__version__, "torch": torch.__version__, "numpy": np.__version__,
                     "scipy": scipy.__version__},
        "device": device_name(),
        "cpu": cpu_info(),
        "platform": platform.platform(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **extra,
    }


__all__ = ["REPO", "git_commit", "device_name", "cpu_info", "provenance"]
