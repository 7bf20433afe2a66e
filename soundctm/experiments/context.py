"""The narrow view of a runner that the lower experiment modules get (`sources`, `pairs`, `applications`,
`aggregate`): the items, the components, the device, the store and the cached latents, never the runner's
training, scheduling or Ray machinery. `experiments.runner.Runner` implements it."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from soundctm.experiments.spec import Row
from soundctm.experiments.store import Store
from soundctm.experiments.tier import Components, Tier

__all__ = ["ItemContext"]


@runtime_checkable
class ItemContext(Protocol):
    """Items: unit u (a test clip), caption k < K, sample j < S; item i = (u * K + k) * S + j."""

    tier: Tier  # its `device` is where generation runs
    K: int  # captions per unit
    S: int  # samples per caption
    seed: int  # item i's prior noise comes from seed + i
    store: Path  # the artifact store's local folder
    artifacts: Store  # the artifact store (`artifacts.cached` reads and writes through it)

    @property
    def comp(self) -> Components: ...  # the tier's components (VAE, text encoder, embedders, test clips)

    @property
    def units(self) -> list: ...  # the test clips in use

    def items(self) -> tuple[np.ndarray, list[str], list[int]]: ...  # (unit [N], caption [N], seed [N])

    def base_settings(self) -> dict: ...  # what every artifact key of these items starts with

    def conditioning(self, model, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]: ...  # (cond, uncond)

    def latents(self, row: Row) -> torch.Tensor: ...  # a sampler row's generated latents [N, C, T] (cached)

    def decode(self, z: torch.Tensor) -> list[np.ndarray]: ...  # VAE decode, in the tier's decode batches

    def real_takes(self) -> list[np.ndarray]: ...  # another real take of each item's test clip

    def latent_shape(self) -> tuple[int, int]: ...  # (C, T) of one clip's latent

    def scores_settings(self, row: Row) -> dict: ...  # the settings `row`'s scores are keyed by

    def log(self, *args) -> None: ...
