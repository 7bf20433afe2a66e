"""Paired distances (experiments.pairs): CLAP-LPAPS and the mel distance against independent computations
(forward hooks + numpy, a numpy STFT and filterbank, closed forms), pair rows through the runner on a tiny
configuration (3 test clips, random-weight tiny models, a micro VAE) with their bootstrap, std, claims and
the decoded-zeros self-test, caching, the report; and the seeded gamma noise of stochastic rows."""

import dataclasses
import importlib
import json
import math
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomize_
from scripts import REPRO

from soundctm.experiments import pairs as P
from soundctm.experiments.generation import gamma_generators, row_grid
from soundctm.experiments.runner import Runner, settings_hash
from soundctm.experiments.spec import Claim, Row, Run, Table
from soundctm.experiments.stats import Bootstrap
from soundctm.experiments.tables import get_table
from soundctm.experiments.tier import Components, Tier, Unit
from soundctm.metrics.indomain import TinyClapEmbedder
from soundctm.nn.text import TinyCLAP
from soundctm.nn.vae import AudioAutoencoder, vae_config
from soundctm.presets import build_student, build_teacher
from soundctm.rng import derive_seed, prior_noise
from soundctm.sampling import sample
from soundctm.train.checkpoint import export_model, load_export

pytestmark = pytest.mark.usefixtures("one_thread")

SR, N = 16000, 32768  # the tiny DiT's latents [16, 128] decode to 32768 samples
TEACHER = Run("teacher", "dit")
STUDENT = Run("student", "dit", seeds=(0, 1), teacher=TEACHER)


def _clap(words=("a", "dog", "barks", "rain", "falls", "bell", "rings")):
    torch.manual_seed(3)
    return randomize_(TinyCLAP(sorted(words)), 3, scale=0.1).eval()


def _noise(seed, n=N, scale=0.3):
    return (scale * np.random.default_rng(seed).normal(size=n)).astype(np.float32)


# ------------------------------------------------------------------------------------------- CLAP-LPAPS
def _lpaps_by_hooks(clap, x, y):
    """CLAP-LPAPS from forward hooks on the tower's GELUs and last conv, computed in numpy (float64)."""
    net = clap.audio.net
    taps = [m for m in net if isinstance(m, torch.nn.GELU)] + [list(net)[-1]]
    assert len(taps) == 4

    def acts(w):
        got = []
        hooks = [m.register_forward_hook(lambda mod, i, o: got.append(o.detach().double().numpy())) for m in taps]
        try:
            with torch.no_grad():
                clap.audio(torch.from_numpy(np.stack(w))[:, None])
        finally:
            for h in hooks:
                h.remove()
        return got

    total = 0.0
    for fa, fb in zip(acts(x), acts(y)):  # [B, C, T]
        na = fa / (np.sqrt((fa ** 2).sum(axis=1, keepdims=True)) + 1e-10)
        nb = fb / (np.sqrt((fb ** 2).sum(axis=1, keepdims=True)) + 1e-10)
        total = total + ((na - nb) ** 2).sum(axis=1).mean(axis=1)
    return total


