"""EDM (Karras et al., 2022) variance-exploding math: noise grids, preconditioning, CFG, Heun, DSM.

The two pieces every model and sampler shares live here once: `precondition` (c_skip z + c_out F(c_in z,
c_noise): the teacher's `Precond`, the student's g in `ctm`, the consistency function in `cd`) and
`cfg_forward` (a conditional and an unconditional call as ONE batched forward: `cfg_denoiser`,
`sampling.guided_jump`).

No networks live here. Times are EDM noise levels sigma (t, s, u in the paper); the forward
process is z_t = z_0 + t * eps and the PF ODE is Eq. (1): dz/dt = (z_t - D(z_t, t)) / t.

Shapes: z [B, C, T]; per-example times [B]; cond [B, L, D].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from soundctm.rng import randn

SIGMA_MIN = 0.002
SIGMA_MAX = 80.0
RHO = 7.0
P_MEAN, P_STD = -1.2, 1.2  # EDM lognormal training times: ln sigma ~ N(P_MEAN, P_STD^2) (Appendix C)

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def karras_sigmas(n: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = RHO,
                  *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """n noise levels, descending from sigma_max to sigma_min (Appendix C, "Evaluation Details").

    xi equi-divides [0, 1] with n points; sigma(xi) = (sigma_max^(1/rho) + xi (sigma_min^(1/rho) -
    sigma_max^(1/rho)))^rho. Computed in float64, returned as `dtype`. Returns: [n].
    """
    if n < 1:
        raise ValueError(f"karras_sigmas needs n >= 1, got {n}")
    if not (0 < sigma_min < sigma_max):
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    xi = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return ((hi + xi * (lo - hi)) ** rho).to(dtype)


def karras_from_xi(xi: torch.Tensor, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX,
                   rho: float = RHO) -> torch.Tensor:
    """The Karras transform of arbitrary xi in [0, 1] (used for the DSM time mix of Appendix C)."""
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + xi * (lo - hi)) ** rho


def _bcast(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B] -> [B, 1, ..., 1] matching `like`'s rank."""
    return x.reshape(-1, *([1] * (like.ndim - 1)))


def as_batch(x, batch: int, like: torch.Tensor) -> torch.Tensor:
    """A scalar or [B] tensor -> float tensor [B] on `like`'s device/dtype."""
    x = torch.as_tensor(x, dtype=like.dtype, device=like.device)
    if x.ndim == 0:
        x = x.expand(batch)
    if x.shape != (batch,):
        raise ValueError(f"expected a scalar or shape [{batch}], got {tuple(x.shape)}")
    return x


class EDMScalings:
    """c_skip, c_out, c_in, c_noise of Appendix C for a given sigma_data."""

    def __init__(self, sigma_data: float):
        if sigma_data <= 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data}")
        self.sigma_data = float(sigma_data)

    def c_skip(self, t: torch.Tensor) -> torch.Tensor:
        sd2 = self.sigma_data ** 2
        return sd2 / (t ** 2 + sd2)

    def c_out(self, t: torch.Tensor) -> torch.Tensor:
        return t * self.sigma_data / torch.sqrt(t ** 2 + self.sigma_data ** 2)

    def c_in(self, t: torch.Tensor) -> torch.Tensor:
        return 1.0 / torch.sqrt(t ** 2 + self.sigma_data ** 2)

    @staticmethod
    def c_noise(t: torch.Tensor) -> torch.Tensor:
        """ln(t) / 4. Callers must never pass t = 0 (see `safe_c_noise`)."""
        return torch.log(t) / 4

    @staticmethod
    def safe_c_noise(t: torch.Tensor, sigma_min: float = SIGMA_MIN) -> torch.Tensor:
        """c_noise of max(t, sigma_min): time embeddings never see log(0)."""
        return torch.log(t.clamp_min(sigma_min)) / 4

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """lambda(t) = (t^2 + sigma_data^2) / (t sigma_data)^2 (Appendix C)."""
        return (t ** 2 + self.sigma_data ** 2) / (t * self.sigma_data) ** 2


