"""A tier is data: one frozen object per scale (`TINY`, `PAPER`), never a branch on its name.

A `Tier` says how to load its components (evaluation units, VAE, text encoder, embedders), how to
build a run's model, how many samples each unit gets, which device to use, its audio format and what
the speed tables time on it. The runner and the tables only ever read these fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from soundctm.data.audiocaps import AudioCapsDataset
from soundctm.data.corpus import render_take
from soundctm.data.latent_cache import file_checksum
from soundctm.metrics.indomain import TinyClapEmbedder, tiny_evt
from soundctm.metrics.pretrained.text import LaionClapText
from soundctm.metrics.pretrained.weights import WEIGHTS, weight_path
from soundctm.metrics.registry import get_embedder
from soundctm.nn.vae import AudioAutoencoder
from soundctm.paths import MissingAssetsError, audiocaps_dir, cache_dir, results_root, weights_dir
from soundctm.presets import PAPER_AUDIO, TINY_AUDIO, AudioSpec
from soundctm.train.components import get_tiny_components
from soundctm.train.config import TRAIN_THREADS, pinned_threads  # noqa: F401  (re-exported)
from soundctm.train.tiny import distill_tiny_student, train_tiny_teacher

__all__ = ["Unit", "Components", "Tier", "TINY", "PAPER", "TIERS", "get_tier", "tiny_components", "paper_assets"]


@dataclass
class Unit:
    """One evaluation unit: a real test clip [N] and its captions (the bootstrap resamples units)."""

    id: str
    audio: np.ndarray
    captions: list[str]


@dataclass
class Components:
    sample_rate: int
    units: list[Unit]
    vae: Any
    text: Any
    embedders: dict[str, Any]  # metric family -> Embedder ("fd" and "kid" share one)
    identity: dict  # checksums of everything above, part of every artifact hash
    retake: Callable[[int, int], np.ndarray] | None = None  # (unit index, take) -> another real take
    channels_sr: str = ""


SPEED_MODELS = ("trained", "paper-archs")  # the values of `Tier.speed_models`


@dataclass(frozen=True)
class Tier:
    name: str
    load: Callable[..., Components]  # load(cache) -> Components
    build: Callable[..., Path]  # build(run, teacher_export | None, cache) -> export path (one seed)
    captions_per_unit: int
    samples_per_caption: int
    n_units: int | None = None  # None: every test clip
    n_boot: int = 200
    timing_repeats: int = 5
    device: str = "cpu"
    presets: dict = field(default_factory=dict, hash=False, compare=False)  # backbone -> model preset
    # Ray resources of one task per kind of artifact node when the runner schedules them on a cluster
    # (`Runner`, `soundctm.distributed.run_tasks`): "train" (one run, one training seed), "score"
    # (generate, decode and embed one row), "reference" (embed the real clips), "timing" (a row's seconds
    # per sample; also the training-memory probe runs as "train"). Kinds left out: CPU_TASK.
    resources: dict = field(default_factory=dict, hash=False, compare=False)
    audio: AudioSpec | None = None  # the audio format of the tier's clips (None: unspecified, e.g. a test's tier)
    # what the speed tables (Table 8, `experiments.speed`) time on this tier: "trained" (the tier's trained
    # models of each system, built with its other runs) or "paper-archs" (the paper-size architectures of
    # `speed.PAPER_ARCHS` with random weights: latency does not depend on the weights; nothing is trained)
    speed_models: str = "trained"

    def __post_init__(self):
        if self.speed_models not in SPEED_MODELS:
            raise ValueError(f"tier {self.name!r}: unknown speed_models {self.speed_models!r}; expected one of "
                             f"{SPEED_MODELS}")

    def task_resources(self, kind: str) -> dict:
        """The Ray resources of one `kind` task (`num_cpus`, `num_gpus`, `memory`, `resources`)."""
        return dict(self.resources.get(kind, CPU_TASK))

    @property
    def results_dir(self) -> Path:
        """`results/<name>` of the working directory: where a table's files go unless `--out` says."""
        return results_root() / self.name

    def on_device(self, comp: Components) -> Components:
        """The tier's one device policy: `device` is where the runner loads every teacher / student and
        creates the prior noise, the conditioning and the time grid, so the VAE that decodes the latents is
        moved there too. The text encoder may stay where its tier put it (the conditioning it returns is
        moved to `device`; the tiny tier's CLAP is shared with the tiny-clap embedder), and the embedders
        take waveforms and manage their own device."""
        if isinstance(comp.vae, torch.nn.Module):
            comp.vae.to(self.device)
        return comp


# ----------------------------------------------------------------------------------------- tiny




def _tiny_load(cache=None) -> Components:

    with pinned_threads(TRAIN_THREADS):
        corpus, vae, clap = get_tiny_components(cache, progress=False)
    root = Path(cache).expanduser() if cache is not None else cache_dir()
    return tiny_components(corpus, vae, clap, evaluators=root / "tiny" / "evaluators")


def tiny_components(corpus, vae, clap, *, evaluators: Path) -> Components:
    """The tiny tier's components from a built corpus, a VAE, a tiny CLAP and an evaluator directory."""

    evt = tiny_evt(corpus_root=corpus.root, cache=evaluators, log=True)
    clap_emb = TinyClapEmbedder(clap)
    gt = corpus.ground_truth()
    units = []
    for ds_index in range(corpus.n_test):
        yid = f"s{corpus.seed}te{ds_index:06d}"
        audio = render_take(corpus.seed, "test", ds_index, 0, corpus.sample_rate, corpus.clip_samples)
        units.append(Unit(yid, audio, list(gt.clip(yid)["captions"])))

    def retake(u: int, take: int) -> np.ndarray:
        return render_take(corpus.seed, "test", u, take, corpus.sample_rate, corpus.clip_samples)

    identity = {"corpus": corpus.corpus_id, "vae": vae.checksum(), "text": clap.checksum(),
                "fd": evt.settings(), "clap": clap_emb.settings()}
    return Components(corpus.sample_rate, units, vae, clap, {"fd": evt, "kid": evt, "kl": evt, "clap": clap_emb},
                      identity, retake, "1/16kHz (tiny)")


