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