def precondition(scalings, net: Callable, z: torch.Tensor, t: torch.Tensor, *args, **kwargs):
    """c_skip(t) z + c_out(t) F(c_in(t) z, c_noise(t), *args, **kwargs)  (Appendix C).

    `scalings`: any object with c_skip, c_out, c_in, c_noise (`EDMScalings`; `cd.CMScalings` for the
    consistency function); `net` = F, a backbone of `soundctm.nn` (it only ever sees scaled inputs);
    z [B, C, T]; t [B]. With `return_features=True` among kwargs the network returns (out, features) and
    so does this: (D, features). Returns D [B, C, T].
    """
    out = net(_bcast(scalings.c_in(t), z) * z, scalings.c_noise(t), *args, **kwargs)
    feats = None
    features = bool(kwargs.get("return_features", False))
    if features:
        out, feats = out
    d = _bcast(scalings.c_skip(t), z) * z + _bcast(scalings.c_out(t), z) * out
    return (d, feats) if features else d


def cfg_forward(fn: Callable, *args) -> tuple[torch.Tensor, torch.Tensor]:
    """fn's conditional and unconditional outputs from ONE batched forward (classifier-free guidance).

    Each argument is a tensor [B, ...] that both calls share (concatenated with itself along the batch) or
    one (cond, uncond) pair, concatenated as [cond; uncond] with uncond [1 or B, ...] expanded to cond's batch
    and cast to cond's dtype. Returns (out_cond, out_uncond): the two halves of fn's output [2B, ...]; the
    caller combines them (`cfg_denoiser`: omega D(c) + (1 - omega) D(empty); `sampling.guided_jump`:
    G(empty) + nu (G(c) - G(empty))).
    """
    batched = []
    for a in args:
        if isinstance(a, tuple):
            cond, uncond = a
            b = cond.shape[0]
            unc = uncond.expand(b, *uncond.shape[1:]) if uncond.shape[0] != b else uncond
            batched.append(torch.cat([cond, unc.to(cond.dtype)]))
        else:
            batched.append(torch.cat([a, a]))
    out_c, out_u = fn(*batched).chunk(2)
    return out_c, out_u


