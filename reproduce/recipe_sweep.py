#!/usr/bin/env python
"""The tiny distillation recipe, chosen on validation captions: one short distillation per lever, each scored by
its teacher-ODE error (`soundctm.fidelity`) at every checkpoint, before any table is re-run.

    python reproduce/recipe_sweep.py                      # every variant (resumes; finished runs are reused)
    python reproduce/recipe_sweep.py --only base lr1e-3   # some of them
    python reproduce/recipe_sweep.py --list               # the variants and their settings

Each variant is `tiny_student_config(...)` of the committed tiny DiT teacher with its settings changed; a run lives
in `<cache>/tiny/recipe/<variant>-<key>/` and is resumable (kill it, start it again). The variants share the
teacher's solves through the teacher-target bank (`target_bank="auto"`): those whose draws are the same (every
lever but `k_sampling` and `max_ode_steps`) read one stored stream, bit-identically. The curves (1/2/4/16-step
error at omega 2 and 5, the omega response, with 95 % bootstrap intervals over the 40 validation items) are written
to `results/tiny/recipe_sweep.json` with the provenance of the run, and printed as a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from soundctm.data.latent_cache import file_checksum
from soundctm.io import write_json, write_text
from soundctm.paths import cache_dir, committed_tiny_dir
from soundctm.provenance import provenance
from soundctm.train.distill import tiny_student_config
from soundctm.train.loop import run_training
from soundctm.train.tiny import run_key, train_tiny_teacher

STEPS = 600
FAST = dict(lr=1e-3, warmup_steps=50, lr_final_fraction=0.05)
# the helpful levers together
COMBO = dict(FAST, lr=2e-3, export_ema_std=0.1, k_sampling="per-batch", max_ode_steps=16)
# name -> settings over tiny_student_config's (300 steps of the committed recipe made `STEPS` long)
VARIANTS: dict[str, dict] = {
    "base": {},
    "lr1e-3-cos": dict(FAST),
    "lr1e-3-cos-ema0.1": dict(FAST, export_ema_std=0.1),
    "lr1e-3-cos-ema0.1-dsm0": dict(FAST, export_ema_std=0.1, dsm_weight=0.0),
    "lr1e-3-cos-ema0.1-perbatch": dict(FAST, export_ema_std=0.1, k_sampling="per-batch"),
    "lr1e-3-cos-ema0.1-ode4": dict(FAST, export_ema_std=0.1, max_ode_steps=4),
    "lr2e-3-cos-ema0.1": dict(FAST, lr=2e-3, export_ema_std=0.1),
    "lr1e-3-cos-ema0.1-mu0.99": dict(FAST, export_ema_std=0.1, ema_mu=0.99),
    "lr1e-3-cos-ema0.1-ode16": dict(FAST, export_ema_std=0.1, max_ode_steps=16),
    "lr1e-3-cos-ema0.1-dsm0-ode16": dict(FAST, export_ema_std=0.1, dsm_weight=0.0, max_ode_steps=16),
    "lr2e-3-cos-ema0.1-perbatch-ode16": dict(COMBO),
    # the combination with the CTM distance measured where the fidelity is (l2 at s = 0), and without DSM
    "lr2e-3-cos-ema0.1-perbatch-ode16-l2_0": dict(COMBO, distance="l2_0"),
    "lr2e-3-cos-ema0.1-perbatch-ode16-dsm0": dict(COMBO, dsm_weight=0.0),
    # where few-step sampling jumps: s at the grid's end for half the examples (the same teacher solves, so the
    # l2@0 combination's bank), and t at sigma_max for a quarter besides (its own solves)
    "lr2e-3-cos-ema0.1-perbatch-ode16-l2_0-send0.5": dict(COMBO, distance="l2_0", s_end_fraction=0.5),
    "lr2e-3-cos-ema0.1-perbatch-ode16-l2_0-tmax0.25-send0.5": dict(COMBO, distance="l2_0", t_max_fraction=0.25,
                                                                   s_end_fraction=0.5),
    "lr3e-3-cos-ema0.1-perbatch-ode16-l2_0-send0.5": dict(COMBO, lr=3e-3, distance="l2_0", s_end_fraction=0.5),
    "lr2e-3-cos-ema0.1-perbatch-ode16-l2_0-send0.9": dict(COMBO, distance="l2_0", s_end_fraction=0.9),
    # the combination at the preset's solve length (at most 8 grid steps): the per-student time budget
    "lr2e-3-cos-ema0.1-perbatch": dict(FAST, lr=2e-3, export_ema_std=0.1, k_sampling="per-batch"),
    # diagnostic: one omega only (is fitting two omegas with one omega-blind student what holds the error up?)
    "lr1e-3-cos-ema0.1-perbatch-w5only": dict(FAST, export_ema_std=0.1, k_sampling="per-batch",
                                               omega_range=(5.0, 5.0)),
}
# variants trained longer than `--steps` (their curve continues past it)
LONG = {"lr1e-3-cos-ema0.1-perbatch-1800": ("lr1e-3-cos-ema0.1-perbatch", 1800),
        "lr2e-3-cos-ema0.1-perbatch-ode16-l2_0-1800": ("lr2e-3-cos-ema0.1-perbatch-ode16-l2_0", 1800)}


TEACHERS = ("teacher-tiny-dit (committed) for the DiT variants, the tiny UNet teacher of the cache for the 'unet:' "
            "ones (each variant names its teacher file)")


def teacher_for(preset: str) -> Path:
    """The teacher export a sweep on `preset` distils: the committed tiny DiT teacher, or the tiny UNet teacher
    (trained once in the cache)."""
    if preset == "tiny-dit":
        return committed_tiny_dir() / "teacher-tiny-dit.safetensors"
    return train_tiny_teacher(preset=preset, progress=False, log=lambda *a, **k: None)


def run_dir_of(name: str, cfg, teacher: Path, root: Path) -> Path:
    return root / f"{name}-{run_key(cfg, {'teacher': file_checksum(teacher)})}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", metavar="VARIANT", help="these variants only")
    ap.add_argument("--steps", type=int, default=STEPS, help=f"training steps of every variant (default {STEPS})")
    ap.add_argument("--checkpoint-every", type=int, default=150, help="steps between fidelity checkpoints")
    ap.add_argument("--preset", default="tiny-dit", choices=("tiny-dit", "tiny-unet"),
                    help="the student's backbone: tiny-dit (the committed teacher) or tiny-unet (the tiny UNet "
                         "teacher, trained once in the cache); UNet variants are recorded as 'unet:<variant>'")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="results/tiny/recipe_sweep.json")
    ap.add_argument("--list", action="store_true", help="print the variants and exit")
    ap.add_argument("--render", action="store_true", help="only rewrite the .md beside --out from its JSON")
    ap.add_argument("--paired", nargs="+", metavar="VARIANT",
                    help="the first variant against each of the others, paired over the validation items (their "
                         "recorded exports; the differences' intervals go to <out>_paired-<first>.json)")
    args = ap.parse_args(argv)
    variants = {**VARIANTS, **{n: VARIANTS[base] for n, (base, _) in LONG.items()}}
    names = args.only or list(VARIANTS)
    unknown = [n for n in names if n not in variants]
    if unknown:
        print(f"recipe_sweep: error: unknown variant(s) {unknown}; known: {list(variants)}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if args.render:
        write_text(out.with_suffix(".md"), render_markdown(json.loads(out.read_text())))
        return 0
    if args.paired:
        return paired(args.paired, out, args.threads)
    if args.list:
        for n in names:
            print(f"{n:36s} {LONG[n][1] if n in LONG else args.steps:5d} steps  {variants[n]}")
        return 0
    teacher = teacher_for(args.preset)
    prefix = "" if args.preset == "tiny-dit" else "unet:"
    root = cache_dir() / "tiny" / "recipe"
    old = json.loads(out.read_text()) if out.exists() else {"meta": {}, "variants": {}}
    done = old["variants"]
    for v in done.values():  # a variant keeps the commit and time it was measured at
        v.setdefault("measured", {k: old["meta"].get(k) for k in ("git_commit", "time")})
    here = provenance()
    for name in names:
        steps = LONG[name][1] if name in LONG else args.steps
        cfg = tiny_student_config(teacher, args.preset, steps=steps, checkpoint_every=args.checkpoint_every,
                                  keep_checkpoints=1, threads=args.threads, target_bank="auto",
                                  **variants[name])
        rd = run_dir_of(prefix.replace(":", "-") + name, cfg, teacher, root)
        t0 = time.perf_counter()
        summary_path = rd / "summary.json"
        if summary_path.exists():
            summary = json.loads(summary_path.read_text())
        else:
            summary = run_training(cfg, rd, progress=False, log=lambda *a, **k: None)
        done[prefix + name] = {"settings": variants[name], "steps": steps, "run_dir": rd.name, "preset": args.preset,
                               "teacher": teacher.name,
                      "train_seconds": summary.get("train_seconds"), "fidelity_curve": summary["fidelity_curve"],
                      "measured": {k: here.get(k) for k in ("git_commit", "time")}}
        last = summary["fidelity_curve"][-1]
        print(f"{name:32s} {time.perf_counter() - t0:7.0f} s  " + json.dumps(_brief(last)), flush=True)
        write_json(out, {"meta": provenance(tier="tiny", teacher=TEACHERS, threads=args.threads,
                                            probe="40 validation clips (first caption), seeds 10000+i"),
                         "variants": done})
        write_text(out.with_suffix(".md"), render_markdown(json.loads(out.read_text())))
    return 0


def paired(names: list[str], out: Path, threads: int) -> int:
    """The first variant's teacher-ODE error minus each other's, item by item on the 40 validation items (1 and
    4 steps, omega 2 and 5), with 95 % bootstrap intervals of the mean difference; negative = the first is
    closer to its teacher's ODE. Reads the exports the sweep recorded for them."""
    import torch

    from soundctm import fidelity
    from soundctm.train.checkpoint import load_export
    from soundctm.train.distill import validation_probe

    record = json.loads(out.read_text()) if out.exists() else {"variants": {}}
    missing = [n for n in names if n not in record["variants"]]
    if len(names) < 2 or missing:
        print(f"recipe_sweep: error: --paired needs two or more variants recorded in {out}"
              + (f"; not recorded: {missing}" if missing else ""), file=sys.stderr)
        return 2
    torch.set_num_threads(threads)
    root = cache_dir() / "tiny" / "recipe"
    students = {n: load_export(root / record["variants"][n]["run_dir"] / "export.safetensors") for n in names}
    presets = {record["variants"][n].get("preset", "tiny-dit") for n in names}
    if len(presets) != 1:
        print(f"recipe_sweep: error: --paired variants have different teachers {sorted(presets)}", file=sys.stderr)
        return 2
    tpath = teacher_for(presets.pop())
    tname = tpath.name
    teacher = load_export(tpath)
    probe = validation_probe(teacher, teacher.preset, None, 40, "cpu")
    errs = {n: fidelity.fidelity_errors(fidelity.student_samples(m, probe, (1, 4)), probe) for n, m in students.items()}
    first = names[0]
    result = {}
    for other in names[1:]:
        result[other] = {f"w{w:g}/{k}": fidelity.bootstrap_mean(errs[first][(w, k)] - errs[other][(w, k)])
                         for (w, k) in errs[first]}
        print(f"{first} - {other}: " + ", ".join(f"{key} {_cell(d)}" for key, d in result[other].items()))
    write_json(out.with_name(f"{out.stem}_paired-{first.replace(':', '-')}.json"),
               {"meta": provenance(tier="tiny", threads=threads, teacher=tname, first=first,
                                   probe="40 validation clips (first caption), seeds 10000+i",
                                   what="mean over items of (first's error - other's error), 95 % bootstrap"),
                "differences": result})
    return 0


