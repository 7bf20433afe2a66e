"""The teacher-target bank (`soundctm.train.target_bank`, `TrainConfig.target_bank`): stored teacher solves z_u of
the CTM target, read back only under an exact fingerprint match, give bit-identical training."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from soundctm.ctm import apply_dropout
from soundctm.edm import cfg_denoiser, heun_solve
from soundctm.io import load_safetensors, save_safetensors
from soundctm.train.config import TrainConfig, resolve_config
from soundctm.train.data import pairs_for, worker_indices
from soundctm.train.distill import DistillTask
from soundctm.train.loop import load_data, read_metrics, run_training
from soundctm.train.target_bank import TargetBank, bank_root, solve_fingerprint
from soundctm.train.tiny import run_key

STEPS = 3


def _cfg(**kw) -> TrainConfig:
    base = dict(kind="distill", preset="tiny-dit", data="synthetic", steps=STEPS, batch_size=4, synthetic_clips=4,
                max_ode_steps=3, checkpoint_every=100, threads=1, fidelity_items=0)
    base.update(kw)
    return TrainConfig(**base)


def _train(root, name, **kw):
    """(summary, exported tensors, metrics records) of a fresh run `name` under `root`."""
    summary = run_training(_cfg(**kw), root / name, progress=False, log=lambda *a, **k: None)
    tensors, _ = load_safetensors(root / name / "export.safetensors")
    return summary, tensors, read_metrics(root / name)


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _losses(records) -> list[tuple]:
    return [(r["loss"], r["ctm"], r["dsm"], r["grad_norm"]) for r in records]


def _entry(folder, step, rank=0, world=1):
    return folder / f"w{world}-r{rank}" / f"{step:08d}.safetensors"


def test_inline_filling_and_reading_runs_train_bit_identically(tmp_path):
    bank = tmp_path / "banks"
    s0, w0, m0 = _train(tmp_path, "inline")
    s1, w1, m1 = _train(tmp_path, "fill", target_bank=str(bank))
    s2, w2, m2 = _train(tmp_path, "read", target_bank=str(bank))
    assert _same_weights(w0, w1) and _same_weights(w0, w2)
    assert _losses(m0) == _losses(m1) == _losses(m2)
    assert "target_bank" not in s0
    b1, b2 = s1["target_bank"], s2["target_bank"]
    assert (b1["hits"], b1["misses"], b1["writes"]) == (0, STEPS, STEPS)
    assert (b2["hits"], b2["misses"], b2["mismatches"], b2["corrupt"], b2["writes"]) == (STEPS, 0, 0, 0, 0)
    assert [r["target_bank"]["hits"] for r in m2] == list(range(1, STEPS + 1))
    folder = Path(b1["path"])
    assert b1["path"] == b2["path"] and folder.parent == bank.resolve()
    entries = sorted(p.name for p in folder.glob("w1-r0/*.safetensors"))
    assert entries == [f"{s:08d}.safetensors" for s in range(STEPS)]
    desc = json.loads((folder / "bank.json").read_text())
    assert desc["seed"] == 0 and desc["max_ode_steps"] == 3 and desc["batch_size"] == 4
    # bookkeeping: the setting leaves the run key alone
    assert run_key(_cfg()) == run_key(_cfg(target_bank=str(bank))) == run_key(_cfg(target_bank="auto"))


def test_a_stored_entry_is_the_teachers_guided_heun_solve_of_that_step(tmp_path, one_thread):
    """Step 1's entry equals a Heun solve rebuilt here from the step's batch and draws: z_t = z_0 + t eps, the
    caption dropout, CFG with the drawn omega from t to u on the training grid."""
    cfg = resolve_config(_cfg(target_bank=str(tmp_path / "banks")))
    task = DistillTask(cfg, load_data(cfg), "cpu", log=lambda *a, **k: None)
    for step in range(2):
        task.losses(step, 0, 1)
    idx = worker_indices(1, cfg.batch_size)
    z0, cond = task.data.batch(pairs_for(cfg.seed, idx, task.data.n_pairs))
    d = task.draws(1, idx)
    cond_used = apply_dropout(cond, task.uncond, d.drop)
    z_t = z0 + d.times.t[:, None, None] * d.noise
    z_u = heun_solve(cfg_denoiser(task.teacher, cond_used, task.uncond, d.omega), z_t, d.times.t, d.times.u,
                     sigmas=task.sigmas)
    stored, meta = load_safetensors(_entry(task.ctm.bank.folder, 1))
    assert torch.equal(stored["z_u"], z_u) and stored["z_u"].dtype == torch.float32
    assert meta["fingerprint"] == task.ctm.bank.fingerprint(z_t, d.times.t, d.times.u, d.omega, cond_used,
                                                            task.uncond, task.sigmas)
    assert task.run_stats()["target_bank"]["writes"] == 2


def test_a_variant_with_another_distance_reads_the_same_bank(tmp_path):
    """d_teacher fills the bank; an l2_s student with DSM weight 0 and another lr (the same draws) reads every
    step from it and trains exactly as its own inline run. "auto" places the bank under the cache."""
    cache = tmp_path / "cache"
    s1, _, _ = _train(tmp_path, "fill", target_bank="auto", cache=str(cache))
    variant = dict(distance="l2_s", dsm_weight=0.0, lr=5e-4)
    s2, w2, m2 = _train(tmp_path, "l2s-bank", target_bank="auto", cache=str(cache), **variant)
    _, w3, m3 = _train(tmp_path, "l2s-inline", **variant)
    assert s1["target_bank"]["path"] == s2["target_bank"]["path"]
    assert s2["target_bank"]["path"].startswith(str(bank_root("auto", cache)))
    assert (s2["target_bank"]["hits"], s2["target_bank"]["misses"]) == (STEPS, 0)
    assert _same_weights(w2, w3) and _losses(m2) == _losses(m3)


def test_a_variant_whose_s_draws_end_the_grid_reads_the_same_bank(tmp_path):
    """`s_end_fraction` moves s only, never t, u or the step's other draws: the teacher's solves are the same."""
    bank = str(tmp_path / "banks")
    s1, w1, _ = _train(tmp_path, "fill", target_bank=bank)
    s2, w2, m2 = _train(tmp_path, "s-end", target_bank=bank, s_end_fraction=0.5)
    _, w3, m3 = _train(tmp_path, "s-end-inline", s_end_fraction=0.5)
    assert s2["target_bank"]["path"] == s1["target_bank"]["path"]
    assert (s2["target_bank"]["hits"], s2["target_bank"]["misses"]) == (STEPS, 0)
    assert _same_weights(w2, w3) and _losses(m2) == _losses(m3)
    assert not _same_weights(w1, w2)


@pytest.mark.parametrize("change", [dict(seed=1), dict(max_ode_steps=2), dict(t_max_fraction=0.5)])
def test_a_variant_with_other_draws_misses_and_trains_as_inline(tmp_path, change):
    bank = str(tmp_path / "banks")
    s1, w1, _ = _train(tmp_path, "fill", target_bank=bank)
    s2, w2, m2 = _train(tmp_path, "other", target_bank=bank, **change)
    _, w3, m3 = _train(tmp_path, "other-inline", **change)
    assert s2["target_bank"]["path"] != s1["target_bank"]["path"]  # its own stream
    assert (s2["target_bank"]["hits"], s2["target_bank"]["misses"], s2["target_bank"]["writes"]) == (0, STEPS, STEPS)
    assert _same_weights(w2, w3) and _losses(m2) == _losses(m3)
    assert not _same_weights(w1, w2)


def test_corrupted_or_mismatching_entries_are_never_used(tmp_path):
    """Step 0 intact (hit); step 1: z_u altered under its own fingerprint (hash check fails: corrupt, rewritten);
    step 2: a well-formed entry of another solve (fingerprint mismatch: solved inline, entry kept); step 3:
    a truncated file (corrupt, rewritten). The run trains exactly as inline."""
    bank = str(tmp_path / "banks")
    steps = 4
    s1, _, _ = _train(tmp_path, "fill", target_bank=bank, steps=steps)
    folder = Path(s1["target_bank"]["path"])
    orig = {}
    for s in range(steps):
        tensors, meta = load_safetensors(_entry(folder, s))
        orig[s] = ({k: v.clone() for k, v in tensors.items()}, meta)  # (the loaded tensors map the file)
    tensors, meta = orig[1]
    save_safetensors(_entry(folder, 1), {"z_u": tensors["z_u"] + 1.0}, meta)
    foreign = torch.full_like(orig[2][0]["z_u"], 7.0)
    foreign_meta = dict(orig[2][1], fingerprint="0" * 64)
    foreign_meta["z_u_sha256"] = hashlib.sha256(foreign.numpy().tobytes()).hexdigest()
    save_safetensors(_entry(folder, 2), {"z_u": foreign}, foreign_meta)
    raw = _entry(folder, 3).read_bytes()
    _entry(folder, 3).write_bytes(raw[: len(raw) // 2])

    s2, w2, m2 = _train(tmp_path, "read", target_bank=bank, steps=steps)
    _, w0, m0 = _train(tmp_path, "inline", steps=steps)
    assert _same_weights(w0, w2) and _losses(m0) == _losses(m2)
    b = s2["target_bank"]
    assert (b["hits"], b["misses"], b["mismatches"], b["corrupt"], b["writes"]) == (1, 3, 1, 2, 2)
    for s in (1, 3):  # repaired with the solve's bytes
        assert torch.equal(load_safetensors(_entry(folder, s))[0]["z_u"], orig[s][0]["z_u"])
    kept = load_safetensors(_entry(folder, 2))
    assert torch.equal(kept[0]["z_u"], foreign) and kept[1]["fingerprint"] == "0" * 64


def test_workers_have_their_own_entries(tmp_path, one_thread):
    """Two workers of a step and a single process of the same step each get their own entry; a second task
    reads all three back with the losses of the first."""
    cfg = resolve_config(_cfg(target_bank=str(tmp_path / "banks")))
    data = load_data(cfg)
    parts = [(0, 0, 2), (0, 1, 2), (0, 0, 1)]
    first = DistillTask(cfg, data, "cpu", log=lambda *a, **k: None)
    a = [float(first.losses(*p)["loss"].detach()) for p in parts]
    second = DistillTask(cfg, data, "cpu", log=lambda *a, **k: None)
    b = [float(second.losses(*p)["loss"].detach()) for p in parts]
    assert a == b
    assert first.run_stats()["target_bank"]["writes"] == 3
    assert second.run_stats()["target_bank"]["hits"] == 3 and second.run_stats()["target_bank"]["misses"] == 0
    folder = first.ctm.bank.folder
    assert all(_entry(folder, *p).exists() for p in parts)
    z2 = load_safetensors(_entry(folder, 0, 0, 2))[0]["z_u"]
    z1 = load_safetensors(_entry(folder, 0, 0, 1))[0]["z_u"]
    assert z2.shape[0] == 2 and z1.shape[0] == 4


def test_a_run_resumes_with_the_bank_switched_on(tmp_path):
    run = tmp_path / "run"
    run_training(_cfg(steps=2, checkpoint_every=2), run, progress=False, log=lambda *a, **k: None)
    s = run_training(_cfg(steps=4, checkpoint_every=2, target_bank=str(tmp_path / "banks")), run, progress=False,
                     log=lambda *a, **k: None)
    assert s["resumed_from"] == 2 and s["target_bank"]["misses"] == 2 and s["target_bank"]["writes"] == 2
    _, w0, _ = _train(tmp_path, "straight", steps=4, checkpoint_every=2)
    assert _same_weights(load_safetensors(run / "export.safetensors")[0], w0)


def test_bank_round_trip_is_exact_and_the_fingerprint_sees_every_input(tmp_path):
    bank = TargetBank(tmp_path / "b", teacher="abc", solver="heun", numerics="n")
    g = torch.Generator().manual_seed(0)
    z_t, cond, uncond = torch.randn(3, 4, 5, generator=g), torch.randn(3, 1, 6, generator=g), torch.zeros(1, 1, 6)
    t, u, omega = torch.tensor([2.0, 1.0, 0.5]), torch.tensor([1.0, 0.5, 0.1]), torch.tensor([3.0, 4.0, 5.0])
    sigmas = torch.linspace(80, 0.002, 40)
    args = [z_t, t, u, omega, cond, uncond, sigmas]
    fp = bank.fingerprint(*args)
    z_u = torch.randn(3, 4, 5, generator=g)
    z_u[0, 0, :3] = torch.tensor([1e-45, -0.0, float("nan")])  # subnormal, signed zero, NaN survive bit for bit
    assert bank.get(5, fp) is None and bank.put(5, fp, z_u)
    back = bank.get(5, fp)
    assert back.view(torch.int32).equal(z_u.view(torch.int32))
    assert bank.get(6, fp) is None and bank.get(5, fp, rank=1, world=2) is None
    assert bank.get(5, "f" * 64) is None and not bank.put(5, "f" * 64, z_u + 1)  # another solve's entry is kept
    assert bank.stats()["hits"] == 1 and bank.stats()["mismatches"] == 1
    seen = {fp}
    for i in range(len(args)):
        changed = [a.clone() for a in args]
        changed[i].view(-1)[0] = changed[i].view(-1)[0] + 1e-3
        seen.add(bank.fingerprint(*changed))
    for kw in (dict(solver="euler"), dict(teacher="abd"), dict(numerics="m")):
        seen.add(solve_fingerprint(*args, **{**dict(solver="heun", teacher="abc", numerics="n"), **kw}))
    assert len(seen) == 1 + len(args) + 3
    with pytest.raises(ValueError, match="float32"):
        bank.put(7, fp, z_u.double())


def test_the_setting_is_checked():
    assert resolve_config(_cfg(target_bank="auto")).target_bank == "auto"
    assert resolve_config(_cfg(target_bank="~/x")).target_bank.startswith("/")
    with pytest.raises(ValueError, match="target_bank"):
        resolve_config(_cfg(target_bank="auto", objective="cd", distance=None))
    with pytest.raises(ValueError, match="target_bank"):
        resolve_config(TrainConfig(kind="teacher", data="synthetic", target_bank="auto"))
