"""SoundCTM distillation (Algorithm 2; Eqs. 4-9; Appendix C).

One step, per example i of the global batch (all draws from (seed, step, i), `ctm.draw_distill`):
    t > u >= s on the N = 40 Karras grid (u - t at most `max_ode_steps` grid steps), omega ~ U[omega_range],
    caption dropout with p_uncond, eps for z_t = z_0 + t eps, and the DSM time/noise;
    target   = G_sg(Solver(z_t, t, u; phi, omega), u, s)       Heun on the grid with CFG, no grad (Eq. 4)
    estimate = G_theta(z_t, t, s)                               (Eq. 6)
    L_CTM    = d(target, estimate), d in {d_teacher (Eq. 5), l2_s, l2_0}                    (Eq. 7)
    L_DSM    = || z_0 - g_theta(z_t', t', t') ||^2                                          (Eq. 8)
    L        = L_CTM + lambda_DSM * dsm_weight * L_DSM, lambda adaptive (Appendix C)          (Eq. 9)
RAdam, gradient clipping at 1000, EMA target sg(theta) with the preset's mu.

The adaptive lambda uses last-layer gradients averaged over all workers, so N workers compute the
same lambda as one process holding the whole batch.

With `target_bank` set, the teacher solves of the CTM target are read from (and written to) a stored stream
shared by runs with the same teacher, seed, draws and data (`soundctm.train.target_bank`), bit-identically.

With `objective` "cd" (ConsistencyTTA-style) or "lcm" (AudioLCM-style) the same loop trains a consistency
model from the same teacher instead (`soundctm.cd`: its draws, target and loss; no DSM or GAN term).

Library entry point: `distill_tiny_student(teacher_path, preset="tiny-dit", distance="d_teacher") -> Path`.
"""

from __future__ import annotations

import torch

from soundctm import fidelity
from soundctm.cd import CD_OBJECTIVES, CDLoss, cd_losses, draw_cd
from soundctm.ctm import (
    CTMLoss,
    adaptive_dsm_weight,
    distill_losses,
    draw_distill,
    ema_update,
    make_ema,
)
from soundctm.data.latent_cache import file_checksum, state_dict_checksum
from soundctm.edm import karras_sigmas
from soundctm.nn.vae import AudioAutoencoder, vae_config
from soundctm.presets import build_student, build_teacher, model_preset
from soundctm.rng import derive_seed, example_generators
from soundctm.train.checkpoint import load_export
from soundctm.train.components import get_tiny_components
from soundctm.train.config import TrainConfig, allreduce_mean
from soundctm.train.data import pairs_for, tiny_conditioned, worker_indices
from soundctm.train.gan import (
    AudioDiscriminators,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
)
from soundctm.train.target_bank import TargetBank, numerics_id, solver_name

__all__ = ["DistillTask", "tiny_student_config", "power_ema_gamma", "validation_probe", "VALIDATION_SEED"]


