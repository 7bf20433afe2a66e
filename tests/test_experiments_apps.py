"""Application rows through the experiments runner on a tiny configuration (3 test clips, random-weight tiny
models, a micro VAE): guidance / DITTO-2 / bandwidth-extension rows and the low-passed source, the per-item
metric families (intensity MSE, LSD) against direct recomputation, their bootstrap intervals and claims with
the decoded-zeros self-test, the shared DITTO-2 optimisation, caching, and the figures."""

import dataclasses
from argparse import Namespace

import numpy as np
import pytest
import torch
from conftest import randomize_

from soundctm.apps.intensity import CURVES, target_curve
from soundctm.experiments import applications as A
from soundctm.experiments.artifacts import GENERATION_CODE, generation_code
from soundctm.experiments.runner import Runner
from soundctm.experiments.spec import Claim, Row, Run, Table
from soundctm.experiments.tier import Components, Tier, Unit
from soundctm.metrics import functional as Fm
from soundctm.metrics.indomain import TinyClapEmbedder
from soundctm.nn.text import TinyCLAP
from soundctm.nn.vae import AudioAutoencoder, vae_config
from soundctm.presets import build_student, build_teacher
from soundctm.train.checkpoint import export_model

pytestmark = pytest.mark.usefixtures("one_thread")

SR, N = 16000, 32768
TEACHER = Run("teacher", "dit")
STUDENT = Run("student", "dit", seeds=(0, 1), teacher=TEACHER)


def _tier(root):
    def load(cache=None):
        torch.manual_seed(0)
        vae = AudioAutoencoder(dataclasses.replace(vae_config("tiny-stft"), encoder_dim=32, decoder_dim=32,
                                                   encoder_blocks=1, decoder_blocks=2)).eval()
        caps = [["a dog barks"], ["rain falls"], ["a bell rings"]]
        clap = TinyCLAP(sorted({w for c in caps for w in c[0].split()})).eval()
        rng = np.random.default_rng(0)
        t = np.arange(N) / SR
        units = [Unit(f"u{i}", (0.2 * np.exp(-((t - 0.5 - 0.4 * i) ** 2) / 0.05) * rng.normal(size=N)
                                + 0.05 * np.sin(2 * np.pi * (300 + 200 * i) * t)).astype(np.float32), caps[i])
                 for i in range(3)]
        emb = TinyClapEmbedder(clap)
        return Components(SR, units, vae, clap, {"fd": emb, "clap": emb}, {"test": "apps"}, None)

    def build(run, teacher_export, cache=None):
        (seed,) = run.seeds
        path = root / f"{run.kind}-{seed}.safetensors"
        if not path.exists():
            teacher = randomize_(build_teacher("tiny-dit"), 0, scale=0.05)
            model = teacher if run.kind == "teacher" else randomize_(
                build_student("tiny-dit", teacher=teacher), 10 + seed, scale=0.05)
            export_model(path, model, kind=run.kind, preset=model.preset, train_config={})
        return path

    return Tier("apptest", load, build, captions_per_unit=1, samples_per_caption=2, n_boot=20,
                presets={"dit": "tiny-dit"})


def _table():
    st = dict(run=STUDENT, steps=2, omega=3.5, nu=2.0)
    rows = (Row("default", **st), Row("guidance", sampler="guidance", app={"eta": 0.3}, **st),
            Row("ditto-0", sampler="ditto", app={"iterations": 3}, **st),
            Row("ditto-02", sampler="ditto", gamma=0.2, app={"iterations": 3}, **st),
            Row("lowpass", source="lowpass"), Row("bwe-2", sampler="bwe", run=STUDENT, steps=2, omega=3.5),
            Row("zeros", source="zeros"))
    claims = (Claim("C7", "guidance lowers the intensity MSE", "improves", "intensity-mse", "default", "guidance",
                    subject="guidance"),
              Claim("C8", "extension lowers LSD", "improves", "lsd", "lowpass", "bwe-2", subject="bwe-2"))
    return Table("apps", "apps", rows, metrics=("intensity-mse", "lsd", "clap"), claims=claims,
                 figures=(A.intensity_figure, A.bwe_figure))


def _ideal_lowpass(x, cutoff):
    spec = np.fft.rfft(x.astype(np.float64))
    spec[np.fft.rfftfreq(len(x), 1 / SR) > cutoff] = 0
    return np.fft.irfft(spec, len(x))


