"""`soundctm generate` / `soundctm refine` through the real CLI entry point, with the committed tiny
student, VAE and text encoder (soundctm/assets/tiny/, `soundctm.paths.committed_tiny_dir()`)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from soundctm.cli import main
from soundctm.nn.vae import log_mel
from soundctm.paths import committed_tiny_dir

REPO = Path(__file__).resolve().parent.parent
CKPT = committed_tiny_dir()
FILES = {"student": CKPT / "student-tiny-dit.safetensors", "vae": CKPT / "vae.safetensors",
         "text_encoder": CKPT / "clap.safetensors"}
SR, N_SAMPLES = 16000, 128 * 256  # the tiny VAE: 16 kHz, latent length 128, hop 256

pytestmark = [pytest.mark.usefixtures("one_thread")]


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _gen(out: Path, caption: str = "heavy rain falls", *args: str) -> list[Path]:
    assert main(["generate", caption, "--out", str(out), *args]) == 0
    return sorted(out.glob("*.json"))


def _audio(sidecar: Path) -> np.ndarray:
    side = json.loads(sidecar.read_text())
    wav, sr = sf.read(str(sidecar.parent / side["audio"]), dtype="float32")
    assert sr == side["sample_rate"]
    return wav


def test_generate_writes_wav_and_sidecar(tmp_path, capsys):
    sides = _gen(tmp_path, "a church bell rings twice", "-n", "3", "--seed", "7", "--steps", "2", "--omega", "4",
                 "--nu", "1", "--gamma", "0")
    out = capsys.readouterr().out
    assert sum(line.startswith(f"[{i}/3]") for line in out.splitlines() for i in (1, 2, 3)) == 3
    assert len(sides) == 3
    hashes = {role: _sha(p) for role, p in FILES.items()}
    wavs = []
    for i, p in enumerate(sorted(sides, key=lambda p: json.loads(p.read_text())["seed"])):
        side = json.loads(p.read_text())
        assert side["format"] == "soundctm-candidate"
        assert side["caption"] == "a church bell rings twice"
        assert side["seed"] == 7 + i and side["candidate_index"] == i and side["refined_from"] is None
        st = side["settings"]
        assert (st["steps"], st["omega"], st["nu"], st["gamma"]) == (2, 4.0, 1.0, 0.0)
        assert len(st["sigmas"]) == 3 and st["sigmas"][0] == pytest.approx(80.0)
        assert side["sample_rate"] == SR and side["num_samples"] == N_SAMPLES
        for role, h in hashes.items():
            assert side["checkpoints"][role]["sha256"] == h
        info = sf.info(str(p.parent / side["audio"]))
        assert (info.samplerate, info.frames, info.channels) == (SR, N_SAMPLES, 1)
        assert side["audio_sha256"] == _sha(p.parent / side["audio"])
        wavs.append(_audio(p))
    # each WAV is the clip the library makes for its seed (z_T from the seed, Algorithm 1, VAE decode), so a
    # silent or near-silent candidate is the model's output, not the command's: the tiny student makes some
    assert all(np.isfinite(w).all() for w in wavs)
    want = _library_clips("a church bell rings twice", [7, 8, 9], steps=2, omega=4.0, nu=1.0)
    for w, x in zip(wavs, want):
        np.testing.assert_allclose(w, x, atol=2 / 32767)  # the WAV is 16-bit PCM
    assert not np.allclose(wavs[0], wavs[1], atol=1e-3) and not np.allclose(wavs[0], wavs[2], atol=1e-3)
    assert max(float(w.std()) for w in wavs) > 1e-3  # not all silent


@torch.no_grad()
def _library_clips(caption: str, seeds: list[int], *, steps: int, omega: float, nu: float) -> list[np.ndarray]:
    from soundctm.edm import SIGMA_MAX
    from soundctm.nn.text import Conditioner, get_text_encoder
    from soundctm.nn.vae import AudioAutoencoder
    from soundctm.rng import prior_noise
    from soundctm.sampling import karras_steps, sample
    from soundctm.train.checkpoint import load_export

    student = load_export(FILES["student"])
    vae = AudioAutoencoder.load(FILES["vae"]).eval()
    cond = Conditioner.for_model(get_text_encoder("tiny-clap", path=FILES["text_encoder"]).eval(), student)
    out = []
    for seed in seeds:
        z_T = prior_noise([seed], tuple(student.latent_shape), SIGMA_MAX)
        z0 = sample(student, z_T, sigmas=karras_steps(steps), cond=cond([caption]), uncond=cond.uncond,
                    omega=omega, nu=nu, gamma=0.0)
        out.append(vae.decode(z0)[0, 0].numpy())
    return out


def test_same_seed_same_audio_and_noise_per_seed(tmp_path, capsys):
    a = _gen(tmp_path / "a", "a police siren wails", "-n", "2", "--seed", "3")
    b = _gen(tmp_path / "b", "a police siren wails", "-n", "2", "--seed", "3")
    c = _gen(tmp_path / "c", "a police siren wails", "-n", "1", "--seed", "4")  # = candidate 1 of a
    assert [p.name for p in a] == [p.name for p in b]
    for pa, pb in zip(a, b):
        assert np.array_equal(_audio(pa), _audio(pb))
    assert np.array_equal(_audio(a[1]), _audio(c[0]))
    assert not np.allclose(_audio(a[0]), _audio(a[1]))
    # gamma > 0 draws its noise from the candidate's seed too
    g1 = _gen(tmp_path / "g1", "a police siren wails", "--seed", "3", "-n", "1", "--steps", "3", "--gamma", "1")
    g2 = _gen(tmp_path / "g2", "a police siren wails", "--seed", "3", "-n", "1", "--steps", "3", "--gamma", "1")
    assert np.array_equal(_audio(g1[0]), _audio(g2[0]))


def test_refine_same_steps_reproduces_the_candidate(tmp_path, capsys):
    (cand,) = _gen(tmp_path, "an engine hums", "-n", "1", "--seed", "5")
    assert main(["refine", str(cand), "--steps", "1", "--out", str(tmp_path / "r")]) == 0
    (ref,) = (tmp_path / "r").glob("*.json")
    side = json.loads(ref.read_text())
    assert side["refined_from"]["sidecar"] == str(cand.resolve())
    assert side["refined_from"]["settings"]["steps"] == 1
    assert side["seed"] == 5 and side["caption"] == "an engine hums" and side["settings"]["gamma"] == 0.0
    assert np.array_equal(_audio(ref), _audio(cand))  # same z_T, same settings -> the same clip


def _mel(x: np.ndarray) -> torch.Tensor:
    return log_mel(torch.from_numpy(x).float()[None, None], SR, 1024, 64)[0]


def mel_l1(a, b) -> float:
    """Mean |log10 mel(a) - log10 mel(b)|."""
    return float((_mel(a) - _mel(b)).abs().mean())


def mel_corr(a, b) -> float:
    """1 - Pearson correlation of the log-mel spectrograms (insensitive to a global level change)."""
    fa, fb = (_mel(x).flatten() for x in (a, b))
    fa, fb = fa - fa.mean(), fb - fb.mean()
    return 1.0 - float((fa @ fb) / (fa.norm() * fb.norm()))


CAPTIONS = ["heavy rain falls", "a church bell rings twice", "a police siren wails", "an engine hums",
            "footsteps pass by"]


def test_refine_keeps_the_candidates_content(tmp_path, capsys):
    """Expectation independent of the code: refining candidate A (16 steps, gamma = 0, A's z_T) gives a
    clip nearer to A's 1-step audio than to candidate B's (another seed), for both seeds of a pair and
    over several captions. The tiny student's 16-step clip moves far from its 1-step clip, so single
    pairs can flip under the level-sensitive distance; the means must separate clearly."""
    rows = []
    for k, cap in enumerate(CAPTIONS):
        sides = _gen(tmp_path / str(k), cap, "-n", "2", "--seed", "0", "--steps", "1")
        one = {json.loads(p.read_text())["seed"]: p for p in sides}
        for own, other in ((0, 1), (1, 0)):
            out = tmp_path / f"{k}-r{own}"
            assert main(["refine", str(one[own]), "--steps", "16", "--out", str(out)]) == 0
            (ref,) = out.glob("*.json")
            assert json.loads(ref.read_text())["settings"]["gamma"] == 0.0
            r, a, b = _audio(ref), _audio(one[own]), _audio(one[other])
            rows.append((cap, own, mel_l1(r, a), mel_l1(r, b), mel_corr(r, a), mel_corr(r, b)))
    d = np.array([row[2:] for row in rows])
    with capsys.disabled():
        print("\nrefined(16 steps) vs own / other 1-step candidate:")
        for cap, own, *v in rows:
            print(f"  {cap!r:30s} seed {own}: mel-L1 {v[0]:.3f} / {v[1]:.3f}   mel-corr {v[2]:.3f} / {v[3]:.3f}")
        print(f"  mean: mel-L1 {d[:, 0].mean():.3f} / {d[:, 1].mean():.3f}   "
              f"mel-corr {d[:, 2].mean():.3f} / {d[:, 3].mean():.3f}")
    assert d[:, 0].mean() < 0.9 * d[:, 1].mean()
    assert d[:, 2].mean() < 0.6 * d[:, 3].mean()
    assert (d[:, 2] < d[:, 3]).sum() >= 8 and (d[:, 0] < d[:, 1]).sum() >= 6  # of 10


@pytest.fixture(scope="module")
def candidate(tmp_path_factory):
    out = tmp_path_factory.mktemp("cand")
    assert main(["generate", "heavy rain falls", "-n", "1", "--out", str(out)]) == 0
    return next(out.glob("*.json"))


def _bad_cases(tmp: Path, cand: Path):
    notjson = tmp / "x.json"
    notjson.write_bytes(b"\x80\x81 not json")
    other = tmp / "other.json"
    other.write_text(json.dumps({"caption": "x", "seed": 0}))
    tampered = tmp / "tampered.json"
    side = json.loads(cand.read_text())
    side["checkpoints"]["student"]["sha256"] = "0" * 64
    tampered.write_text(json.dumps(side))
    junk = tmp / "junk.safetensors"
    junk.write_bytes(b"garbage")
    return {
        "empty caption": ["generate", ""],
        "blank caption": ["generate", "   "],
        "missing checkpoint": ["generate", "rain", "--checkpoint", str(tmp / "nope.safetensors")],
        "garbage checkpoint": ["generate", "rain", "--checkpoint", str(junk)],
        "vae as student": ["generate", "rain", "--checkpoint", str(FILES["vae"])],
        "teacher as student": ["generate", "rain", "--checkpoint", str(CKPT / "teacher-tiny-dit.safetensors")],
        "missing vae": ["generate", "rain", "--vae", str(tmp / "nope.safetensors")],
        "steps 0": ["generate", "rain", "--steps", "0"],
        "steps not int": ["generate", "rain", "--steps", "two"],
        "gamma > 1": ["generate", "rain", "--gamma", "1.5"],
        "gamma < 0": ["generate", "rain", "--gamma", "-0.1"],
        "n 0": ["generate", "rain", "-n", "0"],
        "refine missing sidecar": ["refine", str(tmp / "nope.json")],
        "refine not json": ["refine", str(notjson)],
        "refine other json": ["refine", str(other)],
        "refine wav": ["refine", str(cand.with_suffix(".wav"))],
        "refine hash mismatch": ["refine", str(tampered)],
        "refine other checkpoint": ["refine", str(cand), "--checkpoint", str(CKPT / "teacher-tiny-dit.safetensors")],
        "refine steps 0": ["refine", str(cand), "--steps", "0"],
        "refine gamma > 1": ["refine", str(cand), "--gamma", "2"],
    }


def test_bad_input_one_line_error(tmp_path, candidate, capsys):
    for name, argv in _bad_cases(tmp_path, candidate).items():
        rc = main(argv)
        cap = capsys.readouterr()
        lines = cap.err.strip().splitlines()
        assert rc != 0, name
        assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in cap.err, (name, cap.err)
    assert not list(tmp_path.glob("*.wav"))


def test_every_missing_model_file_is_named_in_one_line(tmp_path, candidate, capsys, monkeypatch):
    """Default files absent (an install without its models): generate, refine, control and extend name all
    three in one error line, exit 2, before writing anything."""
    from soundctm import generate
    from soundctm.commands import apps

    gone = {"DEFAULT_STUDENT": tmp_path / "gone" / "s.safetensors", "DEFAULT_VAE": tmp_path / "gone" / "v.safetensors",
            "DEFAULT_TEXT_ENCODER": tmp_path / "gone" / "t.safetensors"}
    for mod in (generate, apps):
        for name, path in gone.items():
            monkeypatch.setattr(mod, name, path)
    side = json.loads(candidate.read_text())
    for role in side["checkpoints"]:  # the recorded files moved away too: refine falls back to the defaults
        side["checkpoints"][role]["path"] = str(tmp_path / "moved" / f"{role}.safetensors")
    moved = tmp_path / "moved.json"
    moved.write_text(json.dumps(side))
    sf.write(tmp_path / "in.wav", np.zeros(SR, np.float32), SR)
    out = tmp_path / "out"
    cases = {"generate": ["generate", "rain", "--out", str(out)],
             "refine": ["refine", str(moved), "--out", str(out)],
             "control": ["control", "rain", "--intensity", "peak", "--out", str(out)],
             "extend": ["extend", str(tmp_path / "in.wav"), "--cutoff", "1000", "--out", str(out)]}
    for name, argv in cases.items():
        rc = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1, (name, err)
        assert all(str(p) in err[0] for p in gone.values()), (name, err)
    explicit = ["generate", "rain", "--checkpoint", str(tmp_path / "a.safetensors"), "--vae",
                str(tmp_path / "b.safetensors"), "--out", str(out)]
    assert main(explicit) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "a.safetensors") in err[0] and str(tmp_path / "b.safetensors") in err[0]
    assert str(gone["DEFAULT_TEXT_ENCODER"]) in err[0]
    assert not out.exists() or not list(out.rglob("*.wav"))


def test_help_explains_the_loop(capsys):
    for cmd in ("generate", "refine"):
        assert main([cmd, "--help"]) == 0
        out = " ".join(capsys.readouterr().out.lower().split())
        assert "same z_t" in out and "--steps" in out and "--checkpoint" in out and "refined_from" in out
    assert main(["--help"]) == 0
    assert "refine" in capsys.readouterr().out


def test_subprocess_error_has_no_traceback():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "soundctm.cli", "generate", "rain", "--gamma", "3"], capture_output=True,
                       text=True, env=env, cwd=REPO, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == "soundctm generate: error: --gamma must be in [0, 1], got 3.0"