class DistillTask:
    """Student, EMA target, frozen teacher and the per-step loss of Algorithm 2 for `run_training`."""

    export_kind = "student"
    log_keys = ("loss", "ctm", "dsm", "lambda_dsm", "omega_mean", "ode_steps_mean")

    def __init__(self, cfg: TrainConfig, data, device, log=print):
        self.cfg, self.data, self.device = cfg, data, device
        if cfg.teacher_path:
            teacher = load_export(cfg.teacher_path, device=device)
            if teacher.export_metadata["kind"] != "teacher":
                raise ValueError(
                    f"{cfg.teacher_path} is a {teacher.export_metadata['kind']} export, not a teacher"
                )
            tp = teacher.preset
            want = model_preset(cfg.preset)
            if (tp.arch, tp.backbone, tp.latent_shape, tp.cond_shape) != (
                want.arch,
                want.backbone,
                want.latent_shape,
                want.cond_shape,
            ):
                raise ValueError(
                    f"teacher {cfg.teacher_path} was trained with preset {tp.name!r}, not {cfg.preset!r}"
                )
            tcond = teacher.export_metadata.get("extra", {}).get("conditioning", {})
            for k in ("text_checksum", "vae_checksum"):
                if k in tcond and k in data.info and tcond[k] != data.info[k]:
                    raise ValueError(
                        f"teacher {cfg.teacher_path} was trained on different data ({k} "
                        f"{tcond[k]} != {data.info[k]})"
                    )
            self.teacher_info = {
                "path": cfg.teacher_path,
                "train_config": teacher.export_metadata["train_config"],
            }
        else:  # synthetic data only (resolve_config enforces it)
            teacher = build_teacher(cfg.preset, seed=cfg.seed, device=device)
            log("distilling a randomly initialised teacher (synthetic data)")
            self.teacher_info = {"path": None}
        teacher.eval().requires_grad_(False)
        self.teacher = teacher
        self.model = build_student(cfg.preset, seed=cfg.seed, device=device, teacher=teacher).requires_grad_(
            True
        )
        self.preset = self.model.preset
        self.ema = make_ema(self.model)
        # the exported weights: the target EMA, or a separate power-function EMA (`export_ema_std`)
        self.export_ema = make_ema(self.model) if cfg.export_ema_std is not None else None
        self._power_gamma = power_ema_gamma(cfg.export_ema_std) if cfg.export_ema_std is not None else None
        self._probe = None
        sigmas = karras_sigmas(cfg.n_grid)
        if cfg.grid_to_zero:  # the official grid: sigma 0 appended, reached by one Euler step (heun_solve)
            sigmas = torch.cat([sigmas, sigmas.new_zeros(1)])
        self.sigmas = sigmas.to(device)
        self.objective = cfg.objective
        if self.objective in CD_OBJECTIVES:  # consistency distillation (soundctm.cd): its own loss, no DSM
            self.cd = CDLoss(teacher, self.sigmas, self.objective, huber_c=cfg.huber_c)
            self.log_keys = ("loss", "cd", "omega_mean", "ode_steps_mean")
        else:
            self.ctm = CTMLoss(teacher, self.sigmas, distance=cfg.distance, reduction=cfg.loss_reduction,
                               huber_c=cfg.huber_c)
            self.ctm.bank = self._target_bank(cfg, teacher, data, device)
        self.uncond = data.uncond.to(device)
        self.gan = None
        if cfg.gan:
            self._init_gan(cfg, data, device)
            self.log_keys = self.log_keys + ("gan", "lambda_gan", "disc")

    def _target_bank(self, cfg: TrainConfig, teacher, data, device) -> TargetBank | None:
        """The teacher-target bank of `cfg.target_bank` (soundctm.train.target_bank), or None (solve inline).
        The teacher's identity is its export file's checksum, or that of its weights when it was built here."""
        if cfg.target_bank is None:
            return None
        checksum = (file_checksum(cfg.teacher_path) if cfg.teacher_path
                    else state_dict_checksum(teacher.state_dict()))
        return TargetBank.for_run(cfg, teacher=checksum, data_info=data.info, solver=solver_name(self.ctm.solver),
                                  numerics=numerics_id(device, cfg.amp))

    def run_stats(self) -> dict:
        """{"target_bank": its counters (`TargetBank.stats`)} with a bank, else {}: this process's lookups since
        it started (a resumed run counts from its resume step), for the step log and the run summary."""
        bank = getattr(getattr(self, "ctm", None), "bank", None)
        return {"target_bank": bank.stats()} if bank is not None else {}

    def _init_gan(self, cfg: TrainConfig, data, device) -> None:
        """Frozen VAE decoder + discriminators (soundctm.train.gan) with their own Adam."""

        if cfg.data == "tiny":
            vae = get_tiny_components(cfg.cache, progress=False)[1]
        else:  # synthetic data: a randomly initialised tiny VAE stands in for the decoder

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(cfg.seed, "gan-vae"))
                vae = AudioAutoencoder(vae_config("tiny"))
        self.vae = vae.to(device).eval().requires_grad_(False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(cfg.seed, "discriminators"))
            self.gan = AudioDiscriminators().to(device)
        self.gan_opt = torch.optim.Adam(self.gan.parameters(), lr=cfg.gan_lr, betas=(0.5, 0.9))
        self._gan_batch = None

    def draws(self, step: int, indices: list[int]):
        """All random quantities of a step for the given global example indices (`ctm.DistillDraws`; for the
        "cd" / "lcm" objectives `cd.CDDraws`)."""
        cfg = self.cfg
        if self.objective in CD_OBJECTIVES:
            return draw_cd(example_generators(cfg.seed, step, indices, "cd"), self.sigmas.cpu(),
                           self.preset.latent_shape, skip=cfg.skip_steps, omega_range=cfg.omega_range,
                           p_uncond=cfg.p_uncond)
        gens = example_generators(cfg.seed, step, indices, "distill")
        batch_gen = None
        if cfg.k_sampling == "per-batch":  # from (seed, step) alone, so every worker draws the same k
            batch_gen = torch.Generator().manual_seed(derive_seed(cfg.seed, step, "distill-k"))
        return draw_distill(
            gens,
            self.sigmas.cpu(),
            self.preset.latent_shape,
            omega_range=cfg.omega_range,
            p_uncond=cfg.p_uncond,
            max_ode_steps=cfg.max_ode_steps,
            batch_generator=batch_gen,
            t_max_fraction=cfg.t_max_fraction,
            s_end_fraction=cfg.s_end_fraction,
        )

    def losses(self, step: int, rank: int, world: int) -> dict[str, torch.Tensor]:
        cfg, dev = self.cfg, self.device
        idx = worker_indices(step, cfg.batch_size, rank, world)
        z0, cond = self.data.batch(pairs_for(cfg.seed, idx, self.data.n_pairs))
        d = self.draws(step, idx).to(dev)
        z0, cond = z0.to(dev), cond.to(dev)
        if self.objective in CD_OBJECTIVES:
            out = cd_losses(self.model, self.ema, self.cd, z0, cond, self.uncond, d)
            out["omega_mean"] = d.omega.mean()
            out["ode_steps_mean"] = (d.iu - d.it).float().mean()
            return out
        self.ctm.bank_at = (step, rank, world)  # the bank entry of this step's teacher solve (if a bank is set)
        try:
            out = distill_losses(self.model, self.ema, self.ctm, z0, cond, self.uncond, d,
                                 dsm_weight=cfg.dsm_weight, adaptive=cfg.adaptive_dsm, reduce_grads=allreduce_mean,
                                 dsm_weighting=cfg.dsm_weighting)
        finally:
            self.ctm.bank_at = None
        l_ctm, z_t, cond = out.pop("_ctm"), out.pop("_z_t"), out.pop("_cond")
        out["omega_mean"] = d.omega.mean()
        out["ode_steps_mean"] = (d.times.iu - d.times.it).float().mean()
        if self.gan is not None:
            out.update(self._gan_losses(step, z0, z_t, d.times, cond, d.omega, l_ctm))
            out["loss"] = out["loss"] + out.pop("_gan_term")
        return out

    def _gan_losses(self, step, z0, z_t, times, cond, omega, l_ctm) -> dict[str, torch.Tensor]:
        """Generator side: hinge + feature matching on VAE-decoded G_theta(z_t, t, 0), adaptive weight."""

        zero = torch.zeros((), device=z0.device)
        if step < self.cfg.gan_start:
            self._gan_batch = None
            return {"_gan_term": zero, "gan": zero, "lambda_gan": zero, "disc": zero}
        x_est = self.model(z_t, times.t, torch.zeros_like(times.t), cond, omega)
        fake = self.vae.decode(x_est)
        with torch.no_grad():
            real = self.vae.decode(z0)
            _, real_feats = self.gan(real)
        self.gan.requires_grad_(False)  # generator step: no discriminator gradients
        fake_logits, fake_feats = self.gan(fake)
        self.gan.requires_grad_(True)
        l_gan = generator_hinge_loss(fake_logits) + feature_matching_loss(real_feats, fake_feats)
        lam = self.cfg.gan_weight * adaptive_dsm_weight(
            l_ctm, l_gan, self.model.last_layer(), reduce_grads=allreduce_mean
        )
        self._gan_batch = (real, fake.detach())
        return {"_gan_term": lam * l_gan, "gan": l_gan.detach(), "lambda_gan": lam.detach(), "disc": zero}

    def post_step(self, step: int) -> dict[str, torch.Tensor]:
        """Discriminator update on this step's real and (detached) generated audio."""
        if self.gan is None or self._gan_batch is None:
            return {}

        real, fake = self._gan_batch
        self._gan_batch = None
        loss_d = discriminator_hinge_loss(self.gan(real)[0], self.gan(fake)[0])
        self.gan_opt.zero_grad(set_to_none=True)
        loss_d.backward()
        allreduce_mean([p.grad for p in self.gan.parameters() if p.grad is not None])
        self.gan_opt.step()
        return {"disc": loss_d.detach()}

    def extra_state(self) -> dict:
        out = {}
        if self.gan is not None:
            out.update(discriminators=self.gan.state_dict(), disc_optimizer=self.gan_opt.state_dict())
        if self.export_ema is not None:
            out["export_ema"] = self.export_ema.state_dict()
        return out

    def load_extra_state(self, state: dict) -> None:
        if self.gan is not None:
            self.gan.load_state_dict(state["discriminators"])
            self.gan_opt.load_state_dict(state["disc_optimizer"])
        if self.export_ema is not None:
            self.export_ema.load_state_dict(state["export_ema"])

    def update_ema(self, step: int) -> None:
        ema_update(self.ema, self.model, self.cfg.ema_mu)
        if self.export_ema is not None:  # EDM2's power-function EMA: beta_t = (1 - 1/t)^(gamma + 1), t = step + 1
            ema_update(self.export_ema, self.model, (1.0 - 1.0 / (step + 1)) ** (self._power_gamma + 1.0))

    @property
    def export_model(self):
        """The weights the run exports (and scores at its checkpoints)."""
        return self.export_ema if self.export_ema is not None else self.ema

    def checkpoint_metrics(self, step: int) -> dict:
        """The exported weights' teacher-ODE error and omega response on validation captions
        (`soundctm.fidelity`), at a checkpoint: {"fidelity": {...}} or {} (synthetic data, fidelity_items 0)."""
        cfg = self.cfg
        if cfg.fidelity_items <= 0 or cfg.data != "tiny" or self.objective in CD_OBJECTIVES:
            return {}
        with torch.random.fork_rng(devices=[]):  # the training's random stream is left as it was
            if self._probe is None:
                self._probe = validation_probe(self.teacher, self.preset, cfg.cache, cfg.fidelity_items, self.device)
            return {"fidelity": fidelity.summarize(self.export_model, self._probe, n_boot=200)}

    def export_extra(self) -> dict:
        return {"teacher": self.teacher_info}