def test_clap_lpaps_of_the_tiny_tower_against_hooks_and_numpy():
    clap = _clap()
    net = P.TinyClapStages(clap)
    x = [_noise(0), _noise(1, scale=0.05)]
    y = [_noise(2), x[1] * 0.5]  # item 1: the same clip, quieter
    d = P.Fm.lpaps(net(x, SR), net(y, SR)).double().numpy()
    np.testing.assert_allclose(d, _lpaps_by_hooks(clap, x, y), rtol=1e-5)
    assert P.Fm.lpaps(net(x, SR), net(x, SR)).abs().max().item() < 1e-6  # identical clips
    assert d[0] > 1e-3 and 0.0 <= d.min() and d.max() <= 16.0
    # stage shapes: 128 channels; frames halved by the two stride-2 convs
    frames = 1 + N // clap.audio.config.hop
    assert [tuple(f.shape) for f in net(x, SR)] == [(2, 128, frames), (2, 128, (frames + 1) // 2),
                                                    (2, 128, ((frames + 1) // 2 + 1) // 2),
                                                    (2, 128, ((frames + 1) // 2 + 1) // 2)]


class _FixedFeatures:
    """Stands in for LAION-CLAP's `features` (which needs laion_clap and its weights): returns given
    [B, L, C] stage outputs, so the toolkit's arithmetic on them can be checked by hand."""

    def __init__(self, feats):
        self.feats = feats

    def features(self, wavs, sample_rate, normalise=False):
        assert not normalise  # the toolkit feeds CLAP without peak normalisation
        return [f[: len(wavs)] for f in self.feats]

    def settings(self):
        return {"name": "fixed"}


def test_laion_stages_follow_the_toolkit_axis():
    # one stage, B = 1, L = 2 tokens, C = 2 channels: a = [[3, 0], [4, 1]], b = [[0, 0], [1, 1]] ([L, C])
    a = torch.tensor([[[3.0, 0.0], [4.0, 1.0]]])
    b = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])
    ta, tb = P.LaionClapStages(_FixedFeatures([a]))(["x"], 48000), P.LaionClapStages(_FixedFeatures([b]))(["x"], 48000)
    # toolkit: each channel normalised over the tokens: a -> [[.6, 0], [.8, 1]], b -> [[0, 0], [1, 1]];
    # squared differences summed over tokens: channel 0: .36 + .04 = .4, channel 1: 0; mean over channels .2
    assert P.Fm.lpaps(ta, tb).item() == pytest.approx(0.2, abs=1e-6)
    ca = P.LaionClapStages(_FixedFeatures([a]), axis="channels")(["x"], 48000)
    cb = P.LaionClapStages(_FixedFeatures([b]), axis="channels")(["x"], 48000)
    # LPIPS: each token normalised over the channels: a -> [1, 0] (token 0), [4, 1] / sqrt(17) (token 1);
    # b -> token 0 is all zero (stays 0 up to eps), token 1 -> [1, 1] / sqrt(2); per token: 1 and
    # (4 / sqrt(17) - 1 / sqrt(2))^2 + (1 / sqrt(17) - 1 / sqrt(2))^2; mean over the 2 tokens
    t1 = (4 / 17 ** 0.5 - 2 ** -0.5) ** 2 + (1 / 17 ** 0.5 - 2 ** -0.5) ** 2
    assert P.Fm.lpaps(ca, cb).item() == pytest.approx((1.0 + t1) / 2, abs=1e-6)
    with pytest.raises(ValueError, match="axis"):
        P.LaionClapStages(_FixedFeatures([a]), axis="tokens")


# ------------------------------------------------------------------------------------------- mel distance
def _np_mel_fb(sr, n_fft, n_mels):
    mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)
    hz = lambda m: 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    pts = hz(np.linspace(0.0, mel(sr / 2), n_mels + 2))
    fb = np.stack([np.interp(freqs, pts[i:i + 3], [0.0, 1.0, 0.0], left=0.0, right=0.0) for i in range(n_mels)])
    for i in range(n_mels):  # a filter narrower than a bin takes the nearest bin
        if fb[i].sum() == 0:
            fb[i, np.argmin(np.abs(freqs - pts[i + 1]))] = 1.0
    return fb


def _np_log_mel(x, sr, n_fft, n_mels):
    hop = n_fft // 4
    xp = np.pad(x.astype(np.float64), n_fft // 2, mode="reflect")
    n_frames = 1 + (len(xp) - n_fft) // hop
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    frames = np.stack([xp[t * hop:t * hop + n_fft] * win for t in range(n_frames)], axis=1)
    mag = np.abs(np.fft.rfft(frames, axis=0))
    return np.log10(np.maximum(_np_mel_fb(sr, n_fft, n_mels) @ mag, 1e-5))


def test_mel_distance_against_numpy_a_closed_form_and_the_vae_metric():
    from soundctm.train.vae import multiscale_mel_distance

    n = 4096
    t = np.arange(n) / SR
    a = (0.3 * np.sin(2 * np.pi * 440 * t) + _noise(5, n, 0.05)).astype(np.float32)
    b = (_noise(6, n, 0.2) * np.linspace(0, 1, n)).astype(np.float32)
    want = np.mean([np.abs(_np_log_mel(a, SR, w, m) - _np_log_mel(b, SR, w, m)).mean()
                    for w, m in zip(P.MEL_WINDOWS, P.MEL_BINS)])
    got = P.mel_distance(torch.from_numpy(a)[None], torch.from_numpy(b)[None], SR)
    assert got.item() == pytest.approx(want, rel=2e-4)
    # a gain of 2 moves every log10 mel magnitude by log10 2 (loud white noise: nothing at the 1e-5 floor)
    w = _noise(7, n, 0.5)
    g = P.mel_distance(torch.from_numpy(w)[None], torch.from_numpy(2 * w)[None], SR)
    assert g.item() == pytest.approx(math.log10(2.0), rel=1e-4)
    assert P.mel_distance(torch.from_numpy(w)[None], torch.from_numpy(w)[None], SR).item() == 0.0
    # the VAE's reconstruction metric, clip by clip
    x, y = torch.from_numpy(np.stack([a, w]))[:, None], torch.from_numpy(np.stack([b, a]))[:, None]
    np.testing.assert_allclose(P.mel_distance(x, y, SR).numpy(), multiscale_mel_distance(x, y, SR).numpy(), rtol=1e-6)


# ------------------------------------------------------------------------------------------- through the runner
def _tier(root):
    def load(cache=None):
        torch.manual_seed(0)
        vae = AudioAutoencoder(dataclasses.replace(vae_config("tiny-stft"), encoder_dim=32, decoder_dim=32,
                                                   encoder_blocks=1, decoder_blocks=2)).eval()
        caps = [["a dog barks"], ["rain falls"], ["a bell rings"]]
        clap = _clap()
        t = np.arange(N) / SR
        units = [Unit(f"u{i}", (0.2 * np.exp(-((t - 0.5 - 0.4 * i) ** 2) / 0.05) * np.random.default_rng(i).normal(
            size=N) + 0.05 * np.sin(2 * np.pi * (300 + 200 * i) * t)).astype(np.float32), caps[i]) for i in range(3)]
        emb = TinyClapEmbedder(clap)

        def retake(u, take):  # another take: the clip with independent noise
            return (units[u].audio + _noise(100 * u + take, N, 0.01)).astype(np.float32)

        return Components(SR, units, vae, clap, {"fd": emb, "clap": emb}, {"test": "pairs", "vae": vae.checksum()},
                          retake)

    def build(run, teacher_export, cache=None):
        (seed,) = run.seeds
        key = settings_hash(run.settings())  # (every run its own random model, on the tiny DiT whatever its backbone)
        path = root / f"{run.kind}-{key}.safetensors"
        if not path.exists():
            teacher = randomize_(build_teacher("tiny-dit"), 0, scale=0.05)
            model = teacher if run.kind == "teacher" else randomize_(
                build_student("tiny-dit", teacher=teacher), 10 + seed + int(key[:6], 16), scale=0.05)
            export_model(path, model, kind=run.kind, preset=model.preset, train_config={})
        return path

    return Tier("pairtest", load, build, captions_per_unit=1, samples_per_caption=2, n_boot=50,
                presets={"dit": "tiny-dit", "unet": "tiny-dit"})


S1, S4 = Row("s1", run=STUDENT, steps=1), Row("s4", run=STUDENT, steps=4)
G4 = Row("s4-g05", run=STUDENT, steps=4, gamma=0.5)


def _table():
    close = P.pair_row("near", S1, S4, label="1 vs 4 steps")
    rows = (P.pair_row("same", S1, S1), close, P.pair_row("far", S1, G4),
            P.pair_row("codec", Row("vae-recon", source="vae-recon"), Row("real-other", source="real-other")),
            P.trivial_pair(close, "zeros-vs-4"))
    claims = (Claim("C", "the same row is far closer to itself than 1 step to 4", "separated", "lpaps", "same", "near",
                    subject="same", trivial="zeros-vs-4"),)
    return Table("pairs", "pairs", rows, metrics=("lpaps", "mel"), claims=claims)


def test_pair_rows_through_the_runner(tmp_path, monkeypatch):
    from soundctm.experiments.main import run_table

    tier, table = _tier(tmp_path), _table()
    runner = Runner(tier, tmp_path / "cache", store=tmp_path / "store", log=lambda *a: None, workers=1)
    out = tmp_path / "out"
    rec = run_table(table, Namespace(out=str(out), seed=0), runner)
    res_d = {r["row"]: r["metrics"] for r in rec["rows"]}
    assert rec["columns"] == {"lpaps": "CLAP-LPAPS[tiny-clap]", "mel": "mel distance"}
    # provenance names the VAE the table was made with (the report flags tables made with different ones)
    assert rec["meta"]["components"]["vae"] == runner.comp.vae.checksum()
    assert json.loads((out / f"{table.name}.json").read_text())["meta"]["components"] == rec["meta"]["components"]

    unit = runner.items()[0]
    net = P.TinyClapStages(runner.comp.embedders["clap"].clap)
    res = runner.run(table)  # (cached: the dists with their bootstrap samples)
    counts = Bootstrap(3, 50, 0).counts()  # the runner's resamples: n_units, the tier's n_boot, seed 0
    audio = {r.name: runner.audio(r)[0] for r in (S1, S4, G4, Row("vae-recon", source="vae-recon"),
                                                  Row("real-other", source="real-other"), Row("zeros", source="zeros"))}
    pairs = {"same": ("s1", "s1"), "near": ("s1", "s4"), "far": ("s1", "s4-g05"), "codec": ("vae-recon", "real-other"),
             "zeros-vs-4": ("zeros", "s4")}
    for name, (a, b) in pairs.items():
        xa, xb = np.stack(audio[a]), np.stack(audio[b])
        lp = np.array([_lpaps_by_hooks(net.clap, [p], [q])[0] for p, q in zip(xa, xb)])
        mel = P.mel_distance(torch.from_numpy(xa), torch.from_numpy(xb), SR).double().numpy()
        m = res_d[name]
        assert m["CLAP-LPAPS[tiny-clap]"]["value"] == pytest.approx(lp.mean(), rel=1e-4, abs=1e-7), name
        assert m["CLAP-LPAPS[tiny-clap]"]["std"] == pytest.approx(lp.std(ddof=1), rel=1e-3, abs=1e-7), name
        assert m["mel distance"]["value"] == pytest.approx(mel.mean(), rel=1e-5, abs=1e-9), name
        assert m["mel distance"]["lo"] <= m["mel distance"]["hi"] and m["mel distance"]["n_boot"] == 50
        # the bootstrap resamples test clips (all items of a drawn clip): each sample is the mean over the
        # resampled items, up to one shift shared by all samples (a bias correction)
        raw = np.array([(c[unit] * mel).sum() / c[unit].sum()
                        for c in counts])
        s = res.dists[name]["mel"].samples
        np.testing.assert_allclose(s - s.mean(), raw - raw.mean(), atol=1e-9)
    assert res_d["same"]["CLAP-LPAPS[tiny-clap]"]["value"] == 0.0 and res_d["same"]["mel distance"]["value"] == 0.0
    assert res_d["far"]["mel distance"]["value"] > 0 and res_d["near"]["mel distance"]["value"] > 0

    (v,) = rec["claims"]
    assert v["supported"] and v["self_test"] is not None and not v["self_test"]["supported"] and not v["broken"]
    md = (out / "pairs.md").read_text()
    assert "(sd " in md and "CLAP-LPAPS[tiny-clap]" in md
    assert "CLAP-LPAPS[tiny-clap] sd" in (out / "pairs.csv").read_text().splitlines()[0]
    assert json.loads((out / "pairs.json").read_text())["rows"][1]["metrics"]["mel distance"]["std"] > 0

    # a second runner reads the cached distances (nothing compared again)
    assert len(list((tmp_path / "store").glob("pair-*.npy"))) == 2 * len(table.rows)
    monkeypatch.setattr(P, "mel_distance", lambda *a, **k: pytest.fail("mel distances were not cached"))
    monkeypatch.setattr(P.Fm, "lpaps", lambda *a, **k: pytest.fail("CLAP-LPAPS was not cached"))
    again = Runner(tier, tmp_path / "cache", store=tmp_path / "store", log=lambda *a: None, workers=1).run(table)
    assert again.dists["near"]["mel"].value == pytest.approx(res_d["near"]["mel distance"]["value"], rel=1e-12)


def test_gamma_noise_is_seeded_per_item(tmp_path):
    """A gamma > 0 row's latents: item i's noise from derive_seed(seed_i, "gamma-noise"), whatever the
    batching and the global RNG (the same as Algorithm 1 run on that item alone)."""
    tier = _tier(tmp_path)
    torch.manual_seed(123)
    z = Runner(tier, tmp_path / "c", store=tmp_path / "s1", log=lambda *a: None, workers=1).latents(G4)
    torch.manual_seed(456)
    runner = Runner(tier, tmp_path / "c", store=tmp_path / "s2", log=lambda *a: None, workers=1)
    assert torch.equal(runner.latents(G4), z)
    unit, caps, seeds = runner.items()
    exports = runner.exports(STUDENT)
    for i in range(len(unit)):
        model = load_export(exports[i % 2], "cpu")
        cond, uncond = runner.conditioning(model, [caps[i]])
        z_T = prior_noise([seeds[i]], tuple(model.latent_shape))
        g = [torch.Generator().manual_seed(derive_seed(seeds[i], "gamma-noise"))]
        want = sample(model, z_T, row_grid(G4), cond, uncond, omega=G4.omega, nu=G4.nu, gamma=0.5, generator=g)
        torch.testing.assert_close(z[i:i + 1], want, rtol=1e-5, atol=1e-5)
    assert gamma_generators([5])[0].initial_seed() == derive_seed(5, "gamma-noise")
    assert not torch.allclose(z, runner.latents(S4))  # the noise changes the samples


def test_pair_declarations_are_validated():
    with pytest.raises(ValueError, match="exactly when"):
        Row("p", source="pair")
    with pytest.raises(ValueError, match="exactly when"):
        Row("p", source="zeros", pair=(S1, S4))
    with pytest.raises(ValueError, match="two Rows"):
        Row("p", source="pair", pair=(S1,))
    with pytest.raises(ValueError, match="have none"):
        P.pair_row("pp", P.pair_row("p", S1, S4), S4)
    with pytest.raises(ValueError, match="not a pair row"):
        P.trivial_pair(S1)
    p = P.pair_row("p", S1, S4)
    assert p.runs() == (STUDENT, STUDENT) and S1.runs() == (STUDENT,) and Row("z", source="zeros").runs() == ()
    assert p.generation_settings()["pair"] == [S1.generation_settings(), S4.generation_settings()]
    assert "pair" not in S1.generation_settings()  # plain rows keep their artifact keys


# ------------------------------------------------------------------------------------------- the declarations



def test_table7_declares_the_papers_rows_claims_and_self_tests():
    t = get_table("7")
    assert get_table("table7") is t and len(t.figures) == 1
    rows = {r.name: r for r in t.rows}
    for g in (0.0, 0.2, 0.5, 1.0):
        one, sixteen = rows[f"gamma-{g:g}"].pair
        assert (one.steps, one.nu, sixteen.steps, sixteen.nu) == (1, 1.0, 16, 5.0)  # Table 3's nu per step count
        assert one.omega == sixteen.omega == 5.0 and one.gamma == sixteen.gamma == g
        assert one.run == sixteen.run and one.run.kind == "student" and one.run.backbone == "dit"
    assert [p.source for p in rows["vae-recon-vs-gt"].pair] == ["vae-recon", "real-other"]
    assert rows["gt-vs-1step"].pair == (Row("real-other", source="real-other"), rows["gamma-0"].pair[0])
    assert rows["zeros-vs-16"].pair == (Row("zeros", source="zeros"), rows["gamma-0"].pair[1])
    for c in t.claims:  # every C4 claim is about the gamma = 0 pair, re-decided with the content-free pair
        assert c.metric == "lpaps" and c.subject == "gamma-0" and c.trivial == "zeros-vs-16"
    assert {c.b for c in t.claims if c.kind == "separated"} == {"gamma-0.2", "gamma-0.5", "gamma-1", "gt-vs-1step"}
    assert rows["gamma-0"].paper_dict() == {"CLAP-LPAPS": 3.34, "CLAP-LPAPS sd": 0.74}


@pytest.mark.slow
def test_table7_and_the_content_table_run_on_a_tiny_configuration(tmp_path):
    from soundctm.experiments.main import run_table

    tier = _tier(tmp_path)  # 2 test clips x 1 caption x 1 sample (20 sampler rows, two figures: ~30 s)
    runner = Runner(tier, tmp_path / "cache", store=tmp_path / "store", log=lambda *a: None, workers=1, n_units=2,
                    samples_per_caption=1)
    for name in ("table7", "content"):
        table = get_table(name)
        out = tmp_path / "out"
        rec = run_table(table, Namespace(out=str(out), seed=0), runner)
        assert len(rec["claims"]) == len(table.claims) and all(v["self_test"] is not None for v in rec["claims"])
        for r in rec["rows"]:  # every row has both distances with an interval and a spread
            for col in ("CLAP-LPAPS[tiny-clap]", "mel distance"):
                m = r["metrics"][col]
                assert m["lo"] <= m["hi"] and m["std"] >= 0 and np.isfinite(m["value"]), (name, r["row"])
        png = out / f"{table.name}_spectrograms.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        assert (out / f"{table.name}.md").read_text().count("(sd ") == len(table.rows) * 2
    rows = json.loads((out / "table7.json").read_text())["rows"]
    t7 = {r["row"]: r["metrics"]["mel distance"]["value"] for r in rows}
    assert min(t7.values()) > 0 and t7["gamma-0"] != t7["gamma-1"]


def test_content_declaration():
    mod = importlib.import_module("soundctm.experiments.tables.content")
    t = mod.TABLE
    assert get_table("content") is t and len(t.figures) == 1
    rows = {r.name: r for r in t.rows}
    for m, (_, run, sampler, omega, nu) in mod.METHODS.items():
        for n in (2, 4, 16):
            one, many = rows[f"{m}-1v{n}"].pair
            assert (one.steps, many.steps) == (1, n) and one.run == many.run == run
            assert one.sampler == many.sampler == sampler and one.omega == many.omega == omega and one.nu == nu
    assert {dict(rows[f"{m}-1v2"].pair[0].run.options).get("objective", "ctm") for m in mod.METHODS} == {
        "ctm", "cd", "lcm"}
    assert rows["soundctm-1v16"].pair[0].gamma == 0.0
    assert len(t.claims) == 12 and all(c.trivial == f"zeros-vs-soundctm-{c.a.split('v')[-1]}" for c in t.claims)
    assert all(rows[c.trivial].pair[1] == rows[c.subject].pair[1] for c in t.claims)


@pytest.mark.parametrize("script", ["table7.py", "content.py"])
def test_scripts_answer_help(script):
    out = subprocess.run([sys.executable, str(REPRO / script), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--tier" in out.stdout and "--samples-per-caption" in out.stdout


@pytest.mark.slow
def test_table7_on_the_committed_tiny_models(tmp_path):
    """Table 7 with the committed tiny models (the seed-0 student; the regression's 24 test clips x 1 caption x
    1 sample) in a fresh store; `pytest -s tests/test_pairs.py -k committed` prints it. The paired C4 claims hold
    and their self-tests fail, and on both distances the rows lie in the order they must: the codec's floor <
    γ = 0 < γ = 1 < the random level (ground truth vs 1-step samples) < decoded zeros vs 16-step samples."""
    import os
    import tempfile

    from soundctm.experiments.catalog import STUDENT
    from soundctm.experiments.regression import committed_tier
    from soundctm.experiments.report import to_markdown
    from soundctm.provenance import provenance

    cache = Path(os.environ.get("SOUNDCTM_TEST_CACHE", Path(tempfile.gettempdir()) / "soundctm-test-cache"))
    one = STUDENT.with_seeds(0)  # the committed student

    def committed(r):
        if r.source == "pair":
            return dataclasses.replace(r, pair=tuple(committed(p) for p in r.pair))
        return dataclasses.replace(r, run=one) if r.run is not None else r

    t7 = get_table("7")
    table = dataclasses.replace(t7, rows=tuple(committed(r) for r in t7.rows), figures=())
    tier = committed_tier()
    runner = Runner(tier, cache, store=tmp_path / "store", log=lambda *a: None, workers=1)
    res = runner.run(table)
    meta = provenance(tier=tier.name, table=table.name, wall_seconds=res.wall_seconds, seed=0,
                      n_units=len(runner.units), captions_per_unit=runner.K, samples_per_caption=runner.S,
                      n_boot=runner.n_boot)
    print(to_markdown(res, meta))
    v = {x.claim: x for x in res.verdicts}
    for g in ("0.2", "0.5", "1"):
        assert v[f"(C4-γ{g}-paired)"].supported and not v[f"(C4-γ{g}-paired)"].broken
    for m in ("lpaps", "mel"):
        d = {r: res.dists[r][m].value for r in res.dists}
        assert d["vae-recon-vs-gt"] < d["gamma-0"] < d["gamma-1"] < d["gt-vs-1step"] < d["zeros-vs-16"], (m, d)
