"""`soundctm generate` and `soundctm refine`: the sound creator's loop (paper, Sec. 1 and 4.1).

1. `soundctm generate "heavy rain falls" --steps 1 -n 4` draws four candidates cheaply with 1-step
   sampling. Candidate i starts from its own prior noise z_T = sigma_max * eps, eps drawn from seed
   S + i (`soundctm.rng.prior_noise`), and is written as a WAV plus a JSON sidecar holding the
   caption, the seed, every sampling setting, the sample rate and the sha256 of the student, VAE
   and text-encoder files used.
2. Listen, pick one, and `soundctm refine CANDIDATE.json --steps 16` regenerates it from the SAME
   z_T (same seed, same caption, same checkpoints: their hashes are checked against the sidecar)
   with more steps and gamma = 0 (deterministic sampling), so the refined clip keeps the
   candidate's content at higher quality. Its sidecar records `refined_from`.

Both default to the committed tiny student, VAE and tiny CLAP text encoder under soundctm/assets/tiny/
(package data, `soundctm.paths.committed_tiny_dir()`); `--checkpoint`, `--vae` and `--text-encoder` select
other files.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from soundctm import __version__
from soundctm.cmdline import MAX_STEPS, CLIError, finite_float, in_file, out_dir, step_progress, steps_int
from soundctm.cmdline import Parser as _Parser
from soundctm.cmdline import run as _run
from soundctm.edm import SIGMA_MAX
from soundctm.io import sha256_file
from soundctm.nn.precision import AMP, autocast
from soundctm.nn.text import Conditioner, get_text_encoder
from soundctm.nn.vae import AudioAutoencoder
from soundctm.paths import MissingAssetsError, committed_tiny_dir, require_files
from soundctm.rng import derive_seed, prior_noise
from soundctm.sampling import karras_steps, sample
from soundctm.train.checkpoint import load_export

DEFAULT_CHECKPOINTS = committed_tiny_dir()
DEFAULT_STUDENT = DEFAULT_CHECKPOINTS / "student-tiny-dit.safetensors"
DEFAULT_VAE = DEFAULT_CHECKPOINTS / "vae.safetensors"
DEFAULT_TEXT_ENCODER = DEFAULT_CHECKPOINTS / "clap.safetensors"

SIDECAR_FORMAT = "soundctm-candidate"
SIDECAR_VERSION = 1
SIDECAR_KEYS = ("caption", "seed", "settings", "sample_rate", "checkpoints", "audio")
CHECKPOINT_ROLES = ("student", "vae", "text_encoder")

__all__ = ["main", "refine_main", "Models", "load_models", "render", "sha256_file", "read_sidecar"]


# ------------------------------------------------------------------------------------------------
# checkpoints


@dataclass
class Models:
    student: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    conditioner: object  # captions -> cond [B, L, D]; .uncond [1, L, D]; .mode
    files: dict  # role -> {"path", "sha256"}
    device: torch.device = torch.device("cpu")  # where the student and the VAE run (and z_T / cond are created)

    @property
    def sample_rate(self) -> int:
        return int(self.vae.sample_rate)


def _existing(path, role: str) -> Path:
    return in_file(path, f"{role} checkpoint").resolve()


def _require_all(files: dict) -> None:
    """One CLIError naming every file of `files` (role -> path) that does not exist."""
    try:
        require_files([(f"{role} checkpoint", Path(p).expanduser()) for role, p in files.items()])
    except MissingAssetsError as e:
        named = "; ".join(f"{what} not found: {path}" for what, path in e.missing)
        raise CLIError(f"{named} (pass the files with --checkpoint / --vae / --text-encoder)") from None


def load_models(student_path=DEFAULT_STUDENT, vae_path=DEFAULT_VAE, text_path=DEFAULT_TEXT_ENCODER,
                device="cpu") -> Models:
    """Load and cross-check the three files, the student and the VAE on `device` (the text encoder stays on
    the CPU: the conditioning is moved); any failure is a one-line CLIError."""
    try:
        device = torch.device(device)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as e:
        raise CLIError(f"device {str(device)!r} is not usable here ({_short(e)})") from None
    _require_all({"student": student_path, "VAE": vae_path, "text encoder": text_path})
    paths = {"student": _existing(student_path, "student"), "vae": _existing(vae_path, "VAE"),
             "text_encoder": _existing(text_path, "text encoder")}
    try:
        student = load_export(paths["student"])
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user error here
        raise CLIError(f"{paths['student']} is not a usable soundctm student export ({_short(e)})") from None
    if student.export_metadata.get("kind") != "student":
        raise CLIError(f"{paths['student']} is a {student.export_metadata.get('kind')} export; "
                       "generate needs a distilled student (soundctm distill)")
    conditioning = (student.export_metadata.get("extra") or {}).get("conditioning") or {}
    enc_name = conditioning.get("text_encoder", "tiny-clap")
    if enc_name != "tiny-clap":
        raise CLIError(f"this student was trained with the {enc_name!r} text encoder; "
                       "this command loads tiny-clap files only")
    try:
        vae = AudioAutoencoder.load(paths["vae"]).eval()
    except Exception as e:  # noqa: BLE001
        raise CLIError(f"{paths['vae']} is not a usable VAE checkpoint ({_short(e)})") from None
    try:
        text = get_text_encoder("tiny-clap", path=paths["text_encoder"]).eval()
    except Exception as e:  # noqa: BLE001
        raise CLIError(f"{paths['text_encoder']} is not a usable tiny-clap text encoder ({_short(e)})") from None
    c, _ = student.latent_shape
    if int(vae.config.latent_channels) != int(c):
        raise CLIError(f"VAE latent channels {vae.config.latent_channels} != student's {c}")
    cond = Conditioner.for_model(text, student)
    if conditioning.get("mode", cond.mode) != cond.mode:
        raise CLIError(f"the student was trained with {conditioning['mode']!r} conditioning, its shape "
                       f"{tuple(student.cond_shape)} implies {cond.mode!r}")
    files = {role: {"path": str(p), "sha256": sha256_file(p)} for role, p in paths.items()}
    return Models(student.to(device), vae.to(device), text, cond, files, device)


def _short(e: Exception) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}"[:200]


# ------------------------------------------------------------------------------------------------
# sampling


def _validate(caption: str, steps: int, omega: float, nu: float, gamma: float) -> None:
    if not caption or not caption.strip():
        raise CLIError("the caption is empty")
    if not 1 <= steps <= MAX_STEPS:
        raise CLIError(f"--steps must be in [1, {MAX_STEPS}], got {steps}")
    if not 0.0 <= gamma <= 1.0:
        raise CLIError(f"--gamma must be in [0, 1], got {gamma}")
    for name, v in (("--omega", omega), ("--nu", nu)):
        if not math.isfinite(v):
            raise CLIError(f"{name} must be finite, got {v}")


def gamma_noise_seed(seed: int) -> int:
    """Seed of the gamma-sampling noise of the candidate with prior seed `seed` (unused when gamma = 0)."""
    return derive_seed(seed, "gamma-noise")


@torch.no_grad()
def render(models: Models, caption: str, seed: int, *, steps: int, omega: float, nu: float,
           gamma: float, amp: str = "off") -> tuple[np.ndarray, dict]:
    """One clip: z_T from `seed`, Algorithm 1 on the `steps`-jump Karras grid, VAE decode; `amp` ("off",
    "bf16", "fp16") runs the student's network under autocast. Returns (waveform [N] float32, settings dict)."""
    st, dev = models.student, models.device
    cond, uncond = models.conditioner([caption]).to(dev), models.conditioner.uncond.to(dev)
    z_T = prior_noise([seed], tuple(st.latent_shape), SIGMA_MAX, device=dev)  # drawn on the CPU: same z_T anywhere
    sigmas = karras_steps(steps)
    gen = torch.Generator().manual_seed(gamma_noise_seed(seed))  # CPU generator; sample() moves its draws
    with autocast(dev, amp), step_progress(steps) as progress:  # the student's network; the sampler stays fp32
        z0 = sample(st, z_T, sigmas=sigmas, cond=cond, uncond=uncond, omega=omega, nu=nu, gamma=gamma,
                    generator=gen, callback=progress).float()
    wav = models.vae.decode(z0).float()[0, 0].cpu().numpy()  # fp32 (the tiny iSTFT decoder has no bf16 FFT)
    settings = {
        "sampler": "soundctm Algorithm 1 (gamma/nu-sampling)",
        "steps": int(steps), "omega": float(omega), "nu": float(nu), "gamma": float(gamma),
        "sigmas": [float(s) for s in sigmas],
        "prior": "z_T = sigma_max * eps, eps ~ N(0, I) from the seed (soundctm.rng.prior_noise)",
        "sigma_max": float(SIGMA_MAX),
        "gamma_noise_seed": gamma_noise_seed(seed),
        "conditioning_mode": models.conditioner.mode,
        "latent_shape": [int(x) for x in st.latent_shape],
        "device": str(dev),
        "amp": amp,
    }
    return wav, settings