def power_ema_gamma(sigma_rel: float) -> float:
    """The exponent gamma of EDM2's power-function EMA with relative standard deviation sigma_rel: the root of
    sigma_rel^2 = (gamma + 1) / ((gamma + 2)^2 (gamma + 3)) (Karras et al. 2024, Eq. 3), found by bisection
    (the right side decreases in gamma > 0 from 1/12 at gamma = 0)."""
    if not 0 < sigma_rel < 12 ** -0.5:
        raise ValueError(f"sigma_rel must be in (0, {12 ** -0.5:.4f}), got {sigma_rel}")
    f = lambda g: (g + 1) / ((g + 2) ** 2 * (g + 3)) - sigma_rel ** 2
    lo, hi = 0.0, 1.0
    while f(hi) > 0:
        hi *= 2
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) > 0 else (lo, mid)
    return 0.5 * (lo + hi)


VALIDATION_SEED = 10_000  # the probe's prior noise seeds: VALIDATION_SEED + i for validation clip i


def validation_probe(teacher, preset, cache, n_items: int, device) -> fidelity.FidelityProbe:
    """The fidelity probe of a tiny distillation: the first `n_items` validation clips (their first caption),
    prior noise seeds VALIDATION_SEED + i, the teacher's Heun-40 references at omega 2 and 5."""
    val = tiny_conditioned(preset, cache, split="val", log=lambda *a, **k: None)
    first: dict[int, int] = {}
    for p, c in enumerate(val.pair_clip.tolist()):
        first.setdefault(c, p)
    pairs = [first[c] for c in sorted(first)][:n_items]
    cond = val.cond[pairs].to(device)
    return fidelity.build_probe(teacher, cond, val.uncond.to(device), [VALIDATION_SEED + i for i in range(len(pairs))])


def tiny_student_config(
    teacher_path, preset: str = "tiny-dit", distance: str = "d_teacher", **overrides
) -> TrainConfig:
    """The settings `distill_tiny_student` uses (CPU, a few minutes). lr 2e-4 (the paper's 8e-5 is for
    the 1B models and days of GPU time)."""
    base = dict(
        kind="distill",
        preset=preset,
        distance=distance,
        steps=300,
        batch_size=8,
        checkpoint_every=100,
        teacher_path=str(teacher_path) if teacher_path else None,
        data="tiny",
    )
    base.update(overrides)
    return TrainConfig(**base)
