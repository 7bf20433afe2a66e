"""Mixed precision as a run option (`TrainConfig.amp`, `soundctm generate --amp`): off by default, the
networks' forward passes under autocast, every loss in fp32, and existing runs keep their keys."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from soundctm.data.latent_cache import file_checksum
from soundctm.io import load_state, save_state
from soundctm.paths import committed_tiny_dir
from soundctm.train.checkpoint import list_checkpoints, read_export_metadata
from soundctm.train.config import TrainConfig, config_from_dict, resolve_config
from soundctm.train.loop import apply_amp, load_data, make_task, run_training
from soundctm.train.tiny import _components_key, run_key

ROOT = Path(__file__).resolve().parents[1]
CKPT = committed_tiny_dir()


def _committed_run_dirs() -> list[str]:
    """The run directories the committed Table 3 was made with (their names end with the run key)."""
    models = json.loads((ROOT / "results" / "tiny" / "table3.json").read_text())["meta"]["models"]
    return [Path(p).parent.name for paths in models.values() for p in paths]


def test_the_amp_setting_keeps_the_keys_of_existing_runs():
    """The committed teacher's and student's configs (from the export metadata) give the run keys their run
    directories were named with, and a config written before `amp` existed (no "amp" entry) reads as
    amp = "off" and keeps its key."""
    dirs = _committed_run_dirs()
    meta = {r: read_export_metadata(CKPT / f"{r}-tiny-dit.safetensors")["train_config"] for r in ("teacher", "student")}
    teacher, student = config_from_dict(meta["teacher"]), config_from_dict(meta["student"])
    tk = run_key(teacher, _components_key(None))
    sk = run_key(student, {"teacher": file_checksum(CKPT / "teacher-tiny-dit.safetensors")})
    assert f"teacher-tiny-dit-{tk}" in dirs and f"student-tiny-dit-d_teacher-{sk}" in dirs
    assert teacher.amp == "off" and student.amp == "off"
    before_amp = {k: v for k, v in meta["teacher"].items() if k != "amp"}
    old = config_from_dict(before_amp)
    assert old.amp == "off" and run_key(old, _components_key(None)) == tk
    assert run_key(dataclasses.replace(teacher, amp="bf16"), _components_key(None)) != tk
    with pytest.raises(ValueError, match="amp"):
        resolve_config(dataclasses.replace(teacher, amp="fp8"))


def _distill_cfg(**kw) -> TrainConfig:
    return resolve_config(TrainConfig(kind="distill", preset="tiny-dit", data="synthetic", steps=3, batch_size=4,
                                      synthetic_clips=8, checkpoint_every=1, threads=1, **kw))


def test_bf16_runs_the_networks_in_bf16_and_the_losses_in_fp32(one_thread):
    dtypes = {}

    def rec(name):
        def hook(m, i, o):
            dtypes.setdefault(name, set()).add(o.dtype)
        return hook

    losses = {}
    for amp in ("off", "bf16"):
        cfg = _distill_cfg(amp=amp)
        task = make_task(cfg, load_data(cfg, log=lambda *a: None), torch.device("cpu"), log=lambda *a: None)
        assert apply_amp(task, amp, "cpu") is None  # no scaler for bf16
        for name in ("model", "ema", "teacher"):
            getattr(task, name).net.blocks[0].attn.qkv.register_forward_hook(rec(f"{amp}/{name}"))
        out = task.losses(0, 0, 1)
        assert out["loss"].dtype == torch.float32 and out["ctm"].dtype == torch.float32
        out["loss"].backward()
        assert all(p.grad is None or p.grad.dtype == torch.float32 for p in task.model.parameters())
        losses[amp] = float(out["dsm"])
    assert all(dtypes[f"off/{n}"] == {torch.float32} for n in ("model", "ema", "teacher"))
    assert all(dtypes[f"bf16/{n}"] == {torch.bfloat16} for n in ("model", "ema", "teacher"))
    # the same draws with bf16 network arithmetic: the student's DSM term (its CTM term is ~0 at initialisation,
    # where the student equals the teacher, and there bf16 rounding is all that is left)
    assert losses["bf16"] == pytest.approx(losses["off"], rel=0.05)


@pytest.mark.slow  # about 20 s on a shared 2-core CPU (fp16 kernels are slow there)
def test_fp16_training_keeps_its_gradient_scaler_across_a_resume(tmp_path, one_thread):
    run = tmp_path / "run"
    cfg = dataclasses.replace(_distill_cfg(amp="fp16"), batch_size=2)
    s = run_training(dataclasses.replace(cfg, steps=1), run, progress=False, log=lambda *a: None)
    assert s["steps"] == 1 and np.isfinite(s["last"]["loss"])
    state = load_state(list_checkpoints(run)[-1])
    assert state["config"]["amp"] == "fp16" and "scale" in state["scaler"]
    s = run_training(dataclasses.replace(cfg, steps=2), run, progress=False, log=lambda *a: None)
    assert s["resumed_from"] == 1 and s["steps"] == 2


def test_a_checkpoint_from_before_the_setting_resumes(tmp_path, one_thread):
    run = tmp_path / "run"
    run_training(dataclasses.replace(_distill_cfg(), steps=1), run, progress=False, log=lambda *a: None)
    ck = list_checkpoints(run)[-1]
    state = load_state(ck)
    del state["config"]["amp"]  # as a checkpoint written before `amp` existed
    save_state(ck, state)
    assert run_training(dataclasses.replace(_distill_cfg(), steps=2), run, progress=False,
                        log=lambda *a: None)["resumed_from"] == 1


def test_generate_with_bf16(tmp_path, one_thread):
    from soundctm.generate import main

    for amp in ("off", "bf16"):
        assert main(["heavy rain falls", "-n", "1", "--steps", "2", "--amp", amp, "--out", str(tmp_path / amp)]) == 0
    a, _ = sf.read(tmp_path / "off" / "heavy-rain-falls-seed0-2step.wav")
    b, _ = sf.read(tmp_path / "bf16" / "heavy-rain-falls-seed0-2step.wav")
    side = json.loads((tmp_path / "bf16" / "heavy-rain-falls-seed0-2step.json").read_text())
    assert side["settings"]["amp"] == "bf16" and not np.array_equal(a, b)
    assert np.corrcoef(a, b)[0, 1] > 0.99  # measured 0.99998 (tiny committed student, 2 steps)
