"""SoundCTM's loss-based guidance (Algorithm 3, App. C.3) for any differentiable feature of the decoded audio.

For n = 0 .. N-1 on a descending grid t_0 > ... > t_N:

    t~_{n+1} = sqrt(1 - gamma^2) t_{n+1}
    z~       = nu G(z_{t_n}, c, omega, t_n, t~_{n+1}) + (1 - nu) G(z_{t_n}, empty, omega, t_n, t~_{n+1})   (Alg. 1)
    z^_0     = G(z_{t_n}, c, omega, t_n, t_N)             the student's conditional jump to the end of the grid
    y^       = f(D(z^_0))                                 D: the latent decoder, f: the feature
    z~      <- z~ - rho_{t_n} grad_{z_{t_n}} L(y^, y)     the gradient w.r.t. z_{t_n}, applied to z~
    z_{t_{n+1}} = z~ + gamma t_{n+1} eps                  (no noise after the last jump, as Algorithm 1)

The jump z~ and the noise are `soundctm.sampling`'s own pieces (`guided_jump`, the same noise draws from the
same generator), so with a zero loss this is Algorithm 1 (`sampling.sample`) bit for bit.

Step size (the paper: "the overall gradient norm, following DITTO, Sec. 5.4"; the formula is not given).
Our choice: per example b, with g_b = grad_{z_{t_n}} L_b over all d = C x T latent elements of that example,

    rho_{t_n} g_b = eta * t_n * g_b / rms(g_b),     rms(g_b) = ||g_b||_2 / sqrt(d),

i.e. the gradient normalised by its overall (whole-latent) norm, and a step whose per-element RMS is
eta * t_n: proportional to the noise level the step starts from, so it shrinks towards the end of the
grid like the sampler's own updates. Examples are normalised one by one so that a result does not
depend on which other examples share its batch; a zero gradient gives a zero step. Guidance runs at
every step, the last one included.

Memory: only z_{t_n} requires a gradient (the student's and decoder's weights stay frozen); the
gradient of a batch is computed in chunks of `grad_batch` examples (losses are per example, so chunks
give the same gradient), and `checkpoint=True` recomputes the student's and the decoder's activations in
the backward pass instead of storing them, one network at a time (`torch.utils.checkpoint`, two segments).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.checkpoint import checkpoint as _checkpoint

from soundctm.rng import GeneratorLike, randn
from soundctm.sampling import _check_gamma, _check_grid, guided_jump

__all__ = ["guided_sample", "clean_estimate", "loss_gradient", "normalized_step", "mse_loss", "ETA"]

# The default step scale: on the tiny corpus's validation captions (`python reproduce/guidance_eta.py`), the
# smallest eta of 0.01, 0.03, 0.05, 0.1, 0.3 whose median intensity MSE fell below 10 dB^2; larger ones lowered
# the CLAP score further without lowering the mean MSE much.
ETA = 0.03

Decode = Callable[[torch.Tensor], torch.Tensor]  # latents [B, C, T] -> waveforms [B, N]
Feature = Callable[[torch.Tensor], torch.Tensor]  # waveforms [B, N] -> features [B, ...]
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (features, targets) -> per-example losses [B]


def mse_loss(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example mean squared error over every non-batch element. Returns [B]."""
    return (y_hat - y).pow(2).flatten(1).mean(1)


def clean_estimate(student, z: torch.Tensor, t, t_end, cond: torch.Tensor, omega) -> torch.Tensor:
    """z^_0 = G(z_t, c, omega, t, t_N): the conditional jump to the end of the grid (Alg. 3, line 6)."""
    return guided_jump(student, z, t, t_end, cond, None, omega, 1.0)