def _slug(caption: str, n: int = 40) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", caption.lower()).strip("-")[:n].strip("-")
    return s or "clip"


def _write(out_dir: Path, stem: str, wav: np.ndarray, models: Models, caption: str, seed: int,
           settings: dict, **extra) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    wav_path, json_path = out_dir / f"{stem}.wav", out_dir / f"{stem}.json"
    sf.write(str(wav_path), wav, models.sample_rate, subtype="FLOAT")
    side = {
        "format": SIDECAR_FORMAT, "format_version": SIDECAR_VERSION,
        "caption": caption, "seed": int(seed),
        "settings": settings,
        "sample_rate": models.sample_rate, "num_samples": int(wav.shape[0]),
        "duration_s": wav.shape[0] / models.sample_rate,
        "audio": wav_path.name, "audio_sha256": sha256_file(wav_path),
        "checkpoints": models.files,
        "soundctm_version": __version__,
        **extra,
    }
    json_path.write_text(json.dumps(side, indent=2) + "\n")
    return wav_path, json_path


def _sampling_args(ap: argparse.ArgumentParser, steps: int, omega: float | None, nu: float | None,
                   gamma: float) -> None:
    ap.add_argument("--steps", type=steps_int, default=steps,
                    help=f"sampling steps (jumps), 1 to {MAX_STEPS} (default {steps})")
    ap.add_argument("--omega", type=finite_float, default=omega,
                    help="CFG scale omega fed to the student" + (f" (default {omega})" if omega is not None else
                                                                 " (default: the candidate's)"))
    ap.add_argument("--nu", type=finite_float, default=nu,
                    help="nu-sampling weight, Eq. 10: nu G(c) + (1 - nu) G(empty)"
                         + (f" (default {nu})" if nu is not None else " (default: the candidate's)"))
    ap.add_argument("--gamma", type=float, default=gamma,
                    help=f"gamma in [0, 1]: 0 deterministic CTM sampling, 1 consistency sampling (default {gamma})")