def test_application_rows_per_item_metrics_claims_and_caching(tmp_path, monkeypatch):
    calls = []
    real = A.optimize_z_T
    monkeypatch.setattr(A, "optimize_z_T", lambda *a, **k: calls.append(1) or real(*a, **k))
    tier, table = _tier(tmp_path), _table()
    runner = Runner(tier, tmp_path / "cache", store=tmp_path / "store", log=lambda *a: None, workers=1)
    res = runner.run(table)
    assert res.columns == {"intensity-mse": "intensity MSE [dB²]", "lsd": "LSD", "clap": "CLAP[tiny-clap]"}
    assert len(calls) == 2  # one optimisation per model (2 training seeds), shared by the gamma 0 and 0.2 rows

    unit, _, _ = runner.items()
    f = 1 + int(np.ceil((N - 1024) / 256))
    audio = {r.name: runner.audio(r)[0] for r in table.rows}
    for r in table.rows:
        wavs = audio[r.name]
        mse = [Fm.intensity_mse(Fm.intensity_curve(w, SR, 1024, 256), target_curve(CURVES[i % 6], f))
               for i, w in enumerate(wavs)]
        lsd = [Fm.lsd(runner.units[u].audio, w) for u, w in zip(unit, wavs)]
        d = res.dists[r.name]
        assert d["intensity-mse"].value == pytest.approx(np.mean(mse), rel=1e-9), r.name
        assert d["lsd"].value == pytest.approx(np.mean(lsd), rel=1e-9), r.name
        lo, hi = d["lsd"].interval()
        assert lo <= hi and len(d["lsd"].samples) == 20

    cut = 3000 * SR / 44100  # the paper's 3 kHz at 44.1 kHz, the same share of the band at 16 kHz
    for i, u in enumerate(unit):
        np.testing.assert_allclose(audio["lowpass"][i], _ideal_lowpass(runner.units[u].audio, cut), atol=1e-6)
        # the extension keeps the observed band and adds a band above it
        np.testing.assert_allclose(_ideal_lowpass(audio["bwe-2"][i], cut), audio["lowpass"][i], atol=1e-5)
        assert np.abs(audio["bwe-2"][i] - audio["lowpass"][i]).max() > 1e-4
    assert not np.allclose(audio["guidance"][0], audio["default"][0])
    assert not np.allclose(audio["ditto-0"][0], audio["ditto-02"][0])  # gamma = 0.2 adds noise
    assert res.dists["guidance"]["intensity-mse"].value < res.dists["default"]["intensity-mse"].value

    v = {x.claim: x for x in res.verdicts}
    assert set(v) == {"C7", "C8"} and all(x.self_test is not None for x in v.values())
    assert v["C8"].estimate == pytest.approx(res.dists["lowpass"]["lsd"].value - res.dists["bwe-2"]["lsd"].value)

    # a second runner on the same store reads every artifact (no model is sampled again)
    assert len(list((tmp_path / "store").glob("item-*.npy"))) == 2 * len(table.rows)
    monkeypatch.setattr(A, "app_latents", lambda *a, **k: pytest.fail("app latents were not cached"))
    again = Runner(tier, tmp_path / "cache", store=tmp_path / "store", log=lambda *a: None, workers=1).run(table)
    for r in table.rows:
        assert again.dists[r.name]["lsd"].value == res.dists[r.name]["lsd"].value


def test_figures_and_plain_rows_keep_their_artifact_keys(tmp_path):
    pytest.importorskip("matplotlib")
    from soundctm.experiments.main import run_table

    tier, table = _tier(tmp_path), _table()
    runner = Runner(tier, tmp_path / "cache", store=tmp_path / "store", log=lambda *a: None, workers=1)
    out = tmp_path / "out"
    rec = run_table(table, Namespace(out=str(out), seed=0), runner)
    assert {c["claim"] for c in rec["claims"]} == {"C7", "C8"}
    for name in ("apps_intensity.png", "apps_spectrograms.png", "apps.md", "apps.json"):
        assert (out / name).stat().st_size > 1000, name
    assert (out / "apps_intensity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # rows without application options hash exactly as before
    plain = Row("s", run=STUDENT, steps=2)
    assert "app" not in plain.generation_settings() and generation_code(plain) == GENERATION_CODE
    assert generation_code(table.row("guidance")) == GENERATION_CODE + A.APP_CODE
    with pytest.raises(ValueError, match="unknown guidance options"):
        A.app_options(Row("g", run=STUDENT, steps=2, sampler="guidance", app={"rho": 1.0}))
    with pytest.raises(ValueError, match="does not fit"):
        Row("g", run=TEACHER, steps=2, sampler="guidance")
