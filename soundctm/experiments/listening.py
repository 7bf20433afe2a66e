"""Listening tests (Tables 4 and 9) as kits: a declaration, the stimuli export, the analysis.

A `ListeningTest` lists the systems to rate (`Row`s, exactly as the objective tables declare them,
so a row's model is the one Table 3 or Table 2 trains), the paper's OVAL/REL numbers and its
claims. `export_kit` writes a webMUSHRA kit for it:

    <kit>/configs/<name>.yaml                          the webMUSHRA config (OVAL and REL pages)
    <kit>/configs/resources/audio/<name>/tNN/*.wav     reference, anchor35, one file per system
    <kit>/manifest.json                                items, systems, loudness, file hashes, provenance
    <kit>/HOWTO.md                                     how to run it and analyse the ratings

Items: `n_items` test clips drawn at random (seeded) with one of their captions each; the item's
index in the runner's item order (unit u, caption k, sample 0 -> i = (u K + k) S) sets its prior
noise (seed + i) and, for a row pooling several training seeds, its model (seed number i mod n),
so a stimulus is the very sample the objective tables score for that item. Every trial holds the
hidden reference (the real test clip), the 3.5 kHz low-pass anchor and every system that can run
on the tier; rows that cannot (a baseline without a public checkpoint) are listed as not run.
All stimuli are loudness-normalised together (`mushra.loudness_plan`).

`analyze_kit` reads webMUSHRA's mushra.csv, post-screens the raters, prints mean +- 95 % CI per
system and criterion next to the paper's numbers, and decides the claims: "separated" (a's interval
lies above b's) and "overlap" (their intervals overlap). Each claim's self-test puts the low-pass
anchor in place of its subject; a claim the anchor also passes is BROKEN (the ratings do not
discriminate).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import soundfile as sf
import torch

from soundctm.experiments import mushra as M
from soundctm.experiments.generation import sample_row
from soundctm.experiments.main import make_runner, parser
from soundctm.experiments.spec import Items, Row, Run, rows_runs
from soundctm.experiments.tier import get_tier
from soundctm.io import atomic_write, settings_hash, sha256_file, write_json, write_text
from soundctm.nn.text import Conditioner
from soundctm.paths import MissingAssetsError
from soundctm.provenance import provenance
from soundctm.rng import prior_noise
from soundctm.train.checkpoint import load_export

__all__ = ["ListeningTest", "KitClaim", "Item", "choose_items", "export_kit", "analyze_kit", "decide_claims",
           "write_kit_result", "run_kit", "kit_cli", "KIND"]

KIND = "listening-test"
MANIFEST = "soundctm-mushra-kit"
CRITERIA_TEXT = {
    "OVAL": "<b>Overall quality (OVAL).</b> Rate the overall audio quality of each sound from 0 (bad) to 100 "
            "(excellent); the reference is a real recording. Ignore how well the sound fits the text.",
    "REL": "<b>Relevance to the text (REL).</b> Text: <i>{caption}</i><br/>Rate how well each sound matches "
           "this text from 0 (not at all) to 100 (perfectly). Ignore the audio quality.",
}


@dataclass(frozen=True)
class KitClaim:
    """`a` vs `b` on `criterion`: "separated" (a's 95 % CI above b's) or "overlap" (the CIs overlap)."""

    id: str
    text: str
    kind: str
    criterion: str
    a: str
    b: str
    subject: str | None = None

    def __post_init__(self):
        if self.kind not in ("separated", "overlap"):
            raise ValueError(f"claim {self.id}: kind must be 'separated' or 'overlap', got {self.kind!r}")


@dataclass(frozen=True)
class ListeningTest:
    """A listening test (`spec.Experiment`): the systems to rate, the paper's ratings and the claims; it exports a
    webMUSHRA kit (`export_kit`) and decides the claims on the ratings (`analyze_kit`)."""

    name: str
    title: str
    rows: tuple[Row, ...]  # the rated systems (paper=OVAL/REL numbers); not_run rows are listed only
    reference_paper: dict = field(default_factory=dict)  # the paper's ground-truth row
    claims: tuple[KitClaim, ...] = ()
    description: str = ""
    criteria: tuple[str, ...] = ("OVAL", "REL")
    n_items: int = 10  # the paper: 10 samples per model and criterion
    paper_raters: int | None = None
    anchor_hz: float = 3500.0
    target_lufs: float = M.TARGET_LUFS
    items: ClassVar[Items | None] = None  # no item set of its own: the runner's (its `n_items` are drawn from them)

    def __post_init__(self):
        names = [r.name for r in self.rows]
        for bad in (M.REFERENCE, M.ANCHOR):
            if bad in names:
                raise ValueError(f"{self.name}: {bad!r} is the kit's own stimulus, not a row name")
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate row names")
        for c in self.claims:
            for r in (c.a, c.b):
                if r not in names + [M.REFERENCE, M.ANCHOR]:
                    raise ValueError(f"{self.name}: claim {c.id} names {r!r}, which the test lacks")
            if c.criterion not in self.criteria:
                raise ValueError(f"{self.name}: claim {c.id}: unknown criterion {c.criterion!r}")
        if len(self.runnable) + 2 > 12:
            raise ValueError(f"{self.name}: webMUSHRA allows at most 12 conditions per trial")

    @property
    def score_rows(self) -> tuple[Row, ...]:
        """What `Runner.prepare` scores for it: its rows (the rated systems; not-run rows are skipped)."""
        return self.rows

    def model_runs(self, tier=None) -> tuple[Run, ...]:
        """The runs its systems sample, on any tier."""
        return rows_runs(self.rows)

    def execute(self, args, runner=None) -> dict:
        """Export the kit and write the result table (`run_kit`)."""
        return run_kit(self, args, runner)

    @property
    def runnable(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.not_run is None)

    @property
    def paper_columns(self) -> tuple[str, ...]:
        return self.criteria


@dataclass(frozen=True)
class Item:
    trial: str  # "t00"
    index: int  # the item's index in the runner's item order
    unit: int
    unit_id: str
    caption_index: int
    caption: str
    seed: int  # prior noise seed


def choose_items(runner, n: int, seed: int = 0) -> list[Item]:
    """`n` distinct test clips, each with one of its captions, drawn with `seed` (sorted by clip)."""
    units = runner.units
    if not 1 <= n <= len(units):
        raise ValueError(f"need 1..{len(units)} items (the test clips available), got {n}")
    rng = np.random.default_rng([int(seed), 1534])
    chosen = sorted(int(u) for u in rng.choice(len(units), size=n, replace=False))
    out = []
    for t, u in enumerate(chosen):
        k = int(rng.integers(runner.K))
        caps = units[u].captions
        out.append(Item(f"t{t:02d}", (u * runner.K + k) * runner.S, u, units[u].id, k, caps[k % len(caps)],
                        runner.seed + (u * runner.K + k) * runner.S))
    return out


@torch.no_grad()
def render_row(runner, row: Row, items: list[Item]) -> list[np.ndarray]:
    """Decoded audio of `row` for each item (the model of item i is the row's seed number i mod n)."""
    comp, dev = runner.comp, runner.tier.device
    exports = runner.exports(row.run)
    models = {}
    out = []
    for it in items:
        m = it.index % len(exports)
        if m not in models:
            models[m] = load_export(exports[m], dev)
        model = models[m]
        con = Conditioner.for_model(comp.text, model)
        z_T = prior_noise([it.seed], tuple(model.latent_shape), device=dev)
        z = sample_row(row, model, z_T, con([it.caption]).to(dev), con.uncond.to(dev), seeds=[it.seed])
        out.append(comp.vae.decode(z).float()[0, 0].cpu().numpy())
    return out


def _write_wav(path: Path, wav: np.ndarray, sr: int) -> None:
    atomic_write(path, lambda tmp: sf.write(tmp, np.clip(wav, -1.0, 1.0), sr, subtype="PCM_16", format="WAV"))


def export_kit(test: ListeningTest, runner, out_dir: str | Path, *, n_items: int | None = None,
               items_seed: int = 0, target_lufs: float | None = None, log=print) -> dict:
    """Write the kit (see the module docstring); returns the manifest."""
    out = Path(out_dir)
    t0 = time.time()
    items = choose_items(runner, n_items or test.n_items, items_seed)
    sr = int(runner.comp.sample_rate)
    log(f"[{test.name}] kit: {len(items)} items x ({len(test.runnable)} systems + reference + anchor) -> {out}")
    stimuli: dict[str, dict[str, np.ndarray]] = {}
    for it in items:
        ref = np.asarray(runner.units[it.unit].audio, dtype=np.float32)
        stimuli[it.trial] = {M.REFERENCE: ref, M.ANCHOR: M.lowpass_anchor(ref, sr, test.anchor_hz)}
    models = {}
    for row in test.runnable:
        log(f"[{test.name}]   {row.name}: {row.sampler} {row.steps} steps, ω={row.omega:g}"
            + (f", ν={row.nu:g}" if row.sampler == "ctm" else ""))
        for it, wav in zip(items, render_row(runner, row, items)):
            stimuli[it.trial][row.name] = M.fit_length(wav, len(stimuli[it.trial][M.REFERENCE]))
        models[row.name] = [str(p) for p in runner.exports(row.run)]
    flat = {f"{t}/{k}": v for t, d in stimuli.items() for k, v in d.items()}
    plan = M.loudness_plan(flat, sr, test.target_lufs if target_lufs is None else target_lufs)
    if plan.silent:
        log(f"[{test.name}]   silent stimuli (left as they are): {', '.join(plan.silent)}")
    rel_audio = f"configs/resources/audio/{test.name}"
    files = {}
    for key, wav in flat.items():
        rel = f"{rel_audio}/{key}.wav"
        _write_wav(out / rel, M.apply_gain(wav, plan.gains_db[key]), sr)
        files[rel] = sha256_file(out / rel)
    trials = [{"id": it.trial, "caption": it.caption, "reference": f"{rel_audio}/{it.trial}/{M.REFERENCE}.wav",
               "stimuli": {k: f"{rel_audio}/{it.trial}/{k}.wav" for k in stimuli[it.trial] if k != M.REFERENCE}}
              for it in items]
    header = (f"{test.title}: webMUSHRA configuration written by soundctm ({runner.tier.name} tier).\n"
              f"Copy the folder configs/ into the webMUSHRA root and open ?config={test.name}.yaml.\n"
              "Pages are named <criterion>-<item>; the analysis reads the criterion from that name.")
    intro = (f"You will rate {len(items)} sets of short sounds twice: once for their overall quality (OVAL) and "
             "once for how well they match a text (REL). Each page has a reference recording and several "
             "versions to rate on a 0-100 scale; one of them is the reference itself. Use headphones in a quiet "
             "room.")
    cfg = M.webmushra_yaml(f"soundctm_{test.name}", test.title, trials,
                           {c: CRITERIA_TEXT[c] for c in test.criteria}, intro, header)
    write_text(out / "configs" / f"{test.name}.yaml", cfg)
    files[f"configs/{test.name}.yaml"] = sha256_file(out / "configs" / f"{test.name}.yaml")
    manifest = {
        "format": MANIFEST, "version": 1, "test": test.name, "title": test.title, "tier": runner.tier.name,
        "sample_rate": sr, "criteria": list(test.criteria), "config": f"configs/{test.name}.yaml",
        "items": [vars(it) for it in items], "items_seed": items_seed,
        "reference": {"name": M.REFERENCE, "label": "Ground truth (hidden reference)", "paper": test.reference_paper},
        "anchor": {"name": M.ANCHOR, "label": f"low-pass anchor ({test.anchor_hz / 1000:g} kHz)",
                   "cutoff_hz": test.anchor_hz,
                   "filter": "linear-phase FIR, Kaiser window (beta 8), 32 ms, delay-compensated"},
        "systems": [_row_record(r, models.get(r.name)) for r in test.rows],
        "loudness": plan.to_dict(), "files": files, "fingerprint": settings_hash(files),
        "provenance": provenance(tier=runner.tier.name, table=test.name, wall_seconds=time.time() - t0,
                                 seed=runner.seed),
    }
    write_json(out / "manifest.json", manifest)
    write_text(out / "HOWTO.md", _howto(test, manifest))
    log(f"[{test.name}] kit written in {time.time() - t0:.0f} s (loudness target {plan.target:.1f} LUFS)")
    return manifest


def _row_record(r: Row, models) -> dict:
    student = r.sampler == "ctm" and r.source == "sampler"
    return {"name": r.name, "label": r.display, "sampler": r.sampler, "steps": r.steps, "omega": r.omega,
            "nu": r.nu if student else None, "gamma": r.gamma if student else None, "not_run": r.not_run,
            "paper": r.paper_dict(), "models": models}


def _howto(test: ListeningTest, manifest: dict) -> str:
    n = len(manifest["items"])
    return "\n".join([
        f"# {test.title}: listening-test kit", "",
        f"{n} items (random test clips, one caption each) x {len(test.criteria)} criteria "
        f"({', '.join(test.criteria)}); each trial rates the hidden reference, the "
        f"{manifest['anchor']['label']} and {len(test.runnable)} systems. Loudness: "
        f"{manifest['loudness']['target_lufs']:.1f} LUFS (ITU-R BS.1770-4) for every stimulus.", "",
        "1. Install webMUSHRA (a web server with PHP) and copy this kit's `configs/` folder into its root.",
        f"2. Open `http://<server>/webMUSHRA/?config={test.name}.yaml`; give every rater an id.",
        f"3. webMUSHRA writes `results/soundctm_{test.name}/mushra.csv`.",
        f"4. `python reproduce/{test.name}.py --analyze path/to/mushra.csv [--kit <this folder>]` post-screens "
        "the raters, prints mean ± 95 % CI per system next to the paper's numbers, decides the claims and "
        f"rewrites results/<tier>/{test.name}.{{json,md}}.", ""])


# ----------------------------------------------------------------------------------------------
# analysis


def _load_manifest(kit_dir: Path) -> dict:
    p = Path(kit_dir) / "manifest.json"
    if not p.is_file():
        raise FileNotFoundError(f"no kit manifest at {p}: export the kit first (python reproduce/<table>.py)")
    m = json.loads(p.read_text())
    if m.get("format") != MANIFEST:
        raise ValueError(f"{p} is not a listening-test kit manifest")
    return m


def decide_claims(claims, summary: dict | None, not_run: set[str]) -> list[dict]:
    """Each claim's verdict on the summary (None: no ratings yet), with the anchor self-test."""
    out = []
    for c in claims:
        rec = {"claim": c.id, "text": c.text, "supported": None, "self_test": None, "broken": False}
        missing = sorted({c.a, c.b} & not_run)
        if missing:
            rec.update(label="NOT DECIDED", detail=f"not run on this tier: {', '.join(missing)}")
        elif summary is None:
            rec.update(label="NOT DECIDED", detail="no ratings yet (run the kit, then --analyze mushra.csv)")
        else:
            ok, detail = _decide(c, summary)
            rec.update(supported=ok, detail=detail)
            if c.subject is not None:
                a, b = (M.ANCHOR if r == c.subject else r for r in (c.a, c.b))
                st = KitClaim(f"{c.id}/self-test", c.text, c.kind, c.criterion, a, b)
                st_ok, st_detail = _decide(st, summary)
                rec["self_test"] = {"claim": st.id, "supported": st_ok, "detail": st_detail}
                rec["broken"] = bool(st_ok)
            rec["label"] = ("BROKEN (the low-pass anchor passes it)" if rec["broken"] else
                            "SUPPORTED" if ok else "NOT SUPPORTED")
        out.append(rec)
    return out


def _decide(c: KitClaim, summary: dict) -> tuple[bool, str]:
    try:
        a, b = summary[c.a][c.criterion], summary[c.b][c.criterion]
    except KeyError as e:
        return False, f"no ratings of {e.args[0]!r} on {c.criterion}"
    fmt = lambda name, s: f"{name} {s['value']:.1f} [{s['lo']:.1f}, {s['hi']:.1f}]"
    if c.kind == "separated":
        return bool(a["lo"] > b["hi"]), f"{c.criterion}: {fmt(c.a, a)} above {fmt(c.b, b)} (needs a's CI above b's)"
    ok = bool(a["lo"] <= b["hi"] and b["lo"] <= a["hi"])
    return ok, f"{c.criterion}: {fmt(c.a, a)} vs {fmt(c.b, b)} (needs overlapping CIs)"


def analyze_kit(test: ListeningTest, csv_path, kit_dir, *, rater_column: str | None = None,
                threshold: float = 90.0, max_fraction: float = 0.15) -> dict:
    """Post-screen and summarise the ratings of a kit; writes <kit>/analysis.json and returns it."""
    manifest = _load_manifest(kit_dir)
    ratings = M.read_ratings(csv_path, tuple(manifest["criteria"]), rater_column)
    known = {s["name"] for s in manifest["systems"] if s["not_run"] is None} | {M.REFERENCE, M.ANCHOR}
    unknown = sorted(set(ratings.system) - known)
    if unknown:
        raise ValueError(f"{csv_path}: stimuli {unknown} are not in the kit {kit_dir} (systems: {sorted(known)})")
    screened, scr = M.post_screen(ratings, threshold, max_fraction)
    if screened.empty:
        raise ValueError(f"{csv_path}: every rater fails the post-screening ({scr.to_dict()['fraction_below']})")
    summary = M.summarize(screened)
    not_run = {s["name"] for s in manifest["systems"] if s["not_run"] is not None}
    rec = {"fingerprint": manifest["fingerprint"], "csv": str(Path(csv_path).resolve()),
           "n_ratings": int(len(ratings)), "screening": scr.to_dict(), "summary": summary,
           "claims": decide_claims(test.claims, summary, not_run)}
    write_json(Path(kit_dir) / "analysis.json", rec)
    return rec


# ----------------------------------------------------------------------------------------------
# the result table (results/<tier>/<name>.{json,md})


def write_kit_result(test: ListeningTest, manifest: dict, out_dir: str | Path, analysis: dict | None,
                     kit_dir: str | Path) -> dict:
    out_dir = Path(out_dir)
    summary = analysis["summary"] if analysis else None
    not_run = {s["name"] for s in manifest["systems"] if s["not_run"] is not None}
    rows = [{"row": M.REFERENCE, "model": manifest["reference"]["label"], "source": "real", "sampler": None,
             "steps": None, "omega": None, "nu": None, "gamma": None, "not_run": None,
             "paper": manifest["reference"]["paper"]},
            {"row": M.ANCHOR, "model": manifest["anchor"]["label"], "source": "anchor", "sampler": None,
             "steps": None, "omega": None, "nu": None, "gamma": None, "not_run": None, "paper": {}}]
    rows += [{"row": s["name"], "model": s["label"], "source": "sampler", "sampler": s["sampler"], "steps": s["steps"],
              "omega": s["omega"], "nu": s["nu"], "gamma": s["gamma"], "not_run": s["not_run"], "paper": s["paper"]}
             for s in manifest["systems"]]
    for r in rows:
        got = (summary or {}).get(r["row"], {})
        r["metrics"] = {c: {k: got[c][k] for k in ("value", "lo", "hi", "level", "n")} for c in test.criteria
                        if c in got}
    try:
        kit_rel = str(Path(kit_dir).resolve().relative_to(out_dir.resolve()))
    except ValueError:
        kit_rel = str(kit_dir)
    meta = provenance(tier=manifest["tier"], table=test.name, kind=KIND)
    record = {
        "meta": meta, "kind": KIND, "title": test.title, "description": test.description,
        "columns": {c: c for c in test.criteria}, "rows": rows,
        "claims": decide_claims(test.claims, summary, not_run),
        "kit": {"dir": kit_rel, "config": manifest["config"], "items": len(manifest["items"]),
                "fingerprint": manifest["fingerprint"], "loudness_lufs": manifest["loudness"]["target_lufs"],
                "rated": analysis is not None, "paper_raters": test.paper_raters,
                "screening": analysis["screening"] if analysis else None,
                "n_ratings": analysis["n_ratings"] if analysis else 0},
    }
    write_json(out_dir / f"{test.name}.json", record)
    write_text(out_dir / f"{test.name}.md", kit_markdown(test, record))
    return record


def kit_markdown(test: ListeningTest, rec: dict) -> str:
    kit = rec["kit"]
    lines = [f"# {test.title} — {rec['meta']['tier']} tier", ""]
    if test.description:
        lines += [test.description, ""]
    lines += [f"Listening-test kit `{kit['dir']}` (webMUSHRA config `{kit['config']}`): {kit['items']} items per "
              f"criterion, every stimulus at {kit['loudness_lufs']:.1f} LUFS (ITU-R BS.1770-4)."]
    if kit["rated"]:
        scr = kit["screening"]
        lines += [f"{kit['n_ratings']} ratings; post-screening: {scr['rule']}; raters kept {len(scr['kept'])}, "
                  f"excluded {len(scr['excluded'])}. Cells: mean ± 95 % CI (Student t over the ratings)."]
    else:
        lines += ["Not rated yet: our columns fill in after `--analyze mushra.csv`."]
    head = ["Method", "steps", "ω", "ν", *test.criteria, *(f"paper {c}" for c in test.criteria)]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    f1 = lambda v: "-" if v is None else f"{v:g}"
    for r in rec["rows"]:
        if r["not_run"]:
            ours = [f"not run: {r['not_run']}"] + [""] * (len(test.criteria) - 1)
        else:
            ours = [(f"{m['value']:.1f} ± {(m['hi'] - m['lo']) / 2:.2f}" if (m := r["metrics"].get(c)) else "-")
                    for c in test.criteria]
        paper = [f1(r["paper"].get(c)) for c in test.criteria]
        lines.append("| " + " | ".join([r["model"], f1(r["steps"]), f1(r["omega"]), f1(r["nu"]), *ours, *paper])
                     + " |")
    lines += ["", "## Claims", ""]
    for c in rec["claims"]:
        lines.append(f"- **{c['label']}**: {c['claim']} {c['text']} — {c['detail']}")
        if c["self_test"]:
            st = c["self_test"]
            ok = "NOT SUPPORTED, as it must be" if not st["supported"] else "SUPPORTED: the claim is broken"
            lines.append(f"  - self-test with the low-pass anchor in place of the system: {ok} — {st['detail']}")
    return "\n".join(lines) + "\n"


def _analysis_for(manifest: dict, kit_dir: Path) -> dict | None:
    p = kit_dir / "analysis.json"
    if not p.is_file():
        return None
    a = json.loads(p.read_text())
    return a if a.get("fingerprint") == manifest["fingerprint"] else None


# ----------------------------------------------------------------------------------------------
# command line


def kit_dir_for(test: ListeningTest, out_dir: Path, kit: str | None) -> Path:
    return Path(kit) if kit else out_dir / f"{test.name}-kit"


def run_kit(test: ListeningTest, args, runner=None) -> dict:
    """Export the kit (models built or taken from the cache) and write the result table; a previous
    analysis of the same stimuli (same fingerprint) is kept."""
    runner = runner or make_runner(args)
    out = Path(args.out) if getattr(args, "out", None) else runner.tier.results_dir
    kit = kit_dir_for(test, out, getattr(args, "kit", None))
    manifest = export_kit(test, runner, kit, n_items=getattr(args, "items", None),
                          items_seed=getattr(args, "items_seed", 0), target_lufs=getattr(args, "target_lufs", None))
    rec = write_kit_result(test, manifest, out, _analysis_for(manifest, kit), kit)
    print(kit_markdown(test, rec))
    print(f"[{test.name}] wrote {kit}/ and {out}/{test.name}.{{json,md}}")
    return rec


def _analyze(test: ListeningTest, args) -> dict:
    out = Path(args.out) if args.out else get_tier(args.tier).results_dir
    kit = kit_dir_for(test, out, args.kit)
    a = analyze_kit(test, args.analyze, kit, rater_column=args.rater_column)
    rec = write_kit_result(test, _load_manifest(kit), out, a, kit)
    print(kit_markdown(test, rec))
    return rec


def add_kit_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--items", type=int, default=None, help="items per criterion (default: the paper's 10)")
    ap.add_argument("--items-seed", type=int, default=0, help="seed of the random choice of test clips")
    ap.add_argument("--target-lufs", type=float, default=None, help=f"loudness target (default {M.TARGET_LUFS})")
    ap.add_argument("--kit", default=None, help="kit folder (default: <out>/<table>-kit)")
    ap.add_argument("--analyze", default=None, metavar="MUSHRA_CSV",
                    help="analyse webMUSHRA's mushra.csv for this kit instead of exporting it")
    ap.add_argument("--rater-column", default=None, help="CSV column naming the rater (default: session_uuid, "
                                                         "else rater_id)")


def kit_cli(test: ListeningTest, argv=None) -> int:
    ap = parser(test.description or test.title)
    add_kit_args(ap)
    args = ap.parse_args(argv)
    try:
        if args.analyze:
            _analyze(test, args)
        else:
            run_kit(test, args)
    except MissingAssetsError as e:
        print(str(e), file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as e:
        print(f"{test.name}: error: {e}", file=sys.stderr)
        return 2
    return 0
