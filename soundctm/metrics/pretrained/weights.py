"""Where the pretrained metric models and text encoders look for their weights (never downloaded).

Every file a user brings is listed once in `WEIGHTS`: its file (or directory) name under
`soundctm.paths.weights_dir()`, the environment variable that overrides the full path, and where
the upstream release lives, in words. `require_weights(*keys)` checks all of them at once and raises
ONE `soundctm.paths.MissingAssetsError` naming every absent file and where to put it.

Loading is `safetensors` or `torch.load(..., weights_only=True)`: nothing in a weights file can run code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from soundctm.paths import MissingAssetsError, weights_dir

__all__ = [
    "WeightSpec",
    "WEIGHTS",
    "weight_path",
    "require_weights",
    "load_state_dict",
    "load_into",
    "set_offline_env",
]


@dataclass(frozen=True)
class WeightSpec:
    """One pretrained asset.

    key: short name used in code ("vggish").
    what: human description used in error messages.
    filename: file (or directory, when `is_dir`) name under `weights_dir()`.
    env: environment variable holding a full path that overrides the default location.
    source: where the upstream release is published, in words.
    is_dir: the asset is a directory; `contents` lists what must be inside it. Each entry is a
      tuple of alternatives (any one present is enough), e.g. ("model.safetensors", "pytorch_model.bin").
    """

    key: str
    what: str
    filename: str
    env: str
    source: str
    is_dir: bool = False
    contents: tuple[tuple[str, ...], ...] = field(default_factory=tuple)


WEIGHTS: dict[str, WeightSpec] = {
    s.key: s
    for s in [
        WeightSpec(
            "vggish",
            "VGGish weights (PyTorch port of the AudioSet VGGish model; state_dict with features.* and "
            "embeddings.* keys)",
            "vggish-10086976.pth",
            "SOUNDCTM_VGGISH_WEIGHTS",
            "the torchvggish project's release 0.1 (GitHub harritaylor/torchvggish), file vggish-10086976.pth",
        ),
        WeightSpec(
            "passt",
            "PaSST-S AudioSet tagger (passt_s_swa_p16_128_ap476)",
            "passt-s-f128-p16-s10-ap.476-swa.pt",
            "SOUNDCTM_PASST_WEIGHTS",
            "the PaSST project's GitHub release v0.0.1-audioset (kkoutini/PaSST), file "
            "passt-s-f128-p16-s10-ap.476-swa.pt",
        ),
        WeightSpec(
            "laion-clap",
            "LAION-CLAP 630k-audioset-best checkpoint (HTSAT-tiny audio encoder, RoBERTa text encoder)",
            "630k-audioset-best.pt",
            "SOUNDCTM_CLAP_WEIGHTS",
            "the LAION-CLAP checkpoints on the Hugging Face hub (repository lukewys/laion_clap), file "
            "630k-audioset-best.pt",
        ),
        WeightSpec(
            "roberta-tokenizer",
            "RoBERTa-base tokenizer files used by LAION-CLAP's text encoder",
            "roberta-base",
            "SOUNDCTM_ROBERTA_TOKENIZER",
            "the Hugging Face hub model roberta-base: put its vocab.json and merges.txt in this directory",
            is_dir=True,
            contents=(("vocab.json",), ("merges.txt",)),
        ),
        WeightSpec(
            "openl3",
            "OpenL3 audio model mel256 / env / 512 (PyTorch state_dict with conv2d_*, batch_normalization_* "
            "and audio_embedding_layer keys)",
            "openl3_mel256_env_512.pth",
            "SOUNDCTM_OPENL3_WEIGHTS",
            "the torchopenl3 project's converted OpenL3 weights for input_repr=mel256, content_type=env, "
            "embedding_size=512 (converted from the Keras OpenL3 release by marl/openl3)",
        ),
        WeightSpec(
            "flan-t5-large",
            "FLAN-T5-Large (encoder used by the 16 kHz SoundCTM-UNet / TANGO teacher)",
            "flan-t5-large",
            "SOUNDCTM_FLAN_T5_DIR",
            "the Hugging Face hub model google/flan-t5-large: put config.json, the weights and the "
            "tokenizer files in this directory",
            is_dir=True,
            contents=(
                ("config.json",),
                ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json"),
                ("tokenizer.json", "spiece.model"),
            ),
        ),
    ]
}


def _spec(key: str) -> WeightSpec:
    try:
        return WEIGHTS[key]
    except KeyError:
        raise KeyError(f"unknown pretrained asset {key!r}; known: {sorted(WEIGHTS)}") from None


def weight_path(key: str) -> Path:
    """Expected location of asset `key`: `$ENV` if set, else `weights_dir() / filename`."""
    spec = _spec(key)
    env = os.environ.get(spec.env)
    return Path(env).expanduser() if env else weights_dir() / spec.filename


def _missing(spec: WeightSpec, path: Path) -> list[tuple[str, str]]:
    where = f"(set {spec.env} to override; source: {spec.source})"
    if not spec.is_dir:
        if path.is_file():
            return []
        return [(f"{spec.what} [{spec.filename}] {where}", str(path))]
    if not path.is_dir():
        need = ", ".join(" or ".join(alt) for alt in spec.contents)
        return [(f"{spec.what} [directory with {need}] {where}", str(path))]
    out = []
    for alts in spec.contents:
        if not any((path / a).exists() for a in alts):
            out.append((f"{spec.what} [{' or '.join(alts)}] {where}", str(path / alts[0])))
    return out


def require_weights(*keys: str) -> dict[str, Path]:
    """Resolve every asset in `keys`; raise one MissingAssetsError listing all that are absent.

    Returns {key: path}. Nothing is downloaded.
    """
    paths, missing = {}, []
    for key in keys:
        spec = _spec(key)
        p = weight_path(key)
        paths[key] = p
        missing += _missing(spec, p)
    if missing:
        raise MissingAssetsError(
            missing,
            hint=f"Put the files under {weights_dir()} (SOUNDCTM_WEIGHTS) or point the variables above at them.",
        )
    return paths


_CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "net")


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a weights file: `.safetensors`, or a torch file read with `weights_only=True`.

    A checkpoint that wraps its weights (`{"state_dict": {...}}`, `{"model": {...}}`) is unwrapped;
    a `module.` prefix (DataParallel) is removed. Raises ValueError on a file without tensors.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        sd = load_file(str(path), device="cpu")
    else:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    for k in _CONTAINER_KEYS:
        if isinstance(sd, dict) and k in sd and isinstance(sd[k], dict):
            sd = sd[k]
            break
    if not isinstance(sd, dict) or not any(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path}: no tensors found (expected a state_dict)")
    sd = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def load_into(
    module: torch.nn.Module,
    sd: dict[str, torch.Tensor],
    *,
    ignore_prefixes: tuple[str, ...] = (),
    source: str = "",
) -> None:
    """`module.load_state_dict(sd, strict=True)` after dropping keys under `ignore_prefixes`.

    Missing or unexpected keys raise with their names (no silent partial loads).
    """
    sd = {k: v for k, v in sd.items() if not k.startswith(ignore_prefixes)} if ignore_prefixes else sd
    own = module.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    bad_shape = sorted(k for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape))
    if missing or unexpected or bad_shape:
        def _few(xs):
            return ", ".join(xs[:8]) + (f" ... (+{len(xs) - 8})" if len(xs) > 8 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_few(unexpected)}")
        if bad_shape:
            parts.append(
                "shape mismatch: "
                + _few([f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in bad_shape])
            )
        raise ValueError(f"weights {source or ''} do not fit {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(sd, strict=True)


def set_offline_env() -> None:
    """Forbid Hugging Face libraries from reaching the network (call before importing them)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[var] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
