"""Timing that means the same on a CPU and on a GPU.

A CUDA call returns as soon as its kernels are queued, so a wall clock around it measures launch
time. `time_call` therefore brackets every timed call with CUDA events on the current stream and
waits for the end event before reading the time (the GPU's own clock: the queued work from the
start to the end event, including any time the GPU waited for the host to launch it); on a CPU it
reads `time.perf_counter` around the call. It makes `warmup` untimed calls first (allocator,
cuDNN / kernel selection, lazy initialisation, torch.compile) and returns every repeat, so callers
report the median and keep the spread.

`timing_column(batch, always_uncond)` is the one name of a timing column: seconds per sample at a
batch size, and whether the unconditional branch was evaluated at nu = 1 (the official sampler
always evaluates it; ours skips it, since nu = 1 weighs it by 0).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

__all__ = ["synchronize", "time_call", "timing_column", "median"]


def _is_cuda(device) -> bool:
    return torch.device(device).type == "cuda"


def synchronize(device) -> None:
    """Wait for every queued kernel of `device` (no-op on the CPU)."""
    if _is_cuda(device):
        torch.cuda.synchronize(torch.device(device))


def time_call(fn: Callable[[], object], device="cpu", repeats: int = 5, warmup: int = 1) -> list[float]:
    """Seconds of each of `repeats` calls of `fn()` after `warmup` untimed ones (see the module docstring)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    for _ in range(warmup):
        fn()
    synchronize(device)
    out = []
    if _is_cuda(device):
        dev = torch.device(device)
        with torch.cuda.device(dev):
            for _ in range(repeats):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                out.append(start.elapsed_time(end) / 1000.0)
        return out
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def timing_column(batch: int = 1, always_uncond: bool = False) -> str:
    """The column name of seconds per sample at `batch`, e.g. "seconds/sample (batch 8, ∅ at ν = 1)"."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    return f"seconds/sample (batch {batch}" + (", ∅ evaluated at ν = 1" if always_uncond else "") + ")"


def median(xs: list[float]) -> float:
    return statistics.median(xs)
