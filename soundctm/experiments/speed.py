"""Inference speed tables (Table 8): seconds per sample at batch 1, end to end (text encoder on the caption ->
prior noise -> n sampler steps -> latent decoder and vocoder), for SoundCTM and the consistency-distillation
peers, each timed twice: with the unconditional branch skipped at nu = 1 (this library's samplers: nu = 1 weighs
it by 0) and evaluated anyway (the official samplers always run both branches).

Systems per tier (a `SpeedSystem` names both; the tier's field `speed_models` picks which):
  "trained"      (tiny) the tier's trained models (SoundCTM-DiT student, the CD and LCD students of `soundctm.cd`)
                 with the tier's text encoder (tiny CLAP) and VAE: what the tiny tables sample;
  "paper-archs"  (paper) the paper-size architectures with random weights (latency does not depend on the weights;
                 nothing is downloaded): SoundCTM-DiT-1B (`experiments.gpubench`: the released layout, a
                 RoBERTa-base-sized CLAP text tower, the GaussianDAC-sized decoder), ConsistencyTTA (557 M
                 UNet2DConditionModel of its lightweight TANGO config, FLAN-T5-Large encoder, AudioLDM's 2-D mel VAE
                 decoder and 16 kHz HiFi-GAN) and AudioLCM (its configs/audiolcm.yaml: DiT width 576, depth 4, 8 heads
                 on 20 x 312 latents, CLAP-text (BERT-base) + T5-Large tokens concatenated, its 1-D mel VAE decoder
                 and a BigVGAN-sized 16 kHz vocoder); `nn.peers` has the stand-ins.
Every call is timed with `timing.time_call` (CUDA events and a synchronisation on a GPU, `warmup` untimed calls
first); the table reports the median of the repeats and keeps them all; the device is named.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pandas as pd
import torch

from soundctm.ctm import CTMStudent
from soundctm.experiments import gpubench
from soundctm.experiments.claims import check
from soundctm.experiments.generation import sample_row
from soundctm.experiments.main import make_runner
from soundctm.experiments.spec import Claim, Items, Row, Run
from soundctm.experiments.timing import time_call
from soundctm.io import write_json, write_text
from soundctm.nn.dit import DiT, DiTConfig
from soundctm.nn.peers import HiFiGAN, TextTransformer, UNet2DCond, UNet2DConfig, VAEDecoder
from soundctm.nn.text import Conditioner
from soundctm.provenance import provenance
from soundctm.rng import prior_noise
from soundctm.train.checkpoint import load_export

__all__ = ["KIND", "SpeedSystem", "SpeedTable", "Pipeline", "PAPER_ARCHS", "paper_pipeline", "tiny_pipeline",
           "run_speed", "speed_markdown", "speed_frame", "write_speed_csv"]

KIND = "speed"
CAPTION = "a dog barks while cars pass by"
UNCOND = ("skipped", "evaluated")  # the unconditional branch at nu = 1: ours, the official samplers'


@dataclass(frozen=True)
class SpeedSystem:
    name: str  # row ids: f"{name}-{steps}"
    label: str
    run: Run  # the tiny tier's trained run of this system
    sampler: str  # "ctm" (Algorithm 1, gamma = 0) | "cm" (consistency models' multistep sampler)
    omega: float
    paper_arch: str  # key of PAPER_ARCHS
    ch_sr: str = "1/16kHz"
    paper: dict = field(default_factory=dict)  # steps -> the paper's seconds


@dataclass(frozen=True)
class SpeedTable:
    """A speed table (`spec.Experiment`): `systems` timed end to end at each of `steps`, nothing scored."""

    name: str
    title: str
    systems: tuple[SpeedSystem, ...]
    steps: tuple[int, ...] = (1, 2, 4, 8)
    claims: tuple[Claim, ...] = ()  # "faster" claims over rows f"{system}-{steps}" (nu = 1 branch skipped)
    description: str = ""
    paper_device: str = ""
    warmup: int = 2
    small: bool = False  # the paper tier's architectures at the small test size (`paper_pipeline`)
    items: ClassVar[Items | None] = None  # no item set: the caption `CAPTION`, batch 1

    @property
    def score_rows(self) -> tuple[Row, ...]:
        """Nothing for `Runner.prepare` to score: the models are timed, not scored."""
        return ()

    @property
    def rows(self) -> tuple[Row, ...]:
        """No rows: nothing is scored (`score_rows`)."""
        return ()

    def model_runs(self, tier) -> tuple[Run, ...]:
        """The runs this table times on `tier` (`Runner.table_runs`: trained with the other tables' runs, in
        parallel with --workers): the tier's trained models; none where the tier times the paper-size
        architectures with random weights (`Tier.speed_models`), hence none on any tier (None)."""
        return () if tier is None or _paper_archs(tier) else tuple(s.run for s in self.systems)

    def execute(self, args, runner=None) -> dict:
        """Time every system and write the table's files (`run_speed`)."""
        return run_speed(self, args, runner)


