"""Replayable randomness: every draw derives from (seed, step, example index).

Each example gets its own `torch.Generator`, so what example i sees does not depend on the batch
size, on which worker holds it, or on the number of workers (EDM's StackedRandomGenerator idea;
the official SoundCTM code seeds every rank the same, we don't).

Device policy: a seeded draw is made by a generator on `generator_device` and the result is
created on (or copied to) `device`, the device of the model that will see it. The default
generator device is the CPU, so a seed gives the same bits on every device (CPU results are
those of a CPU-only run, and a CUDA run sees the same z_T as a CPU run); pass
`generator_device=None` to draw with a generator on `device` itself (no host-to-device copy; the
bits are then reproducible on that device type only). Unseeded draws (`generator=None`) use the
global generator of `device`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

GeneratorLike = torch.Generator | Sequence[torch.Generator] | None


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from any tuple of ints/strings (stable across Python versions and platforms)."""
    h = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def example_generators(seed: int, step: int | str, indices: Sequence[int], tag: str = "",
                       device="cpu") -> list[torch.Generator]:
    """One generator per example on `device` (default the CPU), seeded by (seed, step, example index, tag)."""
    gens = []
    for i in indices:
        g = torch.Generator(device=device)
        g.manual_seed(derive_seed(seed, step, int(i), tag))
        gens.append(g)
    return gens


def seeded_generators(seeds: Sequence[int], device="cpu") -> list[torch.Generator]:
    """One generator per seed on `device` (default the CPU), generator i seeded with seeds[i]."""
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def _draw(fn, shape: tuple[int, ...], generator: GeneratorLike, device, dtype) -> torch.Tensor:
    if generator is None:
        return fn(shape, dtype=dtype, device=device)
    if isinstance(generator, torch.Generator):
        return fn(shape, generator=generator, dtype=dtype, device=generator.device).to(device)
    gens = list(generator)
    if len(gens) != shape[0]:
        raise ValueError(f"got {len(gens)} per-example generators for a batch of {shape[0]}")
    return torch.stack([fn(shape[1:], generator=g, dtype=dtype, device=g.device) for g in gens]).to(device)


def randn(shape: tuple[int, ...], generator: GeneratorLike = None, *, device=None,
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal draws; with a list of generators, row i comes from generator i."""
    return _draw(torch.randn, tuple(shape), generator, device, dtype)


def rand(shape: tuple[int, ...], generator: GeneratorLike = None, *, device=None,
         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform [0, 1) draws; with a list of generators, row i comes from generator i."""
    return _draw(torch.rand, tuple(shape), generator, device, dtype)


def prior_noise(seeds: Sequence[int], shape: tuple[int, ...], sigma_max: float = 80.0, *,
                device=None, generator_device="cpu") -> torch.Tensor:
    """z_T = sigma_max * eps with eps of example i drawn from its own seed, on `device`.
    Returns [len(seeds), *shape]. `generator_device`: where the seeded generators live (default the
    CPU: the same z_T on every device; None: on `device`, see the module docstring)."""
    gdev = device if generator_device is None else generator_device
    gens = seeded_generators(seeds, "cpu" if gdev is None else gdev)
    return sigma_max * randn((len(gens), *shape), gens, device=device)
