"""Zero-shot bandwidth extension by data consistency (App. D.5, Table 14, Fig. 14).

The observation is y = A x, A an ideal low-pass (`lowpass`: zero-phase, every FFT bin above the cut-off
zeroed, so A is an orthogonal projection and A A = A). The paper only says "the data consistency
strategy of Moliner et al. 2023"; that step replaces the observed part of the clean estimate,
x^ <- x^ - A x^ + y. Our latent version, at every jump n of the sampler (Algorithm 1's grid and jump):

    z~   = nu G(z_{t_n}, c, ...t_{n+1}) + (1 - nu) G(z_{t_n}, empty, ...t_{n+1})   (Alg. 1, gamma = 0)
    z^_0 = G(z_{t_n}, c, omega, t_n, t_N)                  the student's clean estimate (as Algorithm 3)
    x^   = D(z^_0);  x' = x^ - A x^ + y                    consistency in the waveform domain
    z'_0 = E(x')                                           re-encoded (the encoder's posterior mean)
    z_{t_{n+1}} = z~ + (1 - t_{n+1} / t_n) (z'_0 - z^_0)

The last line is the jump with its clean estimate replaced: a deterministic (DDIM-like) step
z_s = (s / t) z_t + (1 - s / t) x0 moves by (1 - s / t) when x0 does. After the last jump the decoded clip
gets the waveform consistency once more, x = D(z_N) - A D(z_N) + y, so the output's low band is the
observation exactly (A x = y) and only the band above the cut-off is generated.

Cut-off on other sample rates (`equivalent_cutoff`): the paper's 3 kHz at 44.1 kHz keeps 3 / 22.05 = 13.6 %
of the band; at 16 kHz the same share is 8 kHz x 3 / 22.05 = 1088 Hz.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from soundctm.apps.guidance import clean_estimate
from soundctm.sampling import _check_grid, guided_jump, sample

__all__ = ["lowpass", "consistency", "equivalent_cutoff", "extend_bandwidth", "PAPER_CUTOFF_HZ", "PAPER_RATE"]

PAPER_CUTOFF_HZ, PAPER_RATE = 3000.0, 44100


def equivalent_cutoff(sample_rate: int, cutoff_hz: float = PAPER_CUTOFF_HZ, rate: int = PAPER_RATE) -> float:
    """The cut-off that keeps the same share of the band at `sample_rate` as `cutoff_hz` does at `rate`."""
    return float(cutoff_hz) * sample_rate / rate


def _check_cutoff(cutoff_hz: float, sample_rate: int) -> None:
    if not 0 < cutoff_hz < sample_rate / 2:
        raise ValueError(f"the cut-off must lie in (0, {sample_rate / 2:g}) Hz (the Nyquist frequency of "
                         f"{sample_rate} Hz audio), got {cutoff_hz:g} Hz")


def lowpass(x, cutoff_hz: float, sample_rate: int):
    """Ideal zero-phase low-pass along the last axis: FFT bins above `cutoff_hz` set to 0 (a projection).
    x: a torch tensor (differentiable) or a numpy array [..., N]; returns the same type and shape."""
    _check_cutoff(cutoff_hz, sample_rate)
    if isinstance(x, np.ndarray):
        return lowpass(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)), cutoff_hz,
                       sample_rate).numpy().astype(x.dtype, copy=False)
    n = x.shape[-1]
    spec = torch.fft.rfft(x, dim=-1)
    keep = torch.fft.rfftfreq(n, d=1.0 / sample_rate, device=x.device) <= cutoff_hz
    return torch.fft.irfft(spec * keep.to(spec.real.dtype), n=n, dim=-1)


def consistency(x: torch.Tensor, y: torch.Tensor, cutoff_hz: float, sample_rate: int) -> torch.Tensor:
    """x - A x + y: the observed low band of x replaced by the observation y (same shape as x)."""
    return x - lowpass(x, cutoff_hz, sample_rate) + y


@torch.no_grad()
def extend_bandwidth(student, z_T: torch.Tensor, sigmas: torch.Tensor, cond: torch.Tensor,
                     uncond: torch.Tensor | None = None, *, observation: torch.Tensor, cutoff_hz: float,
                     sample_rate: int, decode: Callable[[torch.Tensor], torch.Tensor],
                     encode: Callable[[torch.Tensor], torch.Tensor], omega=5.0, nu: float = 1.0,
                     every_step: bool = True, callback=None) -> torch.Tensor:
    """Latents of the extended clips (module docstring; finish with `consistency(decode(z), y, ...)`).

    observation: y = lowpass(x_true) [B, N]; decode: latents -> [B, N]; encode: [B, N] -> latents.
    `every_step=False` is the control without data consistency during sampling: Algorithm 1 alone (gamma = 0),
    so that only the final `consistency` puts the observed band into a text-only generation."""
    _check_cutoff(cutoff_hz, sample_rate)
    grid = _check_grid(sigmas).to(z_T.device)
    if observation.shape[0] != z_T.shape[0]:
        raise ValueError(f"need one observation per example, got {observation.shape[0]} for {z_T.shape[0]}")
    if not every_step:
        return sample(student, z_T, grid, cond, uncond, omega=omega, nu=nu, callback=callback)
    y = observation.to(z_T.device, z_T.dtype)
    t_end = grid[-1]
    z = z_T
    for i in range(grid.numel() - 1):
        t_n, t_next = grid[i], grid[i + 1]
        z_tilde = guided_jump(student, z, t_n, t_next, cond, uncond, omega, nu)
        z0 = clean_estimate(student, z, t_n, t_end, cond, omega)
        z0c = encode(consistency(decode(z0), y, cutoff_hz, sample_rate))
        z = z_tilde + (1.0 - t_next / t_n) * (z0c - z0)
        if callback is not None:
            callback(i, z)
    return z
