"""Mixed precision as a run option: "off" (fp32), "bf16" or "fp16" autocast of the networks' forward passes.

`autocast(device, amp)` is a plain `torch.autocast` context (a no-op for "off"): for inference, around
a whole sampler call (the sampler's own arithmetic, z_T and the EDM scalings stay fp32: an fp32 value
times a bf16 network output promotes to fp32).

`autocast_forward(module, amp, device)` makes one module's forward run under autocast and return fp32
tensors (also inside tuples / lists, e.g. a DiT's per-block features), so that everything computed
from it afterwards - the losses of training, d_teacher's feature distance, the CFG combination - is
fp32, whatever autocast's per-op lists say. It sets an instance attribute (the state dict, the
parameters and `deepcopy` of the module made before are untouched); `autocast_forward(module, "off")`
removes it.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

__all__ = ["AMP", "autocast", "autocast_forward", "amp_dtype"]

AMP = ("off", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(amp: str) -> torch.dtype | None:
    if amp not in AMP:
        raise ValueError(f"unknown mixed-precision option {amp!r}; expected one of {AMP}")
    return _DTYPES.get(amp)


def autocast(device, amp: str = "off"):
    """torch.autocast(device type, the amp dtype), or a null context for "off"."""
    dtype = amp_dtype(amp)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def _to_float(x):
    if isinstance(x, torch.Tensor):
        return x.float() if x.is_floating_point() else x
    if isinstance(x, (tuple, list)):
        return type(x)(_to_float(v) for v in x)
    return x


def autocast_forward(module: nn.Module, amp: str, device=None) -> nn.Module:
    """Run `module`'s forward under autocast(`amp`) on `device` (default: its parameters' device) and return
    fp32 outputs; "off" restores the plain forward. Returns the module."""
    dtype = amp_dtype(amp)
    module.__dict__.pop("forward", None)
    if dtype is None:
        return module
    dev = torch.device(device) if device is not None else next(module.parameters()).device
    inner = module.forward

    def forward(*args, **kwargs):
        with torch.autocast(dev.type, dtype=dtype):
            out = inner(*args, **kwargs)
        return _to_float(out)

    module.forward = forward
    return module