def _paper_archs(tier) -> bool:
    """Whether `tier` times the paper-size architectures with random weights, else its trained models
    (`Tier.speed_models`)."""
    return tier.speed_models == "paper-archs"


@dataclass
class Pipeline:
    encode: Callable[[], tuple[torch.Tensor, torch.Tensor]]  # the caption -> (cond, uncond), timed
    model: torch.nn.Module  # a CTMStudent (sampled with the row's sampler)
    latent_shape: tuple[int, ...]
    decode: Callable[[torch.Tensor], torch.Tensor]  # latents -> waveform
    params: dict[str, int]


def _count(*mods) -> int:
    return sum(p.numel() for m in mods for p in m.parameters())


def _ready(*mods):
    for m in mods:
        m.eval().requires_grad_(False)


def _student(net, sigma_data: float, latent_shape) -> CTMStudent:
    st = CTMStudent(net, sigma_data)
    st.latent_shape = tuple(latent_shape)
    return st


def _soundctm_dit(dev, small: bool = False) -> Pipeline:
    p = gpubench.build(gpubench.SMALL_SIZE if small else gpubench.PAPER_SIZE, dev)
    return Pipeline(lambda: (p.text(p.ids), p.uncond), p.student, p.latent_shape, p.vae.decode,
                    {"text": _count(p.text), "backbone": _count(p.student), "decoder": _count(p.vae.decoder)})


