"""Where soundctm keeps what it builds and where it looks for what a user brings.

- `SOUNDCTM_CACHE` (default `~/.cache/soundctm`): everything the package builds itself
  (tiny corpus, tiny VAE / text encoder / evaluators / teachers, latent caches, reference statistics).
- `SOUNDCTM_WEIGHTS` (default `$SOUNDCTM_CACHE/weights`): pretrained files a user supplies
  (VGGish, PaSST, LAION-CLAP, OpenL3, FLAN-T5, paper checkpoints). Never downloaded by this package.
- `SOUNDCTM_AUDIOCAPS` (default `$SOUNDCTM_CACHE/audiocaps`): AudioCaps CSVs and audio for the paper tier.
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
    """`results/tiny/checkpoints` of the source checkout: the tiny models that ship with the repository
    (VAE, CLAP, evaluators, teacher, student). May not exist (an installed wheel)."""
    return Path(__file__).resolve().parents[1] / "results" / "tiny" / "checkpoints"


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
