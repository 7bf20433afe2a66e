import pytest
import torch

from soundctm.cli import main as cli_main
from soundctm.presets import build_student, build_teacher, count_parameters, model_preset


def test_paper_dit_parameter_count_on_meta():
    teacher = build_teacher("paper-dit", device="meta")
    student = build_student("paper-dit", device="meta", teacher=teacher)
    n = count_parameters(teacher)
    assert abs(n - 1.04e9) / 1.04e9 < 0.03, n
    assert abs(count_parameters(student) - 1.04e9) / 1.04e9 < 0.03
    assert next(teacher.parameters()).device.type == "meta"
    assert teacher.net.cfg.width == 1536 and teacher.net.cfg.depth == 24 and teacher.net.cfg.heads == 24
    assert teacher.latent_shape == (64, 432) and teacher.cond_shape == (1, 512)


@pytest.mark.parametrize("name", ["tiny-dit", "tiny-unet"])
def test_tiny_presets_are_small_and_run(name):
    student = build_student(name)
    assert count_parameters(student) < 5_000_000
    c, t = student.latent_shape
    out = student(torch.randn(2, c, t), torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.0]),
                  torch.randn(2, *student.cond_shape), torch.tensor([1.0, 5.0]))
    assert out.shape == (2, c, t) and torch.isfinite(out).all()


def test_sigma_data_per_preset():
    assert model_preset("paper-unet").sigma_data == 0.25 and model_preset("paper-dit").sigma_data == 0.5
    assert model_preset("paper-unet").ema_mu == 0.999 and model_preset("paper-dit").ema_mu == 0.96
    with pytest.raises(ValueError, match="unknown model preset"):
        model_preset("huge")


def test_cli_params_and_demo(capsys):
    assert cli_main(["params", "tiny-dit"]) == 0
    assert "tiny-dit" in capsys.readouterr().out
    assert cli_main(["demo", "--steps", "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "1 steps" in out and "2 steps" in out
    assert cli_main(["no-such-command"]) == 2


# ----------------------------------------------------------------------------------------------
# tiers and presets are data: the behaviour that differs between the tiny and paper scales is a field


def test_training_recipe_is_a_preset_field_not_a_name_prefix():
    import dataclasses

    from soundctm.train.config import TrainConfig, resolve_config

    tiny, paper = model_preset("tiny-dit"), model_preset("paper-dit")
    assert (tiny.teacher_lr, tiny.distill_lr, tiny.corpus) == (1e-3, 2e-4, "tiny")
    assert (paper.teacher_lr, paper.distill_lr, paper.corpus) == (1e-4, paper.lr, None) and paper.lr == 8e-5
    for name in ("tiny-dit", "tiny-unet", "paper-dit", "paper-unet", "paper-dit-official"):
        p = model_preset(name)
        t = resolve_config(TrainConfig(kind="teacher", preset=name, data="synthetic"))
        s = resolve_config(TrainConfig(kind="distill", preset=name, data="synthetic"))
        assert (t.lr, s.lr) == (p.teacher_lr, p.distill_lr), name
    with pytest.raises(ValueError, match="data='tiny' only serves tiny presets"):
        resolve_config(TrainConfig(kind="teacher", preset="paper-dit", data="tiny"))
    # a preset named like a tiny one gets no tiny behaviour from its name: the fields decide
    renamed = dataclasses.replace(tiny, name="tiny-renamed", corpus=None)
    assert renamed.corpus is None and renamed == dataclasses.replace(tiny, name="tiny-renamed")  # not compared


def test_exports_leave_the_training_recipe_out_and_loading_restores_it(tmp_path):
    from soundctm.presets import RECIPE_FIELDS
    from soundctm.train.checkpoint import export_model, load_export, read_export_metadata

    assert set(RECIPE_FIELDS) == {"teacher_lr", "student_lr", "corpus"}
    t = build_teacher("tiny-dit")
    path = export_model(tmp_path / "t.safetensors", t, kind="teacher", preset=t.preset, train_config={})
    assert not set(RECIPE_FIELDS) & set(read_export_metadata(path)["preset"])
    loaded = load_export(path).preset
    assert loaded == t.preset and all(getattr(loaded, k) == getattr(t.preset, k) for k in RECIPE_FIELDS)


def test_tiers_carry_their_audio_format_and_what_the_speed_tables_time():
    import dataclasses

    from soundctm.experiments.spec import Run
    from soundctm.experiments.speed import SpeedSystem, SpeedTable
    from soundctm.experiments.tier import PAPER, TINY
    from soundctm.presets import PAPER_AUDIO, TINY_AUDIO

    assert (TINY.audio, PAPER.audio) == (TINY_AUDIO, PAPER_AUDIO)
    assert (TINY.speed_models, PAPER.speed_models) == ("trained", "paper-archs")
    run = Run("student", "dit", seeds=(0,), teacher=Run("teacher", "dit"))
    table = SpeedTable("t", "t", (SpeedSystem("x", "x", run, "ctm", 5.0, "soundctm-dit-1b"),))
    assert table.model_runs(TINY) == (run,) and table.model_runs(PAPER) == ()
    # the field decides, whatever the tier is called
    assert table.model_runs(dataclasses.replace(PAPER, name="other")) == ()
    assert table.model_runs(dataclasses.replace(TINY, name="paper")) == (run,)
    with pytest.raises(ValueError, match="speed_models"):
        dataclasses.replace(TINY, speed_models="random")
