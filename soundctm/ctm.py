"""The SoundCTM student jump and its losses (Sec. 3, Eqs. 4-9, Appendix C).

Student:  G(z_t, t, s, c, omega) = (s/t) z_t + (1 - s/t) g(z_t, t, s, c, omega)        (Eq. 6)
          g = c_skip(t) z_t + c_out(t) NN(c_in(t) z_t, c_noise(t), c; emb_s(s) + emb_omega(omega))
The s and omega embeddings are added to the t-embedding and are zero-initialised, so a student
made with `CTMStudent.from_teacher` has g == the teacher's denoiser D exactly at step 0.

Losses are small callables returning per-example losses [B]; the training loop sums them.
Shapes: z [B, C, T]; t, s, u, omega [B]; cond [B, L, D].
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from soundctm.edm import (
    P_MEAN,
    P_STD,
    SIGMA_MIN,
    EDMScalings,
    Precond,
    _bcast,
    as_batch,
    cfg_denoiser,
    heun_solve,
    karras_from_xi,
    lognormal_sigma,
    precondition,
)
from soundctm.rng import GeneratorLike, rand, randn


class CTMStudent(nn.Module):
    """G_theta(z_t, t, s, cond, omega) -> z_s  (Eq. 6), wrapping any `soundctm.nn` backbone."""

    def __init__(self, net: nn.Module, sigma_data: float = 0.5, *, s_embedding: str | None = None,
                 omega_embedding: str = "fourier-fixed", sigma_min: float = SIGMA_MIN):
        super().__init__()
        self.net = net
        self.sigma_data = float(sigma_data)
        self.sigma_min = float(sigma_min)
        self.scalings = EDMScalings(sigma_data)
        # s: same family as t (Appendix C); omega: Fourier embedding (Meng et al., 2023). Zero-init outputs.
        self.s_embed = net.new_scalar_embedding(s_embedding, zero_init=True)
        self.omega_embed = net.new_scalar_embedding(omega_embedding, zero_init=True)

    @classmethod
    def from_teacher(cls, teacher: Precond, **kw) -> CTMStudent:
        """A student initialised from the teacher's weights (its own, trainable copy), new embeddings zeroed."""
        net = copy.deepcopy(teacher.net).requires_grad_(True).train()
        return cls(net, teacher.sigma_data, **kw)

    def g(self, z: torch.Tensor, t, s, cond: torch.Tensor, omega) -> torch.Tensor:
        """The neural output g_theta(z_t, c, omega, t, s): an estimate of z_0. Returns [B, C, T]."""
        b = z.shape[0]
        t, s, omega = as_batch(t, b, z), as_batch(s, b, z), as_batch(omega, b, z)
        if torch.any(t <= 0):
            raise ValueError("the student jump needs t > 0")
        sc = self.scalings
        extra = self.s_embed(sc.safe_c_noise(s, self.sigma_min)) + self.omega_embed(omega)
        return precondition(sc, self.net, z, t, cond, extra)

    def forward(self, z: torch.Tensor, t, s, cond: torch.Tensor, omega) -> torch.Tensor:
        b = z.shape[0]
        t, s = as_batch(t, b, z), as_batch(s, b, z)
        if torch.any(s > t) or torch.any(s < 0):
            raise ValueError("the student jumps backwards in time: need 0 <= s <= t")
        r = _bcast(s / t, z)
        return r * z + (1 - r) * self.g(z, t, s, cond, omega)

    def last_layer(self) -> torch.Tensor:
        return self.net.last_layer()


# ----------------------------------------------------------------------------------------------
# EMA


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, mu: float) -> None:
    """sg(theta) <- mu sg(theta) + (1 - mu) theta (parameters); buffers are copied."""
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm.detach(), 1.0 - mu)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def make_ema(model: nn.Module) -> nn.Module:
    ema = copy.deepcopy(model)
    ema.requires_grad_(False)
    ema.eval()
    return ema


# ----------------------------------------------------------------------------------------------
# Distances


