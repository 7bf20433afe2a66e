"""Embedder interface and registry.

Every model that turns audio into metric features (pretrained VGGish / PaSST / LAION-CLAP /
OpenL3 adapters in `soundctm.metrics.pretrained`, the in-domain tiny evaluators in
`soundctm.metrics.indomain`) is an `Embedder`. Metrics only ever see its output dict, and
every reported number carries the embedder's `name` and `version` (`FD[vggish]`, ...).

Writing an embedder
-------------------
Subclass `Embedder`, set the class attributes, implement `forward(waveforms)`:

    class MyEmbedder(Embedder):
        name, version = "my-model", "1"
        sample_rate, window, hop = 16000, 15360, 15360
        outputs = ("embeddings",)
        def forward(self, waveforms):            # list of mono float32 [N_i], N_i >= window
            ...
            return {"embeddings": emb, "frames": counts}

`Embedder.embed(waveforms, sample_rate)` does the shared preparation before `forward`:
input checks (NaN/Inf -> `NonFiniteAudioError` naming the file), stereo -> mono downmix,
soxr resampling to `self.sample_rate`, zero-padding clips shorter than `self.window`.
Model-specific preprocessing (peak normalisation, int16 round trip, cutting to 10 s, ...)
belongs in `forward`.

Register a factory with `register(name, factory)`; `get_embedder(name, **kw)` builds it.
The pretrained names are looked up lazily in `soundctm.metrics.pretrained.<module>`, which must
define `build(**kw) -> Embedder`.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from soundctm.audio import resample

__all__ = [
    "Embedder",
    "NonFiniteAudioError",
    "prepare_waveforms",
    "register",
    "get_embedder",
    "available_embedders",
    "EMBEDDER_SETS",
]


class NonFiniteAudioError(ValueError):
    """A waveform contains NaN or Inf samples; the message names the offending file."""


class Embedder(abc.ABC):
    """An audio feature extractor used by the metrics.

    Attributes (class or instance):
      name: registry name, e.g. "vggish", "tiny-evt".
      version: version string of the weights/front end; changes whenever numbers would change.
      sample_rate: rate (Hz) the model consumes; inputs are resampled to it.
      window: samples per analysis frame/example, or None (whole clip). Shorter clips are
        zero-padded to `window` so every file yields at least one frame.
      hop: samples between frames, or None (one frame per clip).
      channels: "mono" (stereo input is averaged over channels).
      outputs: subset of ("embeddings", "logits"): what `forward` returns.
      has_text: True when the embedder also embeds captions (`embed_text`), e.g. CLAP.
    """

    name: str = ""
    version: str = ""
    sample_rate: int = 16000
    window: int | None = None
    hop: int | None = None
    channels: str = "mono"
    outputs: tuple[str, ...] = ("embeddings",)
    has_text: bool = False

    # ------------------------------------------------------------------ to implement
    @abc.abstractmethod
    def forward(self, waveforms: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Features of already-prepared audio.

        waveforms: B mono float32 arrays [N_i] at `self.sample_rate`, N_i >= `self.window`.
        Returns a dict with (as listed in `self.outputs`):
          "embeddings": [F, D] float array, all frames of all clips concatenated in input order,
          "frames": [B] int array, frames per clip (sum == F); required with "embeddings",
          "logits": [B, K] float array, one row of class logits per clip.
        """

    def embed_text(self, captions: Sequence[str]) -> np.ndarray:
        """Text embeddings [B, D] in the same space as the audio embeddings (CLAP-type models)."""
        raise NotImplementedError(f"embedder {self.name!r} has no text tower")

    # ------------------------------------------------------------------ shared
    @property
    def min_samples(self) -> int:
        return int(self.window) if self.window else 1

    def settings(self) -> dict[str, Any]:
        """Everything that changes the numbers; used for cache keys and provenance."""
        return {
            "name": self.name,
            "version": str(self.version),
            "sample_rate": int(self.sample_rate),
            "window": None if self.window is None else int(self.window),
            "hop": None if self.hop is None else int(self.hop),
            "channels": self.channels,
            "outputs": list(self.outputs),
        }

    @property
    def tag(self) -> str:
        """Column tag, e.g. `tiny-evt` (the version is recorded in provenance and cache keys)."""
        return self.name

    def embed(
        self,
        waveforms: Sequence[np.ndarray] | np.ndarray | Any,
        sample_rate: int,
        names: Sequence[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Prepare `waveforms` (see `prepare_waveforms`) and run `forward`.

        waveforms: list of arrays [N] (mono), [C, N] or [N, C] (multi-channel; the short axis is
          channels), or a [B, N] / [B, C, N] array or tensor.
        sample_rate: rate of the input (Hz); resampled to `self.sample_rate`.
        names: per-clip names (file names) used in error messages.
        Returns the `forward` dict; "frames" is [B] int64 and sums to len(embeddings).
        """
        prepared = prepare_waveforms(
            waveforms, sample_rate, self.sample_rate, min_samples=self.min_samples, names=names
        )
        if not prepared:
            return _empty_output(self)
        out = dict(self.forward(prepared))
        return _check_output(self, out, len(prepared))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r}, sr={self.sample_rate})"


def _empty_output(emb: Embedder) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if "embeddings" in emb.outputs:
        out["embeddings"] = np.zeros((0, 0), np.float32)
        out["frames"] = np.zeros((0,), np.int64)
    if "logits" in emb.outputs:
        out["logits"] = np.zeros((0, 0), np.float32)
    return out


def _check_output(emb: Embedder, out: dict, batch: int) -> dict[str, np.ndarray]:
    for key in emb.outputs:
        if key not in out:
            raise RuntimeError(
                f"embedder {emb.name!r} declared output {key!r} but forward() did not return it"
            )
    if "embeddings" in out:
        e = np.asarray(out["embeddings"])
        if e.ndim != 2:
            raise RuntimeError(f"embedder {emb.name!r}: embeddings must be [F, D], got shape {e.shape}")
        frames = np.asarray(out.get("frames", np.ones(batch, np.int64) if len(e) == batch else None))
        if frames.ndim != 1 or len(frames) != batch or int(frames.sum()) != len(e):
            raise RuntimeError(
                f"embedder {emb.name!r}: frames {frames.tolist()} do not match {len(e)} embeddings "
                f"for {batch} clips"
            )
        out["embeddings"] = e
        out["frames"] = frames.astype(np.int64)
    if "logits" in out:
        lg = np.asarray(out["logits"])
        if lg.ndim != 2 or len(lg) != batch:
            raise RuntimeError(f"embedder {emb.name!r}: logits must be [{batch}, K], got {lg.shape}")
        out["logits"] = lg
    return out


# ---------------------------------------------------------------------- preparation
def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().float().numpy()
    return np.asarray(x)


def _to_mono(x: np.ndarray, name: str) -> np.ndarray:
    if x.ndim == 1:
        return x
    if x.ndim == 2:
        ch_axis = 0 if x.shape[0] <= x.shape[1] else 1
        if x.shape[ch_axis] > 8:
            raise ValueError(f"{name}: cannot tell channels from samples in an array of shape {x.shape}")
        return x.mean(axis=ch_axis)
    raise ValueError(f"{name}: expected a waveform [N], [C, N] or [N, C], got shape {x.shape}")


def prepare_waveforms(
    waveforms: Sequence[np.ndarray] | np.ndarray | Any,
    sample_rate: int,
    target_rate: int,
    min_samples: int = 1,
    names: Sequence[str] | None = None,
) -> list[np.ndarray]:
    """Check, downmix, resample and pad waveforms.

    waveforms: list of [N] / [C, N] / [N, C] arrays or tensors, or one [B, N] / [B, C, N] batch.
    Returns a list of B float32 mono arrays [M_i] at `target_rate`, M_i >= `min_samples`
    (zero-padded at the end). Raises `NonFiniteAudioError` naming the clip on NaN/Inf samples.
    """
    if sample_rate is None or int(sample_rate) <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    if not isinstance(waveforms, (list, tuple)):
        arr = _to_numpy(waveforms)
        if arr.ndim == 1:
            arr = arr[None]
        waveforms = list(arr)
    if names is not None and len(names) != len(waveforms):
        raise ValueError(f"{len(names)} names for {len(waveforms)} waveforms")
    out = []
    for i, w in enumerate(waveforms):
        name = names[i] if names is not None else f"clip #{i}"
        x = _to_numpy(w)
        if not np.issubdtype(x.dtype, np.number):
            raise TypeError(f"{name}: waveform dtype {x.dtype} is not numeric")
        if np.issubdtype(x.dtype, np.integer):  # PCM integers -> [-1, 1]
            x = x.astype(np.float64) / float(np.iinfo(x.dtype).max)
        x = _to_mono(x, name).astype(np.float64)
        bad = ~np.isfinite(x)
        if bad.any():
            raise NonFiniteAudioError(
                f"{name}: {int(bad.sum())} non-finite (NaN/Inf) sample(s), "
                f"first at index {int(np.argmax(bad))}"
            )
        if int(sample_rate) != int(target_rate) and len(x) > 0:
            x = resample(x, int(sample_rate), int(target_rate))
        x = np.asarray(x, dtype=np.float32)
        if len(x) < min_samples:
            x = np.pad(x, (0, min_samples - len(x)))
        out.append(np.ascontiguousarray(x))
    return out


# ---------------------------------------------------------------------- registry
_FACTORIES: dict[str, Callable[..., Embedder]] = {}

# name -> module (which defines `build(**kw) -> Embedder`), imported on first use.
_LAZY: dict[str, str] = {
    "vggish": "soundctm.metrics.pretrained.vggish",
    "passt": "soundctm.metrics.pretrained.passt",
    "laion-clap": "soundctm.metrics.pretrained.clap",
    "openl3": "soundctm.metrics.pretrained.openl3",
    "tiny-evt": "soundctm.metrics.indomain",
    "tiny-clap": "soundctm.metrics.indomain",
    "logmel": "soundctm.metrics.indomain",
}

# Named sets of embedders for `soundctm evaluate --embedder-set`: metric -> embedder name.
EMBEDDER_SETS: dict[str, dict[str, str]] = {
    "tiny": {"fd": "tiny-evt", "kl": "tiny-evt", "is": "tiny-evt", "clap": "tiny-clap"},
    "paper": {"fd": "vggish", "fd_openl3": "openl3", "kl": "passt", "is": "passt", "clap": "laion-clap"},
}


def register(name: str, factory: Callable[..., Embedder], overwrite: bool = False) -> None:
    """Register `factory(**kw) -> Embedder` under `name`."""
    if name in _FACTORIES and not overwrite and _FACTORIES[name] is not factory:
        raise ValueError(f"embedder {name!r} is already registered")
    _FACTORIES[name] = factory


def available_embedders() -> list[str]:
    return sorted(set(_FACTORIES) | set(_LAZY))


def get_embedder(name: str, **kw) -> Embedder:
    """Build the embedder registered as `name` (keyword arguments go to its factory)."""
    if name not in _FACTORIES and name in _LAZY:
        module = _LAZY[name]
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and module.startswith(e.name):
                raise ModuleNotFoundError(
                    f"embedder {name!r} needs module {module}, which is not available "
                    "(pretrained adapters ship with soundctm's `metrics` extra: "
                    "pip install 'soundctm[metrics]')"
                ) from e
            raise
        if name not in _FACTORIES:
            if hasattr(mod, "build"):
                register(name, mod.build)
            else:
                raise RuntimeError(f"{module} neither registers {name!r} nor defines build(**kw)")
    if name not in _FACTORIES:
        raise KeyError(f"unknown embedder {name!r}; available: {available_embedders()}")
    emb = _FACTORIES[name](**kw)
    if not isinstance(emb, Embedder):
        raise TypeError(f"factory for {name!r} returned {type(emb).__name__}, not an Embedder")
    return emb
