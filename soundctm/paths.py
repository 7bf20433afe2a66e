"""Where soundctm keeps what it builds and where it looks for what a user brings.

- `SOUNDCTM_CACHE` (default `~/.cache/soundctm`): everything the package builds itself
  (tiny corpus, tiny VAE / text encoder / evaluators / teachers, latent caches, reference statistics).
- `SOUNDCTM_WEIGHTS` (default `$SOUNDCTM_CACHE/weights`): pretrained files a user supplies
  (VGGish, PaSST, LAION-CLAP, OpenL3, FLAN-T5, paper checkpoints). Never downloaded by this package.
- `SOUNDCTM_AUDIOCAPS` (default `$SOUNDCTM_CACHE/audiocaps`): AudioCaps CSVs and audio for the paper tier.
- `committed_tiny_dir()` (`soundctm/assets/tiny`, package data): the tiny models the commands default to.
- `results_root()` (`./results`, the working directory): where tables and reports go unless told otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    p = Path(os.environ.get("SOUNDCTM_CACHE", Path.home() / ".cache" / "soundctm")).expanduser()
    return p


def tiny_components_dir(cache: str | os.PathLike | None = None) -> Path:
    """`<cache>/tiny/components`: the tiny VAE and CLAP (`soundctm build-components`); cache defaults
    to `cache_dir()`."""
    base = Path(cache).expanduser() if cache is not None else cache_dir()
    return base / "tiny" / "components"


def committed_tiny_dir() -> Path:
    """`soundctm/assets/tiny`: the tiny models that ship with the package (package data of the wheel and
    committed files of the checkout): VAE, CLAP, teacher, student and `evaluators/`."""
    return Path(__file__).resolve().parent / "assets" / "tiny"


def results_root() -> Path:
    """`results/` of the working directory: the default parent of every tier's tables and report
    (`<results_root()>/<tier>`); never a folder inside the package or its installation."""
    return Path.cwd() / "results"


def weights_dir() -> Path:
    env = os.environ.get("SOUNDCTM_WEIGHTS")
    return Path(env).expanduser() if env else cache_dir() / "weights"


def audiocaps_dir() -> Path:
    env = os.environ.get("SOUNDCTM_AUDIOCAPS")
    return Path(env).expanduser() if env else cache_dir() / "audiocaps"


class MissingAssetsError(FileNotFoundError):
    """Raised once, listing every missing file a run needs and where to put it."""

    def __init__(self, missing: list[tuple[str, str]], hint: str = ""):
        # missing: (what, expected path)
        self.missing = list(missing)
        lines = [f"{len(self.missing)} required file(s) missing (nothing is downloaded automatically):"]
        lines += [f"  - {what}: expected at {path}" for what, path in self.missing]
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


def require_files(items: list[tuple[str, str | os.PathLike]], hint: str = "") -> None:
    """Check that every (description, path) exists; raise one MissingAssetsError naming all absent ones."""
    missing = [(what, str(path)) for what, path in items if not Path(path).exists()]
    if missing:
        raise MissingAssetsError(missing, hint)