class Precond(nn.Module):
    """D(z, t, c) = c_skip(t) z + c_out(t) F(c_in(t) z, c_noise(t), c)  (Appendix C).

    `net(x [B,C,T], c_noise [B], cond [B,L,D], extra_emb=None, return_features=False)` is any
    backbone from `soundctm.nn`; it only ever sees scaled inputs.
    """

    def __init__(self, net: nn.Module, sigma_data: float = 0.5):
        super().__init__()
        self.net = net
        self.sigma_data = float(sigma_data)
        self.scalings = EDMScalings(sigma_data)

    def forward(self, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, *,
                return_features: bool = False):
        t = as_batch(t, z.shape[0], z)
        if torch.any(t <= 0):
            raise ValueError("Precond is defined for t > 0 (the denoiser at sigma 0 is the identity)")
        return precondition(self.scalings, self.net, z, t, cond, return_features=return_features)

    def features(self, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> list[torch.Tensor]:
        """Per-block outputs of the network's own forward pass at time t (for d_teacher, Eq. 5)."""
        t = as_batch(t, z.shape[0], z).clamp_min(SIGMA_MIN)
        return self.forward(z, t, cond, return_features=True)[1]


def cfg_denoiser(denoiser: Callable, cond: torch.Tensor, uncond: torch.Tensor, omega) -> Denoiser:
    """D_omega(z, t) = omega D(z, t, c) + (1 - omega) D(z, t, empty), ONE batched forward.

    `denoiser(z, t, cond)`; cond [B, L, D]; uncond [B or 1, L, D]; omega scalar or [B].
    With omega == 1 everywhere the unconditional branch is skipped.
    """

    def d(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        t = as_batch(t, b, z)
        w = as_batch(omega, b, z)
        if bool(torch.all(w == 1)):
            return denoiser(z, t, cond)
        dc, du = cfg_forward(denoiser, z, t, (cond, uncond))
        return _bcast(w, z) * dc + _bcast(1 - w, z) * du

    return d


def _path(t: torch.Tensor, u: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Per-example integration path t -> (grid points strictly inside (u, t)) -> u, padded with u.

    t, u: [B]; sigmas: descending grid [N]. Returns [B, K + 1] with path[:, 0] = t, path[:, -1] = u.
    """
    rows = []
    for ti, ui in zip(t.tolist(), u.tolist()):
        inner = [float(x) for x in sigmas.tolist() if ui < x < ti and not math.isclose(x, ti, rel_tol=1e-6)
                 and not math.isclose(x, ui, rel_tol=1e-6)]
        rows.append([ti] + inner + [ui])
    k = max(len(r) for r in rows)
    rows = [r + [r[-1]] * (k - len(r)) for r in rows]
    return torch.tensor(rows, dtype=t.dtype, device=t.device)


@torch.no_grad()
def heun_solve(denoise: Denoiser, z: torch.Tensor, t, u, *, sigmas: torch.Tensor | None = None,
               n_grid: int = 40, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX,
               rho: float = RHO) -> torch.Tensor:
    """Integrate the PF ODE (Eq. 1) from t down to u with Heun's 2nd-order method on the grid.

    The path visits every grid point strictly between u and t (grid = `sigmas`, default the
    N = 40 Karras grid). Examples whose paths are shorter idle (zero-length steps). No 2nd-order
    correction is applied on a step that lands on sigma 0 (Euler there, as in EDM).
    z: [B, C, T]; t, u: scalar or [B] with t >= u >= 0. Returns z_u: [B, C, T].
    """
    b = z.shape[0]
    t = as_batch(t, b, z)
    u = as_batch(u, b, z)
    if torch.any(u > t):
        raise ValueError("heun_solve integrates backwards in time: need u <= t")
    if sigmas is None:
        sigmas = karras_sigmas(n_grid, sigma_min, sigma_max, rho)
    path = _path(t, u, sigmas.to(z.dtype))
    x = z
    for j in range(path.shape[1] - 1):
        tc, tn = path[:, j], path[:, j + 1]
        active = tc > tn
        if not bool(active.any()):
            continue
        tc_safe = torch.where(active, tc, torch.ones_like(tc))  # idle rows: any positive time, dt = 0
        dt = _bcast(torch.where(active, tn - tc, torch.zeros_like(tc)), x)
        d1 = (x - denoise(x, tc_safe)) / _bcast(tc_safe, x)
        x_euler = x + dt * d1
        second = active & (tn > 0)
        if bool(second.any()):
            tn_safe = torch.where(second, tn, torch.ones_like(tn))
            d2 = (x_euler - denoise(x_euler, tn_safe)) / _bcast(tn_safe, x)
            x = torch.where(_bcast(second, x), x + dt * 0.5 * (d1 + d2), x_euler)
        else:
            x = x_euler
    return x


def lognormal_sigma(normal: torch.Tensor, p_mean: float = P_MEAN, p_std: float = P_STD) -> torch.Tensor:
    """The EDM lognormal time of a standard-normal draw: sigma = exp(p_mean + p_std * normal) (Appendix C)."""
    return torch.exp(p_mean + p_std * normal)


def sample_lognormal_sigma(n: int, *, p_mean: float = P_MEAN, p_std: float = P_STD,
                           generator: torch.Generator | Sequence[torch.Generator] | None = None,
                           device=None) -> torch.Tensor:
    """EDM training times: ln(sigma) ~ N(p_mean, p_std^2), the normal from `generator`(s). Returns [n]."""
    return lognormal_sigma(randn((n,), generator, device=device), p_mean, p_std)


def edm_dsm_loss(precond: Precond, z0: torch.Tensor, cond: torch.Tensor, *, sigma: torch.Tensor,
                 noise: torch.Tensor) -> torch.Tensor:
    """EDM DSM loss lambda(t) ||z0 - D(z0 + t eps, t, c)||^2, mean over elements. Returns [B].

    sigma [B] (e.g. from `sample_lognormal_sigma`), noise [B, C, T].
    """
    zt = z0 + _bcast(sigma, z0) * noise
    d = precond(zt, sigma, cond)
    w = precond.scalings.loss_weight(sigma)
    return w * ((d - z0) ** 2).flatten(1).mean(1)
