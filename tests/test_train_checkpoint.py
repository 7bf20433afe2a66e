"""Checkpoints, exports, resume and the CLI of the training programs (synthetic data, CPU)."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

import pytest
import torch

from soundctm.commands.train import distill_main, train_teacher_main
from soundctm.io import save_state
from soundctm.presets import build_student, build_teacher
from soundctm.train.checkpoint import (
    export_model,
    list_checkpoints,
    load_export,
    load_latest,
    save_checkpoint,
)
from soundctm.train.loop import TrainConfig, read_metrics, run_training

ROOT = Path(__file__).resolve().parents[1]


def _randomize(m, seed=0, scale=0.1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return m


@pytest.mark.parametrize("preset", ["tiny-dit", "tiny-unet"])
def test_export_round_trip_gives_identical_outputs(tmp_path, preset):
    teacher = _randomize(build_teacher(preset, seed=1))
    student = _randomize(build_student(preset, teacher=teacher), seed=2)
    c, t = teacher.latent_shape
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, c, t, generator=g)
    cond = torch.randn(2, *teacher.cond_shape, generator=g)
    sig = torch.tensor([0.5, 3.0])
    export_model(
        tmp_path / "t.safetensors", teacher, kind="teacher", preset=teacher.preset, train_config={"x": 1}
    )
    export_model(tmp_path / "s.safetensors", student, kind="student", preset=student.preset, train_config={})
    t2, s2 = load_export(tmp_path / "t.safetensors"), load_export(tmp_path / "s.safetensors")
    assert type(t2) is type(teacher) and type(s2) is type(student)
    assert t2.preset == teacher.preset and t2.export_metadata["train_config"] == {"x": 1}
    with torch.no_grad():
        assert torch.equal(t2(z, sig, cond), teacher(z, sig, cond))
        w = torch.tensor([3.0, 4.0])
        assert torch.equal(s2(z, sig, sig / 2, cond, w), student(z, sig, sig / 2, cond, w))
    assert not any(p.requires_grad for p in t2.parameters())


def test_export_rejects_other_files(tmp_path):
    from soundctm.io import save_safetensors

    save_safetensors(tmp_path / "x.safetensors", {"a": torch.zeros(1)}, {"kind": "TinyCLAP"})
    with pytest.raises(ValueError, match="not a soundctm model export"):
        load_export(tmp_path / "x.safetensors")


def test_state_is_loaded_weights_only_and_pickled_objects_are_refused(tmp_path):
    save_checkpoint(tmp_path, {"step": 3, "model": {"w": torch.ones(2)}, "config": {"a": [1, 2]}})
    save_checkpoint(tmp_path, {"step": 5, "model": {"w": torch.zeros(2)}, "config": {"a": [1, 2]}})
    save_checkpoint(tmp_path, {"step": 7, "model": {"w": torch.full((2,), 7.0)}, "config": {}}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-00000005.pt", "ckpt-00000007.pt"]
    st = load_latest(tmp_path)
    assert st["step"] == 7 and torch.equal(st["model"]["w"], torch.full((2,), 7.0))
    # a state holding a pickled custom object (here an argparse.Namespace) is refused
    save_state(
        tmp_path / "checkpoints" / "ckpt-00000009.pt",
        {"step": 9, "format_version": 1, "args": Namespace(a=1)},
    )
    with pytest.raises(pickle.UnpicklingError):
        load_latest(tmp_path)


def test_dry_run_prints_the_resolved_config(capsys, tmp_path):
    rc = train_teacher_main(
        ["--dry-run", "--steps", "7", "--batch-size", "4", "--seed", "3", "--run-dir", str(tmp_path / "r")]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    cfg = out["config"]
    assert out["run_dir"] == str(tmp_path / "r")
    assert (cfg["kind"], cfg["steps"], cfg["batch_size"], cfg["seed"]) == ("teacher", 7, 4, 3)
    assert cfg["ema_mu"] == 0.999 and cfg["optimizer"] == "adamw" and cfg["p_uncond"] == 0.1
    assert not (tmp_path / "r").exists()  # nothing was written

    rc = distill_main(
        [
            "--dry-run",
            "--data",
            "synthetic",
            "--distance",
            "l2_0",
            "--preset",
            "tiny-unet",
            "--omega-min",
            "3",
            "--omega-max",
            "4",
        ]
    )
    cfg = json.loads(capsys.readouterr().out)["config"]
    assert rc == 0 and cfg["distance"] == "l2_0" and cfg["omega_range"] == [3.0, 4.0]
    assert cfg["ema_mu"] == 0.999 and cfg["optimizer"] == "radam" and cfg["max_ode_steps"] == 8
    assert cfg["grad_clip"] == 1000.0
    # the tiny corpus needs a teacher: a clear error, exit code 2
    assert distill_main(["--dry-run"]) == 2
    assert "teacher" in capsys.readouterr().err


def test_distill_resume_continues_exactly(tmp_path):
    """Stop a distillation run after 2 steps, resume it to 4: the same losses as 4 uninterrupted steps."""
    common = dict(
        kind="distill",
        data="synthetic",
        batch_size=2,
        synthetic_clips=4,
        max_ode_steps=2,
        checkpoint_every=2,
        threads=1,
        export=False,
    )
    run_training(TrainConfig(steps=4, **common), tmp_path / "a", progress=False)
    run_training(TrainConfig(steps=2, **common), tmp_path / "b", progress=False)
    s = run_training(TrainConfig(steps=4, **common), tmp_path / "b", progress=False)
    assert s["resumed_from"] == 2
    la, lb = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert [r["step"] for r in lb] == [0, 1, 2, 3]
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]
    assert [r["ctm"] for r in la] == [r["ctm"] for r in lb]
    # a run directory with different settings is not silently resumed
    with pytest.raises(ValueError, match="different settings"):
        run_training(TrainConfig(steps=4, **dict(common, batch_size=4)), tmp_path / "b", progress=False)


def _cmd(run_dir, steps):
    return [
        sys.executable,
        "-m",
        "soundctm.cli",
        "train-teacher",
        "--data",
        "synthetic",
        "--steps",
        str(steps),
        "--batch-size",
        "8",
        "--checkpoint-every",
        "10",
        "--threads",
        "1",
        "--no-progress",
        "--run-dir",
        str(run_dir),
    ]


@pytest.mark.slow
def test_sigkill_and_resume_gives_the_losses_of_an_uninterrupted_run(tmp_path):
    env = dict(os.environ, SOUNDCTM_CACHE=str(tmp_path / "cache"))
    steps = 60
    ref = subprocess.run(
        _cmd(tmp_path / "ref", steps), env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert ref.returncode == 0, ref.stderr[-2000:]

    proc = subprocess.Popen(
        _cmd(tmp_path / "run", steps), env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ckpt = tmp_path / "run" / "checkpoints" / "ckpt-00000020.pt"
    t0 = time.time()
    while not ckpt.exists() and proc.poll() is None and time.time() - t0 < 60:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = max(r["step"] for r in read_metrics(tmp_path / "run"))
    assert killed_at < steps - 1
    res = subprocess.run(
        _cmd(tmp_path / "run", steps), env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["resumed_from"] >= 20
    # the processor is part of what makes training reproducible: the report names it and torch's kernel level
    assert summary["cpu"]["model"] and summary["cpu"]["capability"] == torch.backends.cpu.get_cpu_capability()
    a, b = read_metrics(tmp_path / "ref"), read_metrics(tmp_path / "run")
    assert [r["step"] for r in b] == list(range(steps))
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    ea, eb = (
        load_export(tmp_path / "ref" / "export.safetensors"),
        load_export(tmp_path / "run" / "export.safetensors"),
    )
    for (k, v), (k2, v2) in zip(ea.state_dict().items(), eb.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k


def _build_synthetic(run_dir: str, out: str) -> None:  # (module level: a spawned process imports it)
    from soundctm.train.tiny import build_or_reuse

    cfg = TrainConfig(kind="teacher", data="synthetic", steps=40, batch_size=4, checkpoint_every=10, threads=1)
    Path(out).write_text(str(build_or_reuse(cfg, Path(run_dir), force=False, progress=False, log=lambda *a: None)))


def test_two_processes_building_one_run_train_it_once(tmp_path):
    # two all.py invocations (or two Ray workers of one machine) on one cache may both need the same model:
    # the second must wait for the first and reuse its export, not train the run a second time into its directory
    from processes import run_concurrently

    run_dir = tmp_path / "runs" / "teacher-x"
    assert run_concurrently(_build_synthetic, [(str(run_dir), str(tmp_path / f"out{i}")) for i in range(2)]) == [0, 0]
    assert {(tmp_path / f"out{i}").read_text() for i in range(2)} == {str(run_dir / "export.safetensors")}
    assert [r["step"] for r in read_metrics(run_dir)] == list(range(40))  # each step logged once: one training
    assert json.loads((run_dir / "summary.json").read_text()).get("resumed_from") in (None, 0)