# ------------------------------------------------------------------------------------------------
# generate


def _generate(argv) -> int:
    ap = _Parser(prog="soundctm generate", formatter_class=argparse.RawDescriptionHelpFormatter,
                 description=__doc__)
    ap.add_argument("caption", help="the text prompt")
    ap.add_argument("-n", "--num", type=int, default=4, help="number of candidates (default 4)")
    ap.add_argument("--seed", type=int, default=0, help="candidate i uses prior seed SEED + i (default 0)")
    ap.add_argument("--out", type=Path, default=Path("soundctm-out"), help="output folder (default ./soundctm-out)")
    _sampling_args(ap, steps=1, omega=5.0, nu=1.0, gamma=0.0)
    _checkpoint_args(ap)
    a = ap.parse_args(argv)
    out_dir(a.out)
    _validate(a.caption, a.steps, a.omega, a.nu, a.gamma)
    if a.num < 1:
        raise CLIError(f"-n must be >= 1, got {a.num}")
    if a.seed < 0 or a.seed + a.num > 2 ** 63:
        raise CLIError(f"--seed must be in [0, 2^63 - n], got {a.seed}")
    models = load_models(a.checkpoint or DEFAULT_STUDENT, a.vae or DEFAULT_VAE, a.text_encoder or DEFAULT_TEXT_ENCODER,
                         a.device)
    caption = a.caption.strip()
    for i in range(a.num):
        seed = a.seed + i
        t0 = time.perf_counter()
        wav, settings = render(models, caption, seed, steps=a.steps, omega=a.omega, nu=a.nu, gamma=a.gamma,
                               amp=a.amp)
        wav_path, json_path = _write(a.out, f"{_slug(caption)}-seed{seed}-{a.steps}step", wav, models, caption,
                                     seed, settings, candidate_index=i, refined_from=None)
        print(f"[{i + 1}/{a.num}] seed {seed}: {a.steps} step(s), omega={a.omega:g} nu={a.nu:g} gamma={a.gamma:g} "
              f"-> {wav_path} ({time.perf_counter() - t0:.2f} s)", flush=True)
    print(f"refine one with: soundctm refine {a.out / (_slug(caption) + f'-seed{a.seed}-{a.steps}step.json')} "
          "--steps 16")
    return 0