def _consistencytta(dev, small: bool = False) -> Pipeline:
    w = 1 if not small else 16  # `small`: the same code, every width / 16 and a 16x shorter clip (tests)
    lat = (8, 256 // w, 16)  # AudioLDM's latent of 10.24 s
    with torch.device(dev):
        text = TextTransformer(24 // (w // 4 or 1), 1024 // w, 16 // w or 1, 4224 // w)  # FLAN-T5-Large encoder
        cfg = UNet2DConfig() if not small else UNet2DConfig(channels=(32, 64, 64, 64), heads=(1, 2, 2, 2),
                                                            cond_dim=1024 // w)
        student = _student(UNet2DCond(cfg), 0.25, lat)
        vae = VAEDecoder(8, 128 if not small else 16, (1, 2, 4), 2, 1, dims=2)  # -> mel image [1, 1, 1024, 64]
        voc = HiFiGAN(64, (5, 4, 2, 2, 2), (16, 16, 8, 4, 4), 1024 // w)  # AudioLDM's 16 kHz HiFi-GAN, hop 160
        ids = torch.randint(3, 32000, (1, 24))  # TANGO pads to the longest caption: a ~20-word caption
        empty = torch.ones(1, 24, dtype=torch.long)
    _ready(text, student, vae, voc)
    with torch.no_grad():
        uncond = text(empty)
    return Pipeline(lambda: (text(ids), uncond), student, lat,
                    lambda z: voc(vae(z)[:, 0].transpose(1, 2)),
                    {"text": _count(text), "backbone": _count(student), "decoder": _count(vae, voc)})


def _audiolcm(dev, small: bool = False) -> Pipeline:
    w = 1 if not small else 16
    lat = (20, 312 // (1 if not small else 12))
    with torch.device(dev):
        clap = TextTransformer(12 // w or 1, 768 // w, 12 // w or 1, 3072 // w, vocab=30522,
                               out_dim=1024 // w)  # CLAP's BERT-base text branch
        t5 = TextTransformer(24 // w or 1, 1024 // w, 16 // w or 1, 4224 // w)  # T5-v1.1-Large encoder
        dit = DiT(DiTConfig(latent_channels=20, width=576 if not small else 72, depth=4 if not small else 1,
                            heads=8 if not small else 1, cond_dim=1024 // w, cross_kv_heads=8 if not small else 1))
        student = _student(dit, 0.5, lat)
        vae = VAEDecoder(20, 384 // w, (1, 2, 4), 2, 80, dims=1, kernel=5, up_levels=(1,))  # -> mel [1, 80, 624]
        voc = HiFiGAN(80, (4, 4, 2, 2, 2, 2), (8, 8, 4, 4, 4, 4), 1536 // w)  # BigVGAN-sized, hop 256
        ids_c, ids_t = torch.randint(3, 30000, (1, 77)), torch.randint(3, 32000, (1, 77))  # padded to 77
        empty = torch.ones(1, 77, dtype=torch.long)
    _ready(clap, t5, student, vae, voc)

    def encode():
        return torch.cat([clap(ids_c), t5(ids_t)], 1)

    with torch.no_grad():
        uncond = torch.cat([clap(empty), t5(empty)], 1)
    return Pipeline(lambda: (encode(), uncond), student, lat, lambda z: voc(vae(z)),
                    {"text": _count(clap, t5), "backbone": _count(student), "decoder": _count(vae, voc)})


PAPER_ARCHS: dict[str, Callable[..., Pipeline]] = {"soundctm-dit-1b": _soundctm_dit,
                                                   "consistencytta": _consistencytta, "audiolcm": _audiolcm}


def paper_pipeline(arch: str, device, *, small: bool = False) -> Pipeline:
    """The paper-size architecture `arch` with random weights on `device` (`small`: the same code at a size a
    CPU runs in seconds, for tests)."""
    if arch not in PAPER_ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(PAPER_ARCHS)}")
    return PAPER_ARCHS[arch](torch.device(device), small)


def tiny_pipeline(runner, system: SpeedSystem) -> Pipeline:
    """The tier's trained model of `system` (built or taken from the cache), its text encoder and VAE."""
    dev = runner.tier.device
    model = load_export(runner.exports(system.run)[0], dev)
    comp = runner.comp
    con = Conditioner.for_model(comp.text, model)
    unc = con.uncond.to(dev)
    return Pipeline(lambda: (con([CAPTION]).to(dev), unc), model, tuple(model.latent_shape), comp.vae.decode,
                    {"text": _count(comp.text), "backbone": _count(model), "decoder": _count(comp.vae)})


def time_pipeline(pipe: Pipeline, row: Row, device, repeats: int, warmup: int, always_uncond: bool,
                  seed: int = 0) -> list[float]:
    """Seconds of each of `repeats` end-to-end calls at batch 1 (text -> noise -> sampler -> decoder)."""

    def once():
        cond, uncond = pipe.encode()
        z_T = prior_noise([seed], pipe.latent_shape, device=device, generator_device=None)
        return pipe.decode(sample_row(row, pipe.model, z_T, cond, uncond, always_uncond=always_uncond))

    with torch.no_grad():
        return time_call(once, device, repeats, warmup)


def run_speed(table: SpeedTable, args, runner=None, *, repeats: int | None = None, log=print) -> dict:
    """Time every system x steps x {skipped, evaluated} and write results/<tier>/<name>.{json,md}."""
    runner = runner or make_runner(args)
    tier = runner.tier
    dev = tier.device
    repeats = repeats or tier.timing_repeats
    t0 = time.time()
    rows, seconds = [], {}
    for sysm in table.systems:
        pipe = (paper_pipeline(sysm.paper_arch, dev, small=table.small) if _paper_archs(tier)
                else tiny_pipeline(runner, sysm))
        for au, mode in zip((False, True), UNCOND):
            rec = {"system": sysm.name, "label": sysm.label, "ch_sr": sysm.ch_sr, "uncond_at_nu_1": mode,
                   "params": pipe.params, "seconds": {}, "median": {}, "paper": sysm.paper}
            for n in table.steps:
                row = Row(f"{sysm.name}-{n}", run=sysm.run, sampler=sysm.sampler, steps=n, omega=sysm.omega)
                ts = time_pipeline(pipe, row, dev, repeats, table.warmup, au, seed=args.seed)
                rec["seconds"][n], rec["median"][n] = ts, statistics.median(ts)
                if not au:
                    seconds[row.name] = ts
                log(f"[{table.name}] {sysm.name:15s} ∅ {mode:9s} {n} step(s): {statistics.median(ts):.4f} s")
            rows.append(rec)
        del pipe
    verdicts = [check(c, {}, seconds, {}) for c in table.claims]
    out = Path(args.out) if getattr(args, "out", None) else tier.results_dir
    meta = provenance(tier=tier.name, table=table.name, kind=KIND, batch=1, repeats=repeats, warmup=table.warmup,
                      device_type=torch.device(dev).type, seed=args.seed, wall_seconds=time.time() - t0)
    rec = {"meta": meta, "kind": KIND, "title": table.title, "description": table.description,
           "paper_device": table.paper_device, "steps": list(table.steps), "rows": rows,
           "verdicts": [v.__dict__ for v in verdicts]}
    write_json(out / f"{table.name}.json", rec)
    write_speed_csv(rec, out / f"{table.name}.csv")
    md = speed_markdown(table, rec)
    write_text(out / f"{table.name}.md", md)
    print(md)
    print(f"[{table.name}] wrote {out}/{table.name}.{{json,csv,md}} in {time.time() - t0:.0f} s", file=sys.stderr)
    return rec


def _at(by_steps: dict, n: int):
    """by_steps[n]: int keys in the record `run_speed` returns, str keys once it went through JSON."""
    return by_steps.get(n, by_steps.get(str(n)))


def speed_frame(rec: dict) -> pd.DataFrame:
    """One row per system x {unconditional branch skipped, evaluated} at nu = 1: the parameter counts, the median
    seconds per sample at each step count (of `repeats` calls; the JSON keeps every call) and the paper's seconds
    (on the rows timed as the paper's systems are compared: branch skipped). `rec`: a speed record (JSON or not)."""
    steps = rec["steps"]
    recs = []
    for r in rec["rows"]:
        p = r["params"]
        row = {"system": r["system"], "model": r["label"], "ch/sr": r["ch_sr"], "uncond_at_nu_1": r["uncond_at_nu_1"],
               "params text": p["text"], "params backbone": p["backbone"], "params decoder": p["decoder"],
               "repeats": rec["meta"]["repeats"]}
        row.update({f"{n} step(s) [s]": _at(r["median"], n) for n in steps})
        ours = r["uncond_at_nu_1"] == UNCOND[0]
        row.update({f"paper {n} [s]": _at(r["paper"], n) if ours else None for n in steps})
        recs.append(row)
    return pd.DataFrame.from_records(recs)


def write_speed_csv(rec: dict, path: str | Path) -> Path:
    """`speed_frame(rec)` as CSV at `path` (the speed table's <name>.csv beside its .json and .md)."""
    return write_text(path, speed_frame(rec).to_csv(index=False))


def speed_markdown(table: SpeedTable, rec: dict) -> str:
    steps = rec["steps"]
    head = ["Model", "ch/sr", "params (text / backbone / decoder)", "∅ at ν = 1",
            *[f"{n} step(s) [s]" for n in steps], *[f"paper {n} [s]" for n in steps]]
    lines = [f"# {rec['title']}", "", f"Device: {rec['meta']['device']} ({rec['meta']['tier']} tier); seconds per "
             f"sample at batch 1, median of {rec['meta']['repeats']} after {rec['meta']['warmup']} warm-up calls. "
             f"Paper: {rec['paper_device']}.", "",
             f"Generated by `{rec['meta']['command']}` at commit `{rec['meta']['git_commit']}`, "
             f"seed {rec['meta']['seed']}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rec["rows"]:
        p = r["params"]
        paper = [f"{r['paper'][n]:.3f}" if n in r["paper"] else "-" for n in steps] if r["uncond_at_nu_1"] == \
            UNCOND[0] else [""] * len(steps)
        cells = [r["label"], r["ch_sr"], f"{p['text'] / 1e6:.1f} M / {p['backbone'] / 1e6:.1f} M / "
                 f"{p['decoder'] / 1e6:.1f} M", r["uncond_at_nu_1"], *[f"{r['median'][n]:.4f}" for n in steps], *paper]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for v in rec["verdicts"]:
        lines.append(f"- **{'SUPPORTED' if v['supported'] else 'NOT SUPPORTED'}**: {v['claim']} {v['text']} — "
                     f"{v['detail']}")
    return "\n".join(lines) + "\n"
