"""The runs and reference rows that tables share (declared once, so their artifacts are shared).

`TEACHER`: the EDM teacher (one training seed). `STUDENT`: SoundCTM distilled from it with
d_teacher, three training seeds pooled. `UNET_TEACHER` / `UNET_STUDENT`: the same on the UNet backbone
(the paper's 16 kHz setting). `variant(run, **options)`: a run that differs in training options only
(the ablations' students; seeds and teacher shared). `INSTRUMENT_ROWS`: the reference rows of the sanity ladder
(real-other, vae-recon, zeros, noise), which every quality claim is anchored to.
"""

from __future__ import annotations

from dataclasses import replace

from soundctm.experiments.spec import Row, Run, frozen_options

__all__ = ["TEACHER", "STUDENT", "STUDENT_SEEDS", "UNET_TEACHER", "UNET_STUDENT", "INSTRUMENT_ROWS",
           "reference_rows", "teacher_row", "student_row", "variant"]

STUDENT_SEEDS = (0, 1, 2)
TEACHER = Run("teacher", "dit")
STUDENT = Run("student", "dit", options={"distance": "d_teacher"}, seeds=STUDENT_SEEDS, teacher=TEACHER)
UNET_TEACHER = Run("teacher", "unet")
UNET_STUDENT = Run("student", "unet", options={"distance": "d_teacher"}, seeds=STUDENT_SEEDS, teacher=UNET_TEACHER)


def variant(run: Run, **options) -> Run:
    """`run` with some training options changed (or added): same backbone, seeds and teacher."""
    return replace(run, options=frozen_options({**dict(run.options), **options}))


def teacher_row(name: str = "teacher", steps: int = 40, omega: float = 5.0, *, run: Run = TEACHER, **kw) -> Row:
    return Row(name, run=run, sampler="heun", steps=steps, omega=omega, **kw)


def student_row(steps: int, omega: float = 5.0, nu: float = 1.0, *, name: str | None = None, run: Run = STUDENT,
                **kw) -> Row:
    return Row(name or f"student-{steps}", run=run, sampler="ctm", steps=steps, omega=omega, nu=nu, **kw)


def reference_rows(*names: str) -> tuple[Row, ...]:
    labels = {
        "real-other": "real clips, another take of the same captions (noise floor)",
        "vae-recon": "VAE reconstruction of real clips (codec limit)",
        "zeros": "decoded all-zero latents (trivial baseline)",
        "noise": "decoded N(0, σ_data²) latents",
        "shuffled-captions": "real clips scored against another clip's captions",
    }
    return tuple(Row(n, source=n, label=labels[n]) for n in names)


INSTRUMENT_ROWS = reference_rows("real-other", "vae-recon", "zeros", "noise")