def _tiny_build(run, teacher_export, cache=None) -> Path:

    opts = dict(run.options)
    (seed,) = run.seeds
    preset = TINY.presets[run.backbone]
    with pinned_threads(TRAIN_THREADS):
        if run.kind == "teacher":
            return train_tiny_teacher(cache, preset, seed=seed, progress=False, threads=TRAIN_THREADS, **opts)
        distance = opts.pop("distance", "d_teacher")
        return distill_tiny_student(teacher_export, preset, distance, cache=cache, seed=seed, progress=False,
                                    threads=TRAIN_THREADS, **opts)


CPU_TASK = {"num_cpus": 1}
GPU_TASK = {"num_cpus": 1, "num_gpus": 1}

TINY = Tier(
    name="tiny",
    load=_tiny_load,
    build=_tiny_build,
    captions_per_unit=5,
    samples_per_caption=2,  # 120 test clips x 5 captions x 2 samples = 1200 clips per row
    n_boot=200,
    timing_repeats=5,
    device="cpu",
    presets={"dit": "tiny-dit", "unet": "tiny-unet"},
    audio=TINY_AUDIO,
    speed_models="trained",
)


# ---------------------------------------------------------------------------------------- paper


def paper_assets() -> dict[str, Path]:
    """Every file the paper tier needs; raises one MissingAssetsError naming all absent ones."""

    ac = audiocaps_dir()
    need = {
        "test_5cap": ("AudioCaps test CSV, 5 captions per clip (audiocap_id,youtube_id,start_time,caption)",
                      ac / "test_5cap.csv"),
        "audio": ("AudioCaps test audio folder (<youtube_id>.wav)", ac / "audio"),
        "teacher": ("SoundCTM-DiT-1B teacher export (safetensors, `soundctm train-teacher --preset paper-dit`)",
                    weights_dir() / "soundctm-dit-1b-teacher.safetensors"),
        "student": ("SoundCTM-DiT-1B student export (safetensors, `soundctm distill --preset paper-dit`)",
                    weights_dir() / "soundctm-dit-1b-student.safetensors"),
        "vae": ("GaussianDAC VAE, 44.1 kHz (safetensors, soundctm.nn.vae.AudioAutoencoder.save)",
                weights_dir() / "gaussian-dac-44k.safetensors"),
    }
    for key in ("openl3", "passt", "laion-clap", "roberta-tokenizer"):
        need[key] = (WEIGHTS[key].what, weight_path(key))
    missing = [(what, str(p)) for what, p in need.values() if not Path(p).exists()]
    if missing:
        raise MissingAssetsError(
            missing,
            hint="Set SOUNDCTM_AUDIOCAPS / SOUNDCTM_WEIGHTS (or the per-model variables in "
                 "soundctm/metrics/pretrained/weights.py) to where these files live; nothing is downloaded.")
    return {k: Path(p) for k, (_, p) in need.items()}


def _paper_load(cache=None) -> Components:

    assets = paper_assets()
    device, audio = PAPER.device, PAPER.audio
    vae = AudioAutoencoder.load(assets["vae"]).to(device).eval()
    ds = AudioCapsDataset(assets["test_5cap"], assets["audio"], sample_rate=audio.sample_rate,
                          clip_samples=audio.clip_samples)
    by_clip: dict[str, Unit] = {}
    for i in range(len(ds)):
        it = ds[i]
        yid = it.get("youtube_id", str(i))
        u = by_clip.setdefault(yid, Unit(yid, it["audio"][0].numpy(), []))
        u.captions.append(it["caption"])
    openl3, passt, clap = get_embedder("openl3"), get_embedder("passt"), get_embedder("laion-clap")
    identity = {"vae": file_checksum(assets["vae"]), "audiocaps": file_checksum(assets["test_5cap"]),
                "fd": openl3.settings(), "kl": passt.settings(), "clap": clap.settings()}
    return Components(audio.sample_rate, list(by_clip.values()), vae, LaionClapText(device=device),
                      {"fd": openl3, "kid": openl3, "kl": passt, "clap": clap}, identity, None, "1/44.1kHz")


def _paper_build(run, teacher_export, cache=None) -> Path:
    assets = paper_assets()
    if run.options:
        raise MissingAssetsError([(f"a paper-tier {run.kind} trained with {dict(run.options)}",
                                   "train it with `soundctm distill --preset paper-dit ...`")])
    return assets[run.kind]


PAPER = Tier(
    name="paper",
    load=_paper_load,
    build=_paper_build,
    captions_per_unit=5,  # the full-band protocol scores all five captions of each test clip
    samples_per_caption=1,
    n_boot=200,
    timing_repeats=10,
    device="cuda" if torch.cuda.is_available() else "cpu",
    presets={"dit": "paper-dit", "unet": "paper-unet"},
    audio=PAPER_AUDIO,
    speed_models="paper-archs",
    # one GPU per training, per row (DiT sampling, VAE decoding, OpenL3/PaSST/CLAP) and for the reference
    resources={"train": GPU_TASK, "score": GPU_TASK, "reference": GPU_TASK, "timing": GPU_TASK},
)

TIERS = {t.name: t for t in (TINY, PAPER)}


def get_tier(name: str) -> Tier:
    try:
        return TIERS[name]
    except KeyError:
        raise ValueError(f"unknown tier {name!r}; expected one of {sorted(TIERS)}") from None