def _checkpoint_args(ap: argparse.ArgumentParser, refine: bool = False) -> None:
    default = "the candidate's (checked by sha256)" if refine else "the committed tiny one"
    ap.add_argument("--checkpoint", type=Path, default=None, help=f"student export .safetensors (default: {default})")
    ap.add_argument("--vae", type=Path, default=None, help=f"VAE .safetensors (default: {default})")
    ap.add_argument("--text-encoder", type=Path, default=None,
                    help=f"tiny-clap text encoder .safetensors (default: {default})")
    ap.add_argument("--device", default="cpu",
                    help="where the student and the VAE run, e.g. cuda (default cpu); z_T comes from the seed on "
                         "the CPU, so the same seed starts from the same noise on every device")
    ap.add_argument("--amp", choices=AMP, default="off",
                    help="mixed-precision autocast of the student's network: off (fp32, default), bf16 or fp16")


def main(argv=None) -> int:
    """`soundctm generate`."""
    return _run("soundctm generate", _generate, sys.argv[1:] if argv is None else list(argv))


# ------------------------------------------------------------------------------------------------
# refine


def read_sidecar(path: str | Path) -> dict:
    """A candidate sidecar written by `soundctm generate` / `refine`, validated (CLIError otherwise)."""
    p = Path(path)
    if p.is_dir():
        raise CLIError(f"candidate sidecar {p} is a directory, not a file")
    if not p.is_file():
        raise CLIError(f"candidate sidecar not found: {p}")
    try:
        side = json.loads(p.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CLIError(f"{p} is not a candidate JSON (not JSON: {_short(e)})") from None
    if not isinstance(side, dict) or side.get("format") != SIDECAR_FORMAT:
        raise CLIError(f"{p} is not a candidate JSON written by `soundctm generate`")
    if side.get("format_version") != SIDECAR_VERSION:
        raise CLIError(f"{p}: candidate format version {side.get('format_version')} != {SIDECAR_VERSION}")
    missing = [k for k in SIDECAR_KEYS if k not in side]
    cks = side.get("checkpoints")
    if not missing and not (isinstance(cks, dict) and all(isinstance(cks.get(r), dict) and "sha256" in cks[r]
                                                          for r in CHECKPOINT_ROLES)):
        missing = ["checkpoints.{student,vae,text_encoder}.sha256"]
    if not missing and not (isinstance(side["caption"], str) and isinstance(side["seed"], int)
                            and isinstance(side["settings"], dict)):
        missing = ["a str caption / int seed / settings object"]
    if missing:
        raise CLIError(f"{p} is not a complete candidate JSON (missing {', '.join(missing)})")
    bad = _sidecar_problem(side)
    if bad:
        raise CLIError(f"{p} is not a valid candidate JSON: {bad}")
    return side


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _sidecar_problem(side: dict) -> str | None:
    """What is wrong with the values of a candidate sidecar (None when every value is usable)."""
    st = side["settings"]
    if not side["caption"].strip():
        return "its caption is empty"
    if isinstance(side["seed"], bool) or not 0 <= side["seed"] < 2 ** 63:
        return f"seed {side['seed']!r} is not in [0, 2^63)"
    steps = st.get("steps", 1)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        return f"settings.steps {steps!r} is not an integer in [1, {MAX_STEPS}]"
    for k in ("omega", "nu", "gamma"):
        if k in st and not _number(st[k]):
            return f"settings.{k} {st[k]!r} is not a finite number"
    if not 0.0 <= st.get("gamma", 0.0) <= 1.0:
        return f"settings.gamma {st['gamma']!r} is not in [0, 1]"
    sr = side["sample_rate"]
    if isinstance(sr, bool) or not isinstance(sr, int) or sr < 1:
        return f"sample_rate {sr!r} is not a positive integer"
    if not isinstance(side["audio"], str) or not side["audio"]:
        return f"audio {side['audio']!r} is not a file name"
    return None


def _refine(argv) -> int:
    doc = ("Regenerate a candidate written by `soundctm generate` from the same z_T (same seed, caption\n"
           "and checkpoints, verified by sha256) with more steps; gamma = 0 by default keeps its content.\n\n"
           + __doc__)
    ap = _Parser(prog="soundctm refine", formatter_class=argparse.RawDescriptionHelpFormatter, description=doc)
    ap.add_argument("candidate", type=Path, help="the candidate's JSON sidecar")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: the candidate's folder)")
    _sampling_args(ap, steps=16, omega=None, nu=None, gamma=0.0)
    _checkpoint_args(ap, refine=True)
    a = ap.parse_args(argv)
    out = out_dir(a.out) if a.out is not None else None
    side = read_sidecar(a.candidate)
    out = out if out is not None else out_dir(a.candidate.resolve().parent, "the candidate's folder")
    parent = side["settings"]
    omega = float(parent.get("omega", 5.0)) if a.omega is None else a.omega
    nu = float(parent.get("nu", 1.0)) if a.nu is None else a.nu
    _validate(side["caption"], a.steps, omega, nu, a.gamma)
    cks = side["checkpoints"]
    chosen = {"student": a.checkpoint, "vae": a.vae, "text_encoder": a.text_encoder}
    for role in CHECKPOINT_ROLES:
        if chosen[role] is None:  # the recorded file, else the committed default
            rec = Path(cks[role].get("path", ""))
            chosen[role] = rec if rec.is_file() else {"student": DEFAULT_STUDENT, "vae": DEFAULT_VAE,
                                                      "text_encoder": DEFAULT_TEXT_ENCODER}[role]
    _require_all({"student": chosen["student"], "VAE": chosen["vae"], "text encoder": chosen["text_encoder"]})
    paths = {}
    for role in CHECKPOINT_ROLES:
        p = _existing(chosen[role], role.replace("_", " "))
        digest = sha256_file(p)
        if digest != cks[role]["sha256"]:
            raise CLIError(f"{role.replace('_', ' ')} checkpoint {p} (sha256 {digest[:12]}) is not the one that made "
                           f"this candidate (sha256 {str(cks[role]['sha256'])[:12]}); pass the same file")
        paths[role] = p
    models = load_models(paths["student"], paths["vae"], paths["text_encoder"], a.device)
    caption, seed = side["caption"], int(side["seed"])
    t0 = time.perf_counter()
    wav, settings = render(models, caption, seed, steps=a.steps, omega=omega, nu=nu, gamma=a.gamma, amp=a.amp)
    refined_from = {"sidecar": str(a.candidate.resolve()), "audio": side["audio"],
                    "audio_sha256": side.get("audio_sha256"), "seed": seed, "settings": parent}
    stem = f"{a.candidate.stem}-refined-{a.steps}step"
    wav_path, _ = _write(out, stem, wav, models, caption, seed, settings, candidate_index=side.get("candidate_index"),
                         refined_from=refined_from)
    print(f"[1/1] seed {seed}: refined {parent.get('steps')} -> {a.steps} step(s), omega={omega:g} nu={nu:g} "
          f"gamma={a.gamma:g} -> {wav_path} ({time.perf_counter() - t0:.2f} s)", flush=True)
    return 0


def refine_main(argv=None) -> int:
    """`soundctm refine`."""
    return _run("soundctm refine", _refine, sys.argv[1:] if argv is None else list(argv))


if __name__ == "__main__":
    sys.exit(main())