def _cell(d: dict, digits: int = 3) -> str:
    return f"{d['value']:.{digits}f} [{d['lo']:.{digits}f}, {d['hi']:.{digits}f}]"


def render_markdown(record: dict) -> str:
    """The sweep as tables: each variant's last checkpoint (1/2/4/16-step error at each omega, the omega
    response at 4 steps beside the teacher's, training seconds), then every variant's curve at its checkpoints."""
    meta, variants = record["meta"], record["variants"]
    lines = ["# Tiny distillation recipe sweep (teacher-ODE error on validation captions)", "",
             f"Measured by `python reproduce/recipe_sweep.py` on {meta.get('device')}, {meta.get('threads')} "
             f"thread(s), each variant at the commit of its last column; probe: {meta.get('probe')}; teacher: "
             f"{meta.get('teacher')}. Mean [95 % bootstrap interval over items]. Train seconds include the "
             "checkpoints' fidelity evaluations; variants with the same draws read one teacher-target bank, so "
             "their times are not comparable with the first variant of a stream; up to four runs shared the machine's "
             "two cores at a time, so the seconds compare only roughly.", "",
             "## Last checkpoint", "",
             "| variant | steps | ω 5, 1 step | ω 5, 4 steps | ω 2, 1 step | ω 2, 4 steps | ω response (4 steps) | "
             "teacher's ω response | train s | commit |", "|---|--:|---|---|---|---|---|---|--:|---|"]
    for name, v in variants.items():
        last = v["fidelity_curve"][-1]["fidelity"]
        e = last["error"]
        secs = "–" if v.get("train_seconds") is None else f"{v['train_seconds']:.0f}"
        lines.append(f"| {name} | {v['steps']} | {_cell(e['w5']['1'])} | {_cell(e['w5']['4'])} | "
                     f"{_cell(e['w2']['1'])} | {_cell(e['w2']['4'])} | {_cell(last['omega_response']['4'], 4)} | "
                     f"{_cell(last['teacher_omega_response'])} | {secs} | "
                     f"{(v.get('measured') or {}).get('git_commit') or meta.get('git_commit')} |")
    lines += ["", "## Curves (ω 5 and ω 2: 1-step / 4-step error; ω response at 4 steps)", "",
              "| variant | step | ω 5: 1 / 4 | ω 2: 1 / 4 | ω response |", "|---|--:|---|---|---|"]
    for name, v in variants.items():
        for pt in v["fidelity_curve"]:
            e, f = pt["fidelity"]["error"], pt["fidelity"]
            lines.append(f"| {name} | {pt['step']} | {e['w5']['1']['value']:.3f} / {e['w5']['4']['value']:.3f} | "
                         f"{e['w2']['1']['value']:.3f} / {e['w2']['4']['value']:.3f} | "
                         f"{f['omega_response']['4']['value']:.4f} |")
    return "\n".join(lines) + "\n"


def _brief(point: dict) -> dict:
    f = point["fidelity"]
    out = {"step": point["step"]}
    for om, by_n in f["error"].items():
        for n in ("1", "4"):
            out[f"{om}/{n}"] = round(by_n[n]["value"], 3)
    if "omega_response" in f:
        out["resp4"] = round(f["omega_response"]["4"]["value"], 4)
        out["teacher_resp"] = round(f["teacher_omega_response"]["value"], 4)
    return out


if __name__ == "__main__":
    sys.exit(main())