def loss_gradient(student, z: torch.Tensor, t, t_end, cond: torch.Tensor, omega, *, decode: Decode,
                  feature: Feature, target: torch.Tensor, loss: Loss = mse_loss, grad_batch: int | None = None,
                  checkpoint: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_{z_t} sum_b L_b, L [B]) for L_b = loss(f(D(G(z_t, c, omega, t, t_N))), y)_b (Alg. 3, lines 6-8).

    The weights are not differentiated; `grad_batch` bounds how many examples are differentiated at once."""
    b = z.shape[0]
    step = b if not grad_batch else max(1, int(grad_batch))
    grads, losses = [], []
    for i in range(0, b, step):
        sl = slice(i, i + step)
        with torch.enable_grad():
            zi = z[sl].detach().requires_grad_(True)
            ci = cond[sl]
            wi = omega[sl] if torch.is_tensor(omega) and omega.dim() > 0 else omega

            def jump(zz, ci=ci, wi=wi):
                return clean_estimate(student, zz, t, t_end, ci, wi)

            if checkpoint:  # two segments: the backward pass holds one network's activations at a time
                x = _checkpoint(decode, _checkpoint(jump, zi, use_reentrant=False), use_reentrant=False)
            else:
                x = decode(jump(zi))
            li = loss(feature(x), target[sl])
            if li.shape != (zi.shape[0],):
                raise ValueError(f"the loss must return one value per example [B], got {tuple(li.shape)}")
            (gi,) = torch.autograd.grad(li.sum(), zi)
        grads.append(gi.detach())
        losses.append(li.detach())
    return torch.cat(grads), torch.cat(losses)


def normalized_step(grad: torch.Tensor, t, eta: float) -> torch.Tensor:
    """rho_t * grad with rho_t = eta * t / rms(grad_b) per example (zero where the gradient is zero)."""
    g = grad.flatten(1)
    rms = g.pow(2).mean(1).sqrt()
    scale = torch.where(rms > 0, eta * torch.as_tensor(t, dtype=g.dtype) / rms.clamp_min(torch.finfo(g.dtype).tiny),
                        torch.zeros_like(rms))
    return grad * scale.view(-1, *([1] * (grad.dim() - 1)))


@torch.no_grad()
def guided_sample(student, z_T: torch.Tensor, sigmas: torch.Tensor, cond: torch.Tensor,
                  uncond: torch.Tensor | None = None, *, decode: Decode, feature: Feature, target: torch.Tensor,
                  loss: Loss = mse_loss, eta: float = ETA, omega=5.0, nu: float = 1.0, gamma: float = 0.0,
                  generator: GeneratorLike = None, grad_batch: int | None = None, checkpoint: bool = False,
                  callback=None) -> torch.Tensor:
    """Algorithm 3 (the module docstring has every step and the step-size rule). The sampler signature of
    `soundctm.sampling` plus: `decode` (latents -> waveforms [B, N]), `feature` (waveforms -> y^), `target`
    (y, one per example), `loss` (per-example [B], default MSE), `eta` (step scale). `callback(i, z, losses)`
    after jump i with the losses of that step's clean estimate. Returns z at the last grid point."""
    _check_gamma(gamma)
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    if target.shape[0] != z_T.shape[0]:
        raise ValueError(f"need one target per example: {target.shape[0]} targets for a batch of {z_T.shape[0]}")
    grid = _check_grid(sigmas).to(z_T.device)
    t_end = grid[-1]
    z = z_T
    n = grid.numel() - 1
    for i in range(n):
        t_n, t_next = grid[i], grid[i + 1]
        t_tilde = (1.0 - gamma ** 2) ** 0.5 * t_next
        z_tilde = guided_jump(student, z, t_n, t_tilde, cond, uncond, omega, nu)
        grad, losses = loss_gradient(student, z, t_n, t_end, cond, omega, decode=decode, feature=feature,
                                     target=target, loss=loss, grad_batch=grad_batch, checkpoint=checkpoint)
        z = z_tilde - normalized_step(grad, t_n, eta)
        if gamma > 0 and i < n - 1:
            eps = randn(tuple(z.shape), generator, device=z.device, dtype=z.dtype)
            z = z + gamma * t_next * eps
        if callback is not None:
            callback(i, z, losses)
    return z
