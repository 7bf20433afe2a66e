"""Training-state checkpoints (resume) and inference exports (safetensors), kept apart.

- Training state: `<run_dir>/checkpoints/ckpt-<step>.pt`, a dict of tensors, numbers, strings and
  plain containers (model, EMA, optimiser, step, RNG state, resolved config), written atomically
  with `soundctm.io.save_state` and read back with `torch.load(weights_only=True)`: a file holding a
  pickled custom object is refused.
- Export: EMA weights in safetensors, with everything needed to rebuild the model (architecture,
  backbone config, sigma_data, shapes, the training config) in the metadata. `load_export(path)`
  rebuilds the model from that metadata alone, never from command-line flags.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from soundctm.ctm import CTMStudent
from soundctm.edm import Precond
from soundctm.io import load_safetensors, load_state, save_safetensors, save_state
from soundctm.nn.dit import DiTConfig
from soundctm.nn.unet import UNetConfig
from soundctm.presets import RECIPE_FIELDS, ModelPreset, build_backbone, model_preset

__all__ = [
    "CHECKPOINT_FORMAT",
    "EXPORT_FORMAT",
    "save_checkpoint",
    "list_checkpoints",
    "load_latest",
    "export_model",
    "load_export",
    "read_export_metadata",
    "preset_from_metadata",
]

CHECKPOINT_FORMAT = 1
EXPORT_FORMAT = 1
_CKPT = re.compile(r"^ckpt-(\d{8})\.pt$")


def _ckpt_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(run_dir: str | os.PathLike, state: dict[str, Any], *, keep: int = 2) -> Path:
    """Write `state` (must hold an int "step": the next step to run) atomically; keep the newest `keep`."""
    if "step" not in state:
        raise ValueError("a training state needs its 'step'")
    d = _ckpt_dir(run_dir)
    path = save_state(d / f"ckpt-{int(state['step']):08d}.pt", dict(state, format_version=CHECKPOINT_FORMAT))
    if keep > 0:
        for old in list_checkpoints(run_dir)[:-keep]:
            try:
                old.unlink()
            except FileNotFoundError:
                pass
    return path


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoint files of a run, oldest first (temporary files of cut writes are ignored)."""
    d = _ckpt_dir(run_dir)
    if not d.is_dir():
        return []
    return sorted(
        (p for p in d.iterdir() if _CKPT.match(p.name)), key=lambda p: int(_CKPT.match(p.name).group(1))
    )


def load_latest(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The newest training state of a run (loaded with weights_only=True), or None if there is none."""
    ckpts = list_checkpoints(run_dir)
    if not ckpts:
        return None
    state = load_state(ckpts[-1])
    if state.get("format_version") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{ckpts[-1]}: checkpoint format {state.get('format_version')} != {CHECKPOINT_FORMAT}"
        )
    return state


# ------------------------------------------------------------ export


def _jsonable(obj):
    """JSON-able nested lists and dicts; a dataclass's fields with metadata "export": False are left out (the
    training recipe of a `ModelPreset`, `presets.RECIPE_FIELDS`)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        skip = {f.name for f in dataclasses.fields(obj) if not f.metadata.get("export", True)}
        return {k: _jsonable(v) for k, v in dataclasses.asdict(obj).items() if k not in skip}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def export_model(
    path: str | os.PathLike,
    model: torch.nn.Module,
    *,
    kind: str,
    preset,
    train_config: dict,
    extra: dict | None = None,
) -> Path:
    """Save `model` (a `Precond` teacher or a `CTMStudent`; pass the EMA copy) for inference.

    preset: the `ModelPreset` the model was built from (stored field by field, backbone included).
    """
    if kind not in ("teacher", "student"):
        raise ValueError(f"kind must be 'teacher' or 'student', got {kind!r}")
    p = _jsonable(preset)
    meta = {
        "format": "soundctm-export",
        "format_version": EXPORT_FORMAT,
        "kind": kind,
        "preset": p,
        "sigma_data": float(model.sigma_data),
        "train_config": _jsonable(train_config),
        "extra": _jsonable(extra or {}),
    }
    if kind == "student":
        meta["student"] = {"sigma_min": float(model.sigma_min)}
    return save_safetensors(path, model.state_dict(), meta)


def read_export_metadata(path: str | os.PathLike) -> dict:

    if not Path(path).exists():
        raise FileNotFoundError(f"export not found: {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("soundctm", "{}"))
    if meta.get("format") != "soundctm-export":
        raise ValueError(f"{path} is not a soundctm model export")
    return meta


def _tuples(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def preset_from_metadata(p: dict):
    """Rebuild the `ModelPreset` (and its backbone config) stored in an export's metadata."""

    arch = p["arch"]
    if arch == "dit":
        backbone = DiTConfig(**_tuples(p["backbone"]))
    elif arch == "unet":
        backbone = UNetConfig(**_tuples(p["backbone"]))
    else:
        raise ValueError(f"unknown architecture {arch!r} in export metadata")
    fields = {f.name for f in dataclasses.fields(ModelPreset)}
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in p.items() if k in fields and k != "backbone"}
    try:  # the training recipe (never exported): the registered preset's of that name, else the defaults
        known = model_preset(kw["name"]) if "name" in kw else None
    except ValueError:
        known = None
    if known is not None:
        kw.update({k: getattr(known, k) for k in RECIPE_FIELDS if k not in kw})
    return ModelPreset(backbone=backbone, **kw)


def load_export(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild an exported teacher (`Precond`) or student (`CTMStudent`) from the file alone.

    The returned model is in eval mode with gradients off and carries `.preset`, `.latent_shape`,
    `.cond_shape` and `.export_metadata`.
    """

    tensors, meta = load_safetensors(path)
    if meta.get("format") != "soundctm-export":
        raise ValueError(f"{path} is not a soundctm model export")
    if meta.get("format_version") != EXPORT_FORMAT:
        raise ValueError(f"{path}: export format {meta.get('format_version')} != {EXPORT_FORMAT}")
    preset = preset_from_metadata(meta["preset"])
    with torch.random.fork_rng(devices=[]):
        net = build_backbone(preset)
        if meta["kind"] == "teacher":
            model = Precond(net, meta["sigma_data"])
        elif meta["kind"] == "student":
            model = CTMStudent(net, meta["sigma_data"], sigma_min=meta["student"]["sigma_min"],
                               **preset.student_options())
        else:
            raise ValueError(f"unknown export kind {meta['kind']!r}")
    model.load_state_dict(tensors, strict=True)
    model.to(device).eval().requires_grad_(False)
    model.preset, model.latent_shape, model.cond_shape = preset, preset.latent_shape, preset.cond_shape
    model.export_metadata = meta
    return model
