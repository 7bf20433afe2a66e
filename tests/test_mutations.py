"""Mutation check of the training and sampling math (issue 12): each known single-line bug, applied to a
copy of the package, must make the targeted fast tests fail.

For each mutation: copy `soundctm/`, `tests/` and `pyproject.toml` to a temporary directory, replace
the exact `old` snippet by `new` in one file (the snippet must occur exactly once; otherwise this
test fails and says the pattern is stale, so a refactor forces the list to be updated rather than
silently skipped), then run the listed tests on the copy in a subprocess (`PYTHONPATH` = the copy,
`-x -q -p no:cacheprovider`, one thread) and require pytest to report failed tests (exit code 1; a
crash at import or collection does not count as catching the bug). `test_unmutated_copy_passes`
runs every listed test on an unmodified copy, so a caught mutation is the mutation's doing.

Run with `pytest -m slow tests/test_mutations.py`: about 4 CPU-minutes, one mutation at a time (measured:
5.5 min wall on a shared 2-core machine at load 4.4).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TM = "tests/test_training_math.py::"
INV = "tests/test_invariants.py::"


@dataclass(frozen=True)
class Mutation:
    id: str
    file: str  # relative to the repository root
    old: str
    new: str
    tests: tuple[str, ...]  # pytest node ids that must catch it
    bug: str


MUTATIONS = [
    # --- teacher DSM (edm.py)
    Mutation("teacher-dsm-unweighted", "soundctm/edm.py",
             "w = precond.scalings.loss_weight(sigma)", "w = torch.ones_like(sigma)",
             (TM + "test_teacher_dsm_of_the_optimal_denoiser_is_one_at_every_sigma",),
             "the teacher's DSM weighting lambda(sigma) replaced by 1"),
    Mutation("loss-weight-one", "soundctm/edm.py",
             "return (t ** 2 + self.sigma_data ** 2) / (t * self.sigma_data) ** 2", "return torch.ones_like(t)",
             (TM + "test_teacher_dsm_of_a_linear_denoiser",),
             "lambda(sigma) = 1 in EDMScalings.loss_weight"),
    Mutation("c-skip-sigma-d", "soundctm/edm.py",
             "sd2 = self.sigma_data ** 2\n        return sd2 / (t ** 2 + sd2)",
             "sd2 = self.sigma_data\n        return sd2 / (t ** 2 + sd2)",
             (INV + "test_edm_scalings_closed_forms", INV + "test_precond_around_the_exact_gaussian_denoiser"),
             "c_skip with sigma_d in place of sigma_d^2"),
    Mutation("c-out-sigma-d", "soundctm/edm.py",
             "return t * self.sigma_data / torch.sqrt(t ** 2 + self.sigma_data ** 2)",
             "return t * self.sigma_data / torch.sqrt(t ** 2 + self.sigma_data)",
             (INV + "test_precond_around_the_exact_gaussian_denoiser",),
             "c_out with sigma_d in place of sigma_d^2"),
    Mutation("karras-rho", "soundctm/edm.py", "RHO = 7.0", "RHO = 6.0",
             (INV + "test_karras_sigmas_match_the_rho7_closed_form",),
             "Karras rho changed from 7"),
    Mutation("lognormal-p-mean", "soundctm/edm.py",
             "P_MEAN, P_STD = -1.2, 1.2", "P_MEAN, P_STD = -1.0, 1.2",
             (TM + "test_teacher_sigma_draws_are_lognormal",),
             "EDM's lognormal training times with the wrong mean (teacher draws)"),
    Mutation("cfg-omega-swapped", "soundctm/edm.py",
             "return _bcast(w, z) * dc + _bcast(1 - w, z) * du", "return _bcast(1 - w, z) * dc + _bcast(w, z) * du",
             (TM + "test_ctm_target_is_ema_of_the_guided_heun_solve",),
             "the teacher's CFG combination with omega and 1 - omega swapped"),
    Mutation("heun-is-euler", "soundctm/edm.py",
             "x = torch.where(_bcast(second, x), x + dt * 0.5 * (d1 + d2), x_euler)", "x = x_euler",
             (TM + "test_ctm_target_is_ema_of_the_guided_heun_solve",),
             "Heun's 2nd-order correction dropped (Euler) in the teacher solver"),
    # --- the CTM target and distance (ctm.py)
    Mutation("target-single-euler-jump", "soundctm/ctm.py",
             "z_u = self.solver(den, z_t, draw.t, draw.u, sigmas=self.sigmas)",
             "z_u = z_t + _bcast(draw.u - draw.t, z_t) * (z_t - den(z_t, draw.t)) / _bcast(draw.t, z_t)",
             (TM + "test_ctm_target_is_ema_of_the_guided_heun_solve",),
             "the CTM target's teacher solve replaced by one Euler step t -> u"),
    Mutation("target-no-stop-gradient", "soundctm/ctm.py",
             "with torch.no_grad():\n            den = cfg_denoiser(", "if True:\n            den = cfg_denoiser(",
             (TM + "test_ctm_target_is_ema_of_the_guided_heun_solve",),
             "stop-gradient removed from the CTM target"),
    Mutation("target-online-student", "soundctm/ctm.py",
             "z_target = self.target(ema, z_t, draw, cond, uncond, omega)",
             "z_target = self.target(student, z_t, draw, cond, uncond, omega)",
             (TM + "test_ctm_target_is_ema_of_the_guided_heun_solve",),
             "the CTM target built with the online student instead of the EMA"),
    Mutation("d-teacher-last-block", "soundctm/ctm.py",
             "for a, b in zip(fa, fb):", "for a, b in zip(fa[-1:], fb[-1:]):",
             (TM + "test_feature_distance_hand_values", TM + "test_d_teacher_uses_the_teachers_blocks_at_time_s"),
             "d_teacher on the last block's features only"),
    Mutation("d-teacher-unnormalised", "soundctm/ctm.py",
             "(normalize_channels(a) - normalize_channels(b))", "(a - b)",
             (TM + "test_feature_distance_hand_values",),
             "d_teacher without LPIPS channel normalisation"),
    Mutation("d-teacher-normalise-time", "soundctm/ctm.py",
             "f.pow(2).sum(dim=1, keepdim=True)", "f.pow(2).sum(dim=2, keepdim=True)",
             (TM + "test_feature_distance_hand_values",),
             "d_teacher normalised over time instead of channels"),
    Mutation("d-teacher-wrong-time", "soundctm/ctm.py",
             "d_teacher(self.teacher, z_target, z_est, cond, torch.where(s > 0, s, SIGMA_MIN), self.reduction)",
             "d_teacher(self.teacher, z_target, z_est, cond, torch.ones_like(s), self.reduction)",
             (TM + "test_ctm_loss_d_teacher_compares_the_teachers_features_at_time_s",),
             "d_teacher features evaluated at a fixed time instead of s"),
    # --- student DSM, EMA, adaptive lambda, dropout (ctm.py)
    Mutation("student-dsm-at-s0", "soundctm/ctm.py",
             "loss = l2(student.g(zt, sigma, sigma, cond, omega), z0)",
             "loss = l2(student.g(zt, sigma, torch.zeros_like(sigma), cond, omega), z0)",
             (TM + "test_student_dsm_at_the_drawn_sigma",),
             "the student's DSM term evaluated at s = 0 instead of s = t = the drawn sigma"),
    Mutation("student-dsm-weighted", "soundctm/ctm.py",
             "loss = l2(student.g(zt, sigma, sigma, cond, omega), z0)",
             "loss = student.scalings.loss_weight(sigma) * l2(student.g(zt, sigma, sigma, cond, omega), z0)",
             (TM + "test_student_dsm_at_the_drawn_sigma",),
             "EDM's lambda(sigma) applied to the student's (unweighted, Eq. 8) DSM term"),
    Mutation("dsm-sigma-rho", "soundctm/ctm.py",
             "xi_max: float = 0.7, sigma_min: float = SIGMA_MIN, sigma_max: float = 80.0,\n"
             "                   rho: float = 7.0)",
             "xi_max: float = 0.7, sigma_min: float = SIGMA_MIN, sigma_max: float = 80.0,\n"
             "                   rho: float = 5.0)",
             (TM + "test_student_dsm_sigma_mixture",),
             "the student's DSM time mixture with the wrong Karras rho"),
    Mutation("ema-swapped", "soundctm/ctm.py",
             "pe.lerp_(pm.detach(), 1.0 - mu)", "pe.lerp_(pm.detach(), mu)",
             (TM + "test_ema_update_hand_values",),
             "EMA weights swapped: the target moves towards the online model at rate mu instead of 1 - mu"),
    Mutation("adaptive-inverted", "soundctm/ctm.py",
             "return (g1.norm() / (g2.norm() + eps)).clamp(max=max_weight)",
             "return (g2.norm() / (g1.norm() + eps)).clamp(max=max_weight)",
             (TM + "test_adaptive_weight_hand_values_and_clamp",),
             "adaptive lambda_DSM ratio inverted"),
    Mutation("adaptive-unclamped", "soundctm/ctm.py",
             "return (g1.norm() / (g2.norm() + eps)).clamp(max=max_weight)",
             "return (g1.norm() / (g2.norm() + eps))",
             (TM + "test_adaptive_weight_hand_values_and_clamp",),
             "adaptive lambda_DSM without its clamp"),
    Mutation("adaptive-no-reduce", "soundctm/ctm.py",
             "        reduce_grads([g1, g2])", "        pass",
             (TM + "test_adaptive_weight_reduces_gradients_before_the_norms",),
             "the workers' gradient all-reduce skipped in the adaptive weight"),
    Mutation("drop-threshold-inverted", "soundctm/ctm.py",
             "drop = r[:, 1] < p_uncond", "drop = r[:, 1] > p_uncond",
             (TM + "test_dropout_fraction_and_determinism",),
             "the student's captions dropped with probability 1 - p_uncond"),
    Mutation("apply-dropout-reversed", "soundctm/ctm.py",
             "torch.where(drop[:, None, None], unc.to(cond.dtype), cond)",
             "torch.where(drop[:, None, None], cond, unc.to(cond.dtype))",
             (TM + "test_apply_dropout_hand_case",),
             "caption dropout replaces the kept captions instead of the dropped ones"),
    # --- the training step (ctm.distill_losses, called by train/distill.py) and the tasks (train/)
    Mutation("distill-no-dropout", "soundctm/ctm.py",
             "cond_used = apply_dropout(cond, uncond, draws.drop)", "cond_used = cond",
             (TM + "test_distill_task_wiring",),
             "caption dropout removed from distillation"),
    Mutation("teacher-no-dropout", "soundctm/train/teacher.py",
             "cond = apply_dropout(cond.to(dev), self.uncond, drop.to(dev))", "cond = cond.to(dev)",
             (TM + "test_teacher_task_applies_dropout_and_weighted_dsm",),
             "caption dropout removed from teacher training"),
    Mutation("distill-dsm-at-ctm-time", "soundctm/ctm.py",
             "draws.dsm_sigma, draws.dsm_noise", "draws.times.t, draws.dsm_noise",
             (TM + "test_distill_task_wiring",),
             "the student's DSM term at the CTM time t instead of its own drawn sigma"),
    Mutation("distill-zt-at-s", "soundctm/ctm.py",
             "z_t = z0 + _bcast(draws.times.t, z0) * draws.noise", "z_t = z0 + _bcast(draws.times.s, z0) * draws.noise",
             (TM + "test_distill_task_wiring",),
             "z_t noised at s instead of t"),
    Mutation("distill-no-allreduce", "soundctm/train/distill.py",
             "adaptive=cfg.adaptive_dsm, reduce_grads=allreduce_mean", "adaptive=cfg.adaptive_dsm, reduce_grads=None",
             (TM + "test_distill_task_wiring",),
             "distillation's lambda_DSM computed from this worker's gradients only"),
    Mutation("teacher-ema-warmup", "soundctm/train/teacher.py",
             "min(self.cfg.ema_mu, (1 + step) / (10 + step))", "max(self.cfg.ema_mu, (1 + step) / (10 + step))",
             (TM + "test_training_tasks_use_their_ema_rates",),
             "the teacher's EMA warm-up inverted"),
    # --- sampling
    Mutation("nu-sign", "soundctm/sampling.py",
             "return zu + nu * (zc - zu)", "return zu - nu * (zc - zu)",
             (INV + "test_nu_combination_sign",),
             "the nu combination's sign flipped (Eq. 10)"),
]


def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    for name in ("soundctm", "tests"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")


def _env(copy: Path) -> dict:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(copy), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def _pytest(copy: Path, tests) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
           "-o", "addopts=", *tests]
    return subprocess.run(cmd, cwd=copy, env=_env(copy), capture_output=True, text=True, timeout=600)


def _apply(copy: Path, m: Mutation) -> None:
    path = copy / m.file
    text = path.read_text()
    n = text.count(m.old)
    if n != 1:
        pytest.fail(f"stale mutation pattern {m.id!r}: the snippet occurs {n} times in {m.file} (needs exactly "
                    f"once); update MUTATIONS in tests/test_mutations.py to the current code:\n{m.old}")
    path.write_text(text.replace(m.old, m.new))


def test_mutation_ids_unique():
    assert len({m.id for m in MUTATIONS}) == len(MUTATIONS)


def test_unmutated_copy_passes(tmp_path):
    """The harness itself: the copy is what the subprocess imports, and every listed test passes on it."""
    _copy_tree(tmp_path)
    where = subprocess.run([sys.executable, "-c", "import soundctm; print(soundctm.__file__)"], cwd=tmp_path,
                           env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert Path(where.stdout.strip()).resolve() == (tmp_path / "soundctm" / "__init__.py").resolve(), where
    for m in MUTATIONS:  # every pattern still matches the current code
        assert (tmp_path / m.file).read_text().count(m.old) == 1, f"stale mutation pattern {m.id!r}"
    tests = sorted({t for m in MUTATIONS for t in m.tests})
    res = _pytest(tmp_path, tests)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


@pytest.mark.parametrize("m", MUTATIONS, ids=[m.id for m in MUTATIONS])
def test_mutation_is_caught(m, tmp_path):
    _copy_tree(tmp_path)
    _apply(tmp_path, m)
    res = _pytest(tmp_path, m.tests)
    out = res.stdout[-3000:] + res.stderr[-2000:]
    assert res.returncode != 0, f"mutation {m.id!r} ({m.bug}) was NOT caught by {m.tests}:\n{out}"
    assert res.returncode == 1 and " failed" in res.stdout, (
        f"mutation {m.id!r}: pytest did not report a failing test (exit {res.returncode}), the harness "
        f"or the mutation is broken:\n{out}")
