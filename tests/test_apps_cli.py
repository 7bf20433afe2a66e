"""`soundctm control` and `soundctm extend` on the committed tiny models, their errors, and the Table 5 / 14
declarations (in the registry, `--help`, on the UNet student)."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundctm.cli import main as cli_main
from soundctm.experiments import Items, cli, get_table
from soundctm.experiments.catalog import UNET_STUDENT
from soundctm.metrics import functional as Fm

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parent.parent


def test_control_writes_guided_and_default_clips_and_a_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    rc = cli_main(["control", "a dog barks", "--intensity", "rising", "--steps", "4", "--seed", "3",
                   "--out", str(tmp_path)])
    assert rc == 0, capsys.readouterr().err
    stem = tmp_path / "a-dog-barks-rising-seed3-4step"
    side = json.loads(stem.with_suffix(".json").read_text())
    for name in (side["audio"]["guided"], side["audio"]["default"], side["plot"]):
        assert (tmp_path / name).stat().st_size > 1000
    guided, sr = sf.read(tmp_path / side["audio"]["guided"])
    # the recorded MSE is the metric's on the written audio, and guidance moved it toward the target
    c = Fm.intensity_curve(guided, sr)
    assert Fm.intensity_mse(c, np.array(side["target_db"])) == pytest.approx(side["intensity_mse_db2"]["guided"],
                                                                             rel=1e-3, abs=1e-3)
    assert side["intensity_mse_db2"]["guided"] < 0.5 * side["intensity_mse_db2"]["default"]
    assert "intensity MSE" in capsys.readouterr().out


def test_extend_resamples_says_so_and_keeps_the_observed_band(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from soundctm.apps.bwe import lowpass

    sr_in = 44100
    t = np.arange(int(2.5 * sr_in)) / sr_in
    rng = np.random.default_rng(0)
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.normal(size=len(t))
    sf.write(tmp_path / "in.wav", np.stack([x, 0.5 * x], 1), sr_in)
    rc = cli_main(["extend", str(tmp_path / "in.wav"), "--cutoff", "1000", "--steps", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "averaged to mono" in out and "resampled from 44100 Hz to the model's 16000 Hz" in out
    ext, sr = sf.read(tmp_path / "in-extended-2step.wav")
    low, _ = sf.read(tmp_path / "in-lowpassed-1000Hz.wav")
    assert sr == 16000 and len(ext) == len(low) == int(round(2.5 * 16000))
    assert (tmp_path / "in-extended-2step.png").stat().st_size > 1000
    # below the cut-off the extension is the observation (away from the clip's ends); above it, new content
    inner = slice(2000, len(ext) - 2000)
    np.testing.assert_allclose(lowpass(ext, 1000.0, sr)[inner], low[inner], atol=2e-3)
    assert np.std((ext - lowpass(ext, 1000.0, sr))[inner]) > 1e-3


def test_bad_input_is_one_error_line(tmp_path, capsys):
    (tmp_path / "bad.wav").write_text("not audio")
    sf.write(tmp_path / "ok.wav", np.zeros(16000), 16000)
    cases = [(["extend", str(tmp_path / "ok.wav"), "--cutoff", "9000"], "Nyquist"),
             (["extend", str(tmp_path / "ok.wav"), "--cutoff", "0"], "> 0 Hz"),
             (["extend", str(tmp_path / "bad.wav"), "--cutoff", "1000"], "cannot read"),
             (["extend", str(tmp_path / "none.wav"), "--cutoff", "1000"], "not found"),
             (["control", "  ", "--intensity", "peak"], "caption is empty"),
             (["control", "rain", "--intensity", "zigzag"], "invalid choice"),
             (["control", "rain", "--intensity", "dip", "--checkpoint", str(tmp_path / "x.safetensors")],
              "checkpoint not found")]
    for argv, msg in cases:
        assert cli_main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], (argv, err)



def test_tables_5_and_14_are_declarations_over_the_unet_student(capsys):
    t5, t14 = get_table("5"), get_table("14")
    for t, module in ((t5, "table5.py"), (t14, "table14.py")):
        assert len((REPO / "soundctm" / "experiments" / "tables" / module).read_text().splitlines()) <= 70
        assert {r.run for r in t.rows if r.run is not None} == {UNET_STUDENT}
        assert "zeros" in {r.name for r in t.rows} and t.figures
        assert t.items == Items(samples_per_caption=1)  # tiny: 120 clips x 5 captions = 600 items
        with pytest.raises(SystemExit) as e:  # what `python reproduce/tableN.py --help` runs
            cli(t, ["--help"])
        assert e.value.code == 0 and "--tier" in capsys.readouterr().out
    assert t5.metrics == ("intensity-mse", "fd", "clap") and t14.metrics == ("lsd",)
    assert {r.sampler for r in t5.rows if r.run} == {"ctm", "ditto", "guidance"}
    assert all(r.steps == 16 for r in t5.rows if r.run)
    assert {r.steps for r in t14.rows if r.sampler == "bwe" and r.run} == {4, 8}
    # every claim on the control methods' MSE and on LSD has a subject for the decoded-zeros self-test; the cost
    # claims (a system worse than default) have none
    for c in t5.claims + t14.claims:
        assert (c.subject is None) == ("cost" in c.id), c.id
