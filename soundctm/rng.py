"""Replayable randomness: every draw derives from (seed, step, example index).

Each example gets its own `torch.Generator`, so what example i sees does not depend on the batch
size, on which worker holds it, or on the number of workers (EDM's StackedRandomGenerator idea;
the official SoundCTM code seeds every rank the same, we don't).
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


def example_generators(seed: int, step: int | str, indices: Sequence[int], tag: str = "") -> list[torch.Generator]:
    """One CPU generator per example, seeded by (seed, step, example index, tag)."""
    gens = []
    for i in indices:
        g = torch.Generator()
        g.manual_seed(derive_seed(seed, step, int(i), tag))
        gens.append(g)
    return gens


def _draw(fn, shape: tuple[int, ...], generator: GeneratorLike, device, dtype) -> torch.Tensor:
    if generator is None or isinstance(generator, torch.Generator):
        return fn(shape, generator=generator, dtype=dtype).to(device)
    gens = list(generator)
    if len(gens) != shape[0]:
        raise ValueError(f"got {len(gens)} per-example generators for a batch of {shape[0]}")
    return torch.stack([fn(shape[1:], generator=g, dtype=dtype) for g in gens]).to(device)


def randn(shape: tuple[int, ...], generator: GeneratorLike = None, *, device=None,
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal draws; with a list of generators, row i comes from generator i."""
    return _draw(torch.randn, tuple(shape), generator, device, dtype)


def rand(shape: tuple[int, ...], generator: GeneratorLike = None, *, device=None,
         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform [0, 1) draws; with a list of generators, row i comes from generator i."""
    return _draw(torch.rand, tuple(shape), generator, device, dtype)


def prior_noise(seeds: Sequence[int], shape: tuple[int, ...], sigma_max: float = 80.0, *,
                device=None) -> torch.Tensor:
    """z_T = sigma_max * eps with eps of example i drawn from its own seed. Returns [len(seeds), *shape]."""
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    return sigma_max * randn((len(gens), *shape), gens, device=device)