def normalize_channels(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """LPIPS-style unit normalisation of each time step's channel vector. f: [B, C, T]."""
    return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


REDUCTIONS = ("sum-channels", "mean-channels")


def feature_distance(fa: list[torch.Tensor], fb: list[torch.Tensor], reduction: str = "sum-channels") -> torch.Tensor:
    """sum_m || TN_m(a) - TN_m(b) ||^2: channel-normalised, summed over channels ("sum-channels", ours) or
    averaged over them ("mean-channels", the official code's mean over all non-batch dimensions, which
    weighs a block by 1 / its width), mean over time. [B]."""
    if len(fa) != len(fb) or not fa:
        raise ValueError("feature lists must be non-empty and of equal length")
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; expected one of {REDUCTIONS}")
    total = 0
    for a, b in zip(fa, fb):
        sq = (normalize_channels(a) - normalize_channels(b)).pow(2)
        per_t = sq.sum(1) if reduction == "sum-channels" else sq.mean(1)
        total = total + per_t.flatten(1).mean(1)
    return total


def d_teacher(teacher: Precond, z_target: torch.Tensor, z_est: torch.Tensor, cond: torch.Tensor, s,
              reduction: str = "sum-channels") -> torch.Tensor:
    """Eq. (5): the teacher's own forward pass at time s, per-block outputs compared. Returns [B].

    The target's features are computed without grad; the estimate's keep their graph (the teacher's
    parameters should be frozen by the caller).
    """
    s = as_batch(s, z_est.shape[0], z_est)
    with torch.no_grad():
        ft = teacher.features(z_target, s, cond)
    fe = teacher.features(z_est, s, cond)
    return feature_distance(ft, fe, reduction)


def l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared difference per example. [B]."""
    return (a - b).pow(2).flatten(1).mean(1)


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference per example. [B]."""
    return (a - b).abs().flatten(1).mean(1)


def pseudo_huber(a: torch.Tensor, b: torch.Tensor, c: float | None = None) -> torch.Tensor:
    """sqrt(||a - b||^2 + c^2) - c per example (Song & Dhariwal 2023, iCT), c = 0.00054 sqrt(d) by
    default, d = the number of elements of one example. [B]."""
    d = a[0].numel()
    c = 0.00054 * d**0.5 if c is None else float(c)
    return torch.sqrt((a - b).pow(2).flatten(1).sum(1) + c * c) - c


# ----------------------------------------------------------------------------------------------
# Time draws (Appendix C)


@dataclass(frozen=True)
class TimeDraw:
    """Grid indices of t > u >= s on the N-point grid, and their sigmas ([B] each)."""

    it: torch.Tensor
    iu: torch.Tensor
    is_: torch.Tensor
    t: torch.Tensor
    u: torch.Tensor
    s: torch.Tensor


def draw_tus(sigmas: torch.Tensor, generator: GeneratorLike, batch: int, *, max_ode_steps: int | None = None,
             jump_weighting: str = "linear", batch_generator: torch.Generator | None = None,
             t_max_fraction: float = 0.0, s_end_fraction: float = 0.0) -> TimeDraw:
    """t, u, s from the N-point grid: k ~ P(k) (ODE steps t->u, 1..K, weighted prop. to k by default),
    t index uniform in [0, N-1-k], u = t + k, s index uniform in [u, N-1].

    With `batch_generator`, one k for the whole batch is drawn from it (the official code's per-batch
    solver length: the teacher solve then costs k steps instead of the batch's largest k); the other
    draws stay per example.

    `t_max_fraction` q and `s_end_fraction` p put probability mass where few-step sampling jumps: t is the
    grid's first point (sigma_max, where every sample starts) with probability q, otherwise uniform as above;
    s is the grid's last point (the end of every sample) with probability p, otherwise uniform in [u, N-1].
    Each reuses the example's own uniform draw (r < q picks the point, else (r - q) / (1 - q) is the uniform),
    so no other draw of the step moves, and p = q = 0 is the plain draw exactly."""
    n = sigmas.shape[0]
    kmax = min(max_ode_steps or n - 1, n - 1)
    ks = torch.arange(1, kmax + 1, dtype=torch.float64)
    if jump_weighting == "linear":
        w = ks
    elif jump_weighting == "uniform":
        w = torch.ones_like(ks)
    else:
        raise ValueError(f"unknown jump_weighting {jump_weighting!r}; expected 'linear' or 'uniform'")
    cdf = torch.cumsum(w / w.sum(), 0)
    r = rand((batch, 3), generator, dtype=torch.float64)
    r_k = r[:, 0].contiguous()
    if batch_generator is not None:
        r_k = torch.rand(1, generator=batch_generator, dtype=torch.float64).expand(batch).contiguous()
    k = torch.searchsorted(cdf, r_k, right=True).clamp_max(kmax - 1) + 1
    it = torch.floor(_split_uniform(r[:, 1], t_max_fraction) * (n - k)).long().clamp_max(n - 1 - k)
    if t_max_fraction > 0:
        it = torch.where(r[:, 1] < t_max_fraction, torch.zeros_like(it), it)
    iu = it + k
    is_ = iu + torch.floor(_split_uniform(r[:, 2], s_end_fraction) * (n - iu)).long().clamp_max(n - 1 - iu)
    if s_end_fraction > 0:
        is_ = torch.where(r[:, 2] < s_end_fraction, torch.full_like(is_, n - 1), is_)
    return TimeDraw(it, iu, is_, sigmas[it], sigmas[iu], sigmas[is_])


def _split_uniform(r: torch.Tensor, q: float) -> torch.Tensor:
    """U[0, 1) draws r, conditioned on r >= q and rescaled to U[0, 1) again ((r - q) / (1 - q)); q = 0: r."""
    if not 0 <= q < 1:
        raise ValueError(f"a point's fraction must be in [0, 1), got {q}")
    return r if q == 0 else ((r - q) / (1 - q)).clamp(0, 1)


def draw_dsm_sigma(batch: int, generator: GeneratorLike, *, p_mean: float = P_MEAN, p_std: float = P_STD,
                   xi_max: float = 0.7, sigma_min: float = SIGMA_MIN, sigma_max: float = 80.0,
                   rho: float = 7.0) -> torch.Tensor:
    """Student DSM times (Appendix C): 50% lognormal(p_mean, p_std), 50% Karras(xi), xi ~ U[0, xi_max]. [B]."""
    r = rand((batch, 3), generator, dtype=torch.float64)
    z = torch.sqrt(-2 * torch.log(r[:, 0].clamp_min(1e-12))) * torch.cos(2 * torch.pi * r[:, 1])  # Box-Muller
    lognormal = lognormal_sigma(z, p_mean, p_std)
    karras = karras_from_xi(r[:, 1] * xi_max, sigma_min, sigma_max, rho)
    return torch.where(r[:, 2] < 0.5, lognormal, karras).float()


# ----------------------------------------------------------------------------------------------
# Losses


class CTMLoss:
    """Eq. (7): d( G_sg(Solver(z_t, t, u; phi, omega), u, s), G_theta(z_t, t, s) ). Returns [B].

    distance: 'd_teacher' (Eq. 5 at time s), 'l2_s' (l2 at s-time), 'l2_0' (both transported to
    0-time by the EMA student, as in CTM), or the official code's 'pseudo_huber' / 'l1' at s-time.
    `reduction` ("sum-channels" | "mean-channels") is d_teacher's reduction over a block's channels;
    `huber_c` the pseudo-Huber constant. The teacher solve (Heun on the grid, CFG omega, cond and
    uncond in one batched forward) and the EMA target run under no_grad. On a grid that ends at sigma 0
    (`grid_to_zero`), d_teacher reads the teacher's features at sigma_min where s = 0 and l2_0 leaves a
    jump that already ends at 0 as it is.

    `bank` (optional, a `soundctm.train.target_bank.TargetBank`) holds stored teacher solves z_u: while
    `bank_at` is (step, rank, world) (the training task sets it around the step's call), `target` fingerprints
    the solve's input, uses the bank's z_u when the stored fingerprint matches exactly and otherwise solves
    inline and offers the result to the bank. With `bank_at` None (the default) every solve is inline.
    """

    DISTANCES = ("d_teacher", "l2_s", "l2_0", "pseudo_huber", "l1")

    def __init__(self, teacher: Precond, sigmas: torch.Tensor, distance: str = "d_teacher", solver=heun_solve, *,
                 reduction: str = "sum-channels", huber_c: float | None = None, bank=None):
        if distance not in self.DISTANCES:
            raise ValueError(f"unknown CTM distance {distance!r}; expected one of {self.DISTANCES}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; expected one of {REDUCTIONS}")
        self.teacher, self.sigmas, self.distance, self.solver = teacher, sigmas, distance, solver
        self.reduction, self.huber_c = reduction, huber_c
        self.bank, self.bank_at = bank, None

    def target(self, ema: CTMStudent, z_t, draw: TimeDraw, cond, uncond, omega) -> torch.Tensor:
        """z_target = G_sg(Solver(z_t, t, u; phi, omega), u, s), no grad."""
        with torch.no_grad():
            den = cfg_denoiser(self.teacher, cond, uncond, omega)
            z_u, fingerprint = self._banked_solve(z_t, draw, cond, uncond, omega)
            if z_u is None:
                z_u = self.solver(den, z_t, draw.t, draw.u, sigmas=self.sigmas)
                if fingerprint is not None:
                    step, rank, world = self.bank_at
                    self.bank.put(step, fingerprint, z_u, rank, world)
            at0 = draw.u <= 0  # a solve that reached sigma 0 (`grid_to_zero`): s = u = 0, the jump is the identity
            if not bool(at0.any()):
                return ema(z_u, draw.u, draw.s, cond, omega)
            u_safe = torch.where(at0, torch.ones_like(draw.u), draw.u)
            s_safe = torch.where(at0, torch.zeros_like(draw.s), draw.s)
            return torch.where(_bcast(at0, z_u), z_u, ema(z_u, u_safe, s_safe, cond, omega))

    def _banked_solve(self, z_t, draw: TimeDraw, cond, uncond, omega) -> tuple[torch.Tensor | None, str | None]:
        """(the bank's z_u or None, the solve's fingerprint or None when no bank is consulted)."""
        if self.bank is None or self.bank_at is None:
            return None, None
        step, rank, world = self.bank_at
        fingerprint = self.bank.fingerprint(z_t, draw.t, draw.u, omega, cond, uncond, self.sigmas)
        z_u = self.bank.get(step, fingerprint, rank, world)
        if z_u is not None:
            z_u = z_u.to(device=z_t.device)
        return z_u, fingerprint

    def __call__(self, student: CTMStudent, ema: CTMStudent, z_t: torch.Tensor, draw: TimeDraw,
                 cond: torch.Tensor, uncond: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
        z_target = self.target(ema, z_t, draw, cond, uncond, omega)
        z_est = student(z_t, draw.t, draw.s, cond, omega)
        return self.distance_fn(ema, z_target, z_est, cond, draw.s, omega)

    def distance_fn(self, ema, z_target, z_est, cond, s, omega) -> torch.Tensor:
        if self.distance == "d_teacher":
            return d_teacher(self.teacher, z_target, z_est, cond, torch.where(s > 0, s, SIGMA_MIN), self.reduction)
        if self.distance == "l2_s":
            return l2(z_est, z_target)
        if self.distance == "l1":
            return l1(z_est, z_target)
        if self.distance == "pseudo_huber":
            return pseudo_huber(z_est, z_target, self.huber_c)
        zero = torch.zeros_like(s)
        at0 = s <= 0
        s_safe = torch.where(at0, torch.ones_like(s), s)

        def to_zero(z):
            return torch.where(_bcast(at0, z), z, ema(z, s_safe, zero, cond, omega))

        with torch.no_grad():
            x_target = to_zero(z_target)
        x_est = to_zero(z_est)  # EMA weights frozen; the graph flows through z_est
        return l2(x_est, x_target)


DSM_WEIGHTINGS = ("none", "karras")


def student_dsm_loss(student: CTMStudent, z0: torch.Tensor, cond: torch.Tensor, omega, sigma: torch.Tensor,
                     noise: torch.Tensor, weighting: str = "none") -> torch.Tensor:
    """Eq. (8): || z_0 - g_theta(z_t, c, omega, t, t) ||^2 (mean over elements). Returns [B].

    weighting "karras" multiplies each example by the teacher's EDM weight
    lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 (the official code's student DSM);
    "none" is Eq. (8) as the paper writes it."""
    if weighting not in DSM_WEIGHTINGS:
        raise ValueError(f"unknown DSM weighting {weighting!r}; expected one of {DSM_WEIGHTINGS}")
    zt = z0 + _bcast(sigma, z0) * noise
    loss = l2(student.g(zt, sigma, sigma, cond, omega), z0)
    if weighting == "karras":
        sd = student.sigma_data
        loss = loss * (sigma**2 + sd**2) / (sigma * sd) ** 2
    return loss


def adaptive_dsm_weight(loss_ctm: torch.Tensor, loss_dsm: torch.Tensor, last_layer: torch.Tensor,
                        eps: float = 1e-8, max_weight: float = 1e4, *,
                        reduce_grads: Callable[[list[torch.Tensor]], None] | None = None) -> torch.Tensor:
    """lambda = ||grad_{theta_L} L_CTM|| / ||grad_{theta_L} L_other|| (Appendix C), detached scalar,
    clamped to `max_weight`. The one adaptive weight of training (lambda_DSM, and the GAN term's).

    `reduce_grads`, when given, is applied in place to the two last-layer gradients before their
    norms are taken: training passes the workers' all-reduce mean (`train.loop.allreduce_mean`), so
    N workers get the lambda of one process holding the whole batch. Returns 1 when either loss does
    not reach the last layer.
    """
    g1 = torch.autograd.grad(loss_ctm, last_layer, retain_graph=True, allow_unused=True)[0]
    g2 = torch.autograd.grad(loss_dsm, last_layer, retain_graph=True, allow_unused=True)[0]
    if g1 is None or g2 is None:
        return torch.tensor(1.0, device=last_layer.device)
    g1, g2 = g1.detach().clone(), g2.detach().clone()
    if reduce_grads is not None:
        reduce_grads([g1, g2])
    return (g1.norm() / (g2.norm() + eps)).clamp(max=max_weight)


@dataclass(frozen=True)
class DistillDraws:
    """Every random quantity of one distillation step (Algorithm 2, lines 4-7)."""

    times: TimeDraw
    omega: torch.Tensor
    drop: torch.Tensor
    noise: torch.Tensor
    dsm_sigma: torch.Tensor
    dsm_noise: torch.Tensor

    def to(self, device) -> DistillDraws:
        t = self.times
        times = TimeDraw(*(x.to(device) for x in (t.it, t.iu, t.is_, t.t, t.u, t.s)))
        return DistillDraws(times, *(x.to(device) for x in (self.omega, self.drop, self.noise, self.dsm_sigma,
                                                            self.dsm_noise)))


def draw_distill(generators: list[torch.Generator], sigmas: torch.Tensor, latent_shape: tuple[int, int], *,
                 omega_range: tuple[float, float], p_uncond: float, max_ode_steps: int | None = None,
                 sigma_max: float = 80.0, batch_generator: torch.Generator | None = None,
                 t_max_fraction: float = 0.0, s_end_fraction: float = 0.0) -> DistillDraws:
    """All draws of a distillation step from per-example generators (one per example index);
    `batch_generator`: one solver length k for the batch; `t_max_fraction`, `s_end_fraction`: see `draw_tus`."""
    b = len(generators)
    times = draw_tus(sigmas, generators, b, max_ode_steps=max_ode_steps, batch_generator=batch_generator,
                     t_max_fraction=t_max_fraction, s_end_fraction=s_end_fraction)
    r = rand((b, 2), generators)
    omega = omega_range[0] + (omega_range[1] - omega_range[0]) * r[:, 0]
    drop = r[:, 1] < p_uncond
    noise = randn((b, *latent_shape), generators)
    dsm_sigma = draw_dsm_sigma(b, generators, sigma_max=sigma_max)
    dsm_noise = randn((b, *latent_shape), generators)
    return DistillDraws(times, omega, drop, noise, dsm_sigma, dsm_noise)


def apply_dropout(cond: torch.Tensor, uncond: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
    """Replace cond by the unconditional embedding where drop [B] is True (p_uncond, Algorithm 2 line 4)."""
    unc = uncond.expand_as(cond) if uncond.shape[0] != cond.shape[0] else uncond
    return torch.where(drop[:, None, None], unc.to(cond.dtype), cond)


def distill_losses(student: CTMStudent, ema: CTMStudent, ctm_loss: CTMLoss, z0: torch.Tensor,
                   cond: torch.Tensor, uncond: torch.Tensor, draws: DistillDraws, *,
                   dsm_weight: float = 1.0, adaptive: bool = True, reduce_grads=None,
                   dsm_weighting: str = "none") -> dict[str, torch.Tensor]:
    """Eq. (9) for one batch (Algorithm 2, lines 4-11): L = L_CTM + lambda_DSM L_DSM, the loss training uses
    (`train.distill.DistillTask.losses`). `reduce_grads`: see `adaptive_dsm_weight`.

    Returns scalars loss, ctm, dsm, lambda_dsm, and, for further terms of the same step (the GAN term),
    "_ctm" (L_CTM with its graph), "_z_t" and "_cond" (the conditioning after caption dropout).
    """
    cond_used = apply_dropout(cond, uncond, draws.drop)  # Algorithm 2, line 4
    z_t = z0 + _bcast(draws.times.t, z0) * draws.noise
    l_ctm = ctm_loss(student, ema, z_t, draws.times, cond_used, uncond, draws.omega).mean()
    l_dsm = student_dsm_loss(student, z0, cond_used, draws.omega, draws.dsm_sigma, draws.dsm_noise,
                             dsm_weighting).mean()
    if dsm_weight == 0:
        lam = torch.zeros((), device=z0.device)
    elif adaptive and torch.is_grad_enabled():
        lam = dsm_weight * adaptive_dsm_weight(l_ctm, l_dsm, student.last_layer(), reduce_grads=reduce_grads)
    else:
        lam = torch.tensor(float(dsm_weight), device=z0.device)
    return {"loss": l_ctm + lam * l_dsm, "ctm": l_ctm.detach(), "dsm": l_dsm.detach(), "lambda_dsm": lam.detach(),
            "_ctm": l_ctm, "_z_t": z_t, "_cond": cond_used}
