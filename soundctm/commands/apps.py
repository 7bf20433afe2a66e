"""`soundctm control` (sound-intensity control, Algorithm 3) and `soundctm extend` (bandwidth extension).

    soundctm control "a dog barks" --intensity rising         # guided WAV + the default one + a PNG plot
    soundctm extend input.wav --cutoff 3000                   # low-passed + extended WAVs + a spectrogram PNG

Both load a distilled student export, the VAE and the tiny-clap text encoder from paths (`--checkpoint`,
`--vae`, `--text-encoder`; default: the committed tiny files under soundctm/assets/tiny/), as
`soundctm generate` does. Bad input ends with one error line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from soundctm.apps import plots
from soundctm.apps.bwe import consistency, extend_bandwidth, lowpass
from soundctm.apps.guidance import ETA, guided_sample
from soundctm.apps.intensity import CURVES, IntensityFeature, target_curve
from soundctm.cmdline import MAX_STEPS, finite_float, in_file, out_dir, step_progress, steps_int
from soundctm.edm import SIGMA_MAX
from soundctm.generate import (
    DEFAULT_STUDENT,
    DEFAULT_TEXT_ENCODER,
    DEFAULT_VAE,
    CLIError,
    _checkpoint_args,
    _Parser,
    _run,
    _slug,
    gamma_noise_seed,
    load_models,
)
from soundctm.metrics import functional as Fm
from soundctm.rng import prior_noise
from soundctm.sampling import karras_steps, sample

__all__ = ["control_main", "extend_main", "read_audio"]

# the largest guidance step scale: at eta = 1 one guidance step already moves every element by the current noise
# level t_n (the size of the whole remaining noise), so anything larger only throws the trajectory away
ETA_MAX = 1.0


def _models(a):
    return load_models(a.checkpoint or DEFAULT_STUDENT, a.vae or DEFAULT_VAE, a.text_encoder or DEFAULT_TEXT_ENCODER)


def _finite(name: str, v: float) -> None:
    if not np.isfinite(v):
        raise CLIError(f"{name} must be finite, got {v}")


def _write_wav(path: Path, wav: np.ndarray, sr: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(wav, dtype=np.float32), sr, subtype="FLOAT")
    return path


def _plot(fn, *args, **kw) -> str:
    try:
        return str(fn(*args, **kw))
    except plots.MissingPlotting as e:
        raise CLIError(str(e)) from None


# ------------------------------------------------------------------------------------------------ control


def _control(argv) -> int:
    ap = _Parser(prog="soundctm control", formatter_class=argparse.RawDescriptionHelpFormatter,
                 description="Generate a clip whose loudness follows a target dB curve with loss-based guidance "
                             "(Algorithm 3; soundctm/apps/intensity.py documents the curves), next to the default "
                             "generation from the same z_T.\n\n" + __doc__)
    ap.add_argument("caption", help="the text prompt")
    ap.add_argument("--intensity", required=True, choices=CURVES, help="the target intensity curve")
    ap.add_argument("--steps", type=steps_int, default=16,
                    help=f"sampling steps, 1 to {MAX_STEPS} (default 16, as Table 5)")
    ap.add_argument("--omega", type=finite_float, default=3.5, help="CFG scale fed to the student (default 3.5)")
    ap.add_argument("--nu", type=finite_float, default=2.0, help="nu-sampling weight (default 2.0)")
    ap.add_argument("--gamma", type=float, default=0.0, help="gamma in [0, 1] (default 0: deterministic)")
    ap.add_argument("--eta", type=float, default=ETA,
                    help=f"guidance step scale in [0, {ETA_MAX:g}]: each step's per-element RMS is eta * t_n "
                         f"(default {ETA:g})")
    ap.add_argument("-n", "--num", type=int, default=1, help="number of clips (seeds SEED .. SEED + n - 1)")
    ap.add_argument("--seed", type=int, default=0, help="prior noise seed of the first clip (default 0)")
    ap.add_argument("--out", type=Path, default=Path("soundctm-out"), help="output folder (default ./soundctm-out)")
    _checkpoint_args(ap)
    a = ap.parse_args(argv)
    out_dir(a.out)
    caption = a.caption.strip()
    if not caption:
        raise CLIError("the caption is empty")
    if a.steps < 1 or a.num < 1:
        raise CLIError(f"--steps and -n must be >= 1, got {a.steps} and {a.num}")
    if not 0.0 <= a.gamma <= 1.0:
        raise CLIError(f"--gamma must be in [0, 1], got {a.gamma}")
    for name, v in (("--omega", a.omega), ("--nu", a.nu), ("--eta", a.eta)):
        _finite(name, v)
    if not 0.0 <= a.eta <= ETA_MAX:
        raise CLIError(f"--eta must be in [0, {ETA_MAX:g}], got {a.eta:g}")
    if a.seed < 0 or a.seed + a.num > 2 ** 63:
        raise CLIError(f"--seed must be in [0, 2^63 - n], got {a.seed}")
    m = _models(a)
    st, vae, sr = m.student, m.vae, m.sample_rate
    feature = IntensityFeature(sr)
    n_samples = vae.hop * int(st.latent_shape[1])
    target = target_curve(a.intensity, feature.n_frames(n_samples))
    cond, uncond = m.conditioner([caption]), m.conditioner.uncond
    grid = karras_steps(a.steps)
    decode = lambda z: vae.decode(z)[:, 0]
    for i in range(a.num):
        seed = a.seed + i
        t0 = time.perf_counter()
        z_T = prior_noise([seed], tuple(st.latent_shape), SIGMA_MAX)
        gen = lambda s=seed: torch.Generator().manual_seed(gamma_noise_seed(s))
        opts = dict(omega=a.omega, nu=a.nu, gamma=a.gamma)
        with torch.no_grad():
            plain = decode(sample(st, z_T, grid, cond, uncond, generator=gen(), **opts))[0].numpy()
        with step_progress(a.steps, f"guided sampling, seed {seed}") as progress:
            guided_z = guided_sample(st, z_T, grid, cond, uncond, decode=decode, feature=feature,
                                     target=torch.as_tensor(target[None], dtype=torch.float32), eta=a.eta,
                                     generator=gen(), callback=progress, **opts)
        with torch.no_grad():
            guided = decode(guided_z)[0].numpy()
        stem = f"{_slug(caption)}-{a.intensity}-seed{seed}-{a.steps}step"
        curves = {"default": feature.numpy(plain), "guided": feature.numpy(guided)}
        mse = {k: Fm.intensity_mse(c, target) for k, c in curves.items()}
        paths = [_write_wav(a.out / f"{stem}-guided.wav", guided, sr),
                 _write_wav(a.out / f"{stem}-default.wav", plain, sr)]
        png = _plot(plots.intensity_grid, {"default generation": {a.intensity: [curves["default"]]},
                                           "loss-based guidance": {a.intensity: [curves["guided"]]}},
                    {a.intensity: target}, feature.hop / sr, a.out / f"{stem}.png",
                    title=f'"{caption}": target {a.intensity} (dashed), seed {seed}')
        side = {"caption": caption, "seed": seed, "intensity": a.intensity, "target_db": target.tolist(),
                "settings": {"sampler": "soundctm Algorithm 3 (loss-based guidance)", "steps": a.steps, "eta": a.eta,
                             "sigmas": [float(s) for s in grid], "feature": feature.settings(), **opts},
                "intensity_mse_db2": mse, "audio": {"guided": paths[0].name, "default": paths[1].name},
                "plot": Path(png).name, "checkpoints": m.files}
        (a.out / f"{stem}.json").write_text(json.dumps(side, indent=2) + "\n")
        print(f"[{i + 1}/{a.num}] seed {seed}: intensity MSE {mse['default']:.1f} dB^2 (default) -> "
              f"{mse['guided']:.1f} dB^2 (guided) -> {paths[0]}, {png} ({time.perf_counter() - t0:.1f} s)", flush=True)
    return 0


def control_main(argv=None) -> int:
    """`soundctm control`."""
    return _run("soundctm control", _control, sys.argv[1:] if argv is None else list(argv))


# ------------------------------------------------------------------------------------------------ extend


def read_audio(path: Path, sample_rate: int, log=print) -> np.ndarray:
    """A sound file as mono float32 at `sample_rate` (channels averaged, resampled with soxr: both said)."""
    in_file(path, "input file")
    try:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user error here
        raise CLIError(f"cannot read {path} as audio ({type(e).__name__}: {str(e).strip()[:160]})") from None
    if x.shape[0] == 0:
        raise CLIError(f"{path} holds no samples")
    if x.shape[1] > 1:
        log(f"{path.name}: {x.shape[1]} channels, averaged to mono")
    x = x.mean(axis=1)
    if sr != sample_rate:
        log(f"{path.name}: resampled from {sr} Hz to the model's {sample_rate} Hz")
        x = soxr.resample(x, sr, sample_rate).astype(np.float32)
    if not np.isfinite(x).all():
        raise CLIError(f"{path} contains NaN or infinite samples")
    return x


def _extend(argv) -> int:
    ap = _Parser(prog="soundctm extend", formatter_class=argparse.RawDescriptionHelpFormatter,
                 description="Zero-shot bandwidth extension (soundctm/apps/bwe.py): the input is low-passed at "
                             "--cutoff (an ideal FFT low-pass) and the band above it is generated with data "
                             "consistency at every step; the output's band below the cut-off is the low-passed "
                             "input exactly. Longer inputs are processed in consecutive clip-length segments.\n\n"
                             + __doc__)
    ap.add_argument("input", type=Path, help="a sound file (any rate soundfile reads; resampled to the model's)")
    ap.add_argument("--cutoff", type=float, required=True, help="cut-off in Hz, below the model's Nyquist frequency")
    ap.add_argument("--caption", default=None,
                    help="text prompt, not empty (default: none, the unconditional embedding)")
    ap.add_argument("--steps", type=steps_int, default=8,
                    help=f"sampling steps, 1 to {MAX_STEPS} (default 8; Table 14 uses 4 and 8)")
    ap.add_argument("--omega", type=finite_float, default=3.5, help="CFG scale fed to the student (default 3.5)")
    ap.add_argument("--nu", type=finite_float, default=1.0, help="nu-sampling weight (default 1.0)")
    ap.add_argument("--seed", type=int, default=0, help="prior noise seed of the first segment (default 0)")
    ap.add_argument("--out", type=Path, default=Path("soundctm-out"), help="output folder (default ./soundctm-out)")
    _checkpoint_args(ap)
    a = ap.parse_args(argv)
    out_dir(a.out)
    in_file(a.input, "input file")
    if a.caption is not None and not a.caption.strip():
        raise CLIError("the caption is empty (leave --caption out for the unconditional embedding)")
    if not 0 <= a.seed < 2 ** 63:
        raise CLIError(f"--seed must be in [0, 2^63), got {a.seed}")
    for name, v in (("--cutoff", a.cutoff), ("--omega", a.omega), ("--nu", a.nu)):
        _finite(name, v)
    if a.cutoff <= 0:
        raise CLIError(f"--cutoff must be > 0 Hz, got {a.cutoff:g}")
    m = _models(a)
    st, vae, sr = m.student, m.vae, m.sample_rate
    if a.cutoff >= sr / 2:
        raise CLIError(f"--cutoff {a.cutoff:g} Hz is at or above the Nyquist frequency ({sr / 2:g} Hz) of the "
                       f"model's {sr} Hz audio: there is no band above it to extend")
    x = read_audio(a.input, sr)
    seg = vae.hop * int(st.latent_shape[1])
    n_seg = -(-len(x) // seg)
    padded = np.zeros(n_seg * seg, np.float32)
    padded[: len(x)] = x
    obs = lowpass(padded, a.cutoff, sr).reshape(n_seg, seg)  # one low-pass of the whole input (no segment edges)
    cond = m.conditioner([a.caption.strip()]) if a.caption is not None else m.conditioner.uncond
    grid = karras_steps(a.steps)
    out = np.zeros_like(obs)
    t0 = time.perf_counter()
    for k in range(n_seg):
        y = torch.as_tensor(obs[k : k + 1])
        with step_progress(a.steps, f"segment {k + 1}/{n_seg}") as progress:
            z = extend_bandwidth(st, prior_noise([a.seed + k], tuple(st.latent_shape), SIGMA_MAX), grid, cond,
                                 m.conditioner.uncond, observation=y, cutoff_hz=a.cutoff, sample_rate=sr,
                                 decode=lambda z: vae.decode(z)[:, 0], encode=lambda w: vae.encode(w[:, None]),
                                 omega=a.omega, nu=a.nu, callback=progress)
        with torch.no_grad():
            out[k] = vae.decode(z)[0, 0].numpy()
        print(f"[{k + 1}/{n_seg}] segment of {seg / sr:.3f} s extended ({time.perf_counter() - t0:.1f} s)", flush=True)
    # the observed band put back over the clip at the input's own length (the low-pass is a projection on
    # signals of one length, so this makes the output's band below the cut-off the observation exactly)
    low = lowpass(x.astype(np.float64), a.cutoff, sr)
    ext = consistency(torch.as_tensor(out.reshape(-1)[: len(x)], dtype=torch.float64), torch.as_tensor(low),
                      a.cutoff, sr).numpy().astype(np.float32)
    low = low.astype(np.float32)
    stem = a.input.stem
    p_low = _write_wav(a.out / f"{stem}-lowpassed-{a.cutoff:g}Hz.wav", low, sr)
    p_ext = _write_wav(a.out / f"{stem}-extended-{a.steps}step.wav", ext, sr)
    png = _plot(plots.spectrogram_grid, [[("input", x), (f"low-passed at {a.cutoff:g} Hz", low),
                                          (f"extended ({a.steps} steps)", ext)]], sr,
                a.out / f"{stem}-extended-{a.steps}step.png", cutoff_hz=a.cutoff, title=a.input.name)
    print(f"LSD against the input: low-passed {Fm.lsd(x, low):.3f}, extended {Fm.lsd(x, ext):.3f}")
    print(f"wrote {p_low}, {p_ext}, {png}")
    return 0


def extend_main(argv=None) -> int:
    """`soundctm extend`."""
    return _run("soundctm extend", _extend, sys.argv[1:] if argv is None else list(argv))
