"""Committed references: reading, checking, and explicitly updating them.

`soundctm/assets/tiny/` holds the committed tiny models (teacher, student, VAE, CLAP, event
classifier; package data, `soundctm.paths.committed_tiny_dir()`) and `results/tiny/regression.json` of
the source checkout the metrics they give on a fixed subset
(`REGRESSION`: the first 24 test clips, one caption, one sample). A normal run never writes either:

  * `compute()` regenerates the subset from the committed files and returns the record;
  * `compare(recorded, got)` lists every metric that moved beyond its tolerance and every claim
    whose verdict flipped (what the CI test asserts is empty);
  * `update_reference()` (only through `python reproduce/regression.py --update-reference`)
    copies models from the cache into `soundctm/assets/tiny/` and rewrites the record, printing old and new.

Tolerance: generation is deterministic on a CPU for a given torch build and thread count (same
z_T from per-item seeds, gamma = 0): two runs with the same thread count agree bit for bit. Across
thread counts the float reductions differ: measured on the committed checkpoints, 1 vs 2 threads
moved CLAP by up to 1.3e-4 relative and FD by 2e-7. The regression therefore computes with
`THREADS` threads, and `REL_TOL` (1e-3) leaves room for other CPUs' kernels while staying far below
what a real change does (a rho = 5 student grid moves the metrics by percents).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from soundctm.data.corpus import tiny_corpus
from soundctm.experiments.artifacts import file_sha
from soundctm.experiments.catalog import TEACHER, reference_rows, student_row, teacher_row
from soundctm.experiments.claims import check
from soundctm.experiments.runner import Runner
from soundctm.experiments.spec import Claim, Run, Table
from soundctm.experiments.stats import Bootstrap, metric_dists
from soundctm.experiments.tier import TINY, Tier, pinned_threads, tiny_components
from soundctm.io import load_safetensors, write_json
from soundctm.nn.text import get_text_encoder
from soundctm.nn.vae import AudioAutoencoder
from soundctm.paths import cache_dir, committed_tiny_dir
from soundctm.provenance import provenance
from soundctm.train.components import components_dir

__all__ = ["CHECKPOINTS", "RECORD", "REGRESSION", "REL_TOL", "committed_files", "committed_tier", "compute",
           "compare", "update_reference", "load_record", "cached_sources"]

REPO = Path(__file__).resolve().parents[2]
CHECKPOINTS = committed_tiny_dir()
RECORD = REPO / "results" / "tiny" / "regression.json"  # of the source checkout (not part of the wheel)
REL_TOL = 1e-3  # relative; plus ABS_TOL for values near 0
THREADS = 1  # generation threads of the regression (results are bit-identical for a fixed count)
ABS_TOL = 1e-6
N_UNITS = 24

_STUDENT1 = Run("student", "dit", options={"distance": "d_teacher"}, seeds=(0,), teacher=TEACHER)
REGRESSION = Table(
    name="regression",
    title="CI regression subset (committed tiny checkpoints)",
    metrics=("fd", "kid", "kl", "clap"),
    rows=(teacher_row(), student_row(1, run=_STUDENT1), student_row(4, run=_STUDENT1),
          student_row(16, nu=5.0, run=_STUDENT1), *reference_rows("vae-recon", "zeros")),
    claims=(
        Claim("(b-fd)", "FD improves from 1 to 16 steps", "improves", "fd", "student-1", "student-16",
              subject="student-16"),
        Claim("(c-fd)", "student-16 close to the teacher on q(FD)", "close", "fd", "student-16", "teacher",
              margin=0.1, subject="student-16"),
    ),
)


def committed_files(root: Path = CHECKPOINTS) -> dict[str, Path]:
    return {"teacher": root / "teacher-tiny-dit.safetensors", "student": root / "student-tiny-dit.safetensors",
            "vae": root / "vae.safetensors", "clap": root / "clap.safetensors", "evaluators": root / "evaluators"}


def committed_tier(root: Path = CHECKPOINTS) -> Tier:
    """The tiny tier with every model taken from the committed files (nothing is trained)."""

    files = committed_files(root)
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        raise FileNotFoundError(f"committed checkpoints missing: {missing} "
                                "(restore them with git, or `python reproduce/regression.py --update-reference`)")

    def load(cache=None):
        corpus = tiny_corpus(cache, progress=False)
        for kind in ("vae", "clap"):
            built_for = load_safetensors(files[kind])[1].get("extra", {}).get("corpus")
            if built_for is not None and built_for != corpus.corpus_id:
                raise ValueError(f"{files[kind]} was built for corpus {built_for}, but the corpus here is "
                                 f"{corpus.corpus_id}: its inputs changed. Rebuild and commit it explicitly with "
                                 "`python reproduce/regression.py --update-reference` (nothing is rebuilt implicitly)")
        vae = AudioAutoencoder.load(files["vae"]).eval().requires_grad_(False)
        clap = get_text_encoder("tiny-clap", path=files["clap"]).eval()
        return tiny_components(corpus, vae, clap, evaluators=files["evaluators"])

    def build(run, teacher_export, cache=None):
        if run.options and dict(run.options) != {"distance": "d_teacher"} or run.seeds != (0,):
            raise ValueError(f"no committed checkpoint for {run.settings()}")
        return files[run.kind]

    return replace(TINY, load=load, build=build, samples_per_caption=1, captions_per_unit=1, n_units=N_UNITS,
                   n_boot=200)


def compute(cache=None, root: Path = CHECKPOINTS, log=print, rows: tuple[str, ...] | None = None) -> dict:
    """The regression record of the committed checkpoints (metrics, verdicts, file hashes), computed
    in a fresh artifact store. `rows`: only these rows' metrics (no verdicts), for quick checks."""

    tier = committed_tier(root)
    with tempfile.TemporaryDirectory(prefix="soundctm-regression-") as store, pinned_threads(THREADS):
        return _compute(Runner(tier, cache, store=store, log=log), tier, root, rows)  # never reuse artifacts


def _compute(runner: Runner, tier: Tier, root: Path, only=None) -> dict:
    ref = runner.reference()
    boot = Bootstrap(len(runner.units), tier.n_boot, 0)
    dists = {}
    metrics = {}
    for r in REGRESSION.rows:
        if only is not None and r.name not in only:
            continue
        dists[r.name] = metric_dists(runner.scores(r), ref, REGRESSION.metrics, boot)
        metrics[r.name] = {f"{m}": d.value for m, d in dists[r.name].items()}
        if r.source == "sampler":
            metrics[r.name]["latent_mean_abs"] = float(runner.latents(r).abs().mean())
    if only is not None:
        return {"metrics": metrics}
    checked = [check(c, dists) for c in REGRESSION.claims]
    verdicts = {v.claim: v.supported for v in checked}
    self_tests = {v.claim: v.self_test.supported for v in checked}
    files = {k: file_sha(p) for k, p in committed_files(root).items() if p.is_file()}
    return {"metrics": metrics, "verdicts": verdicts, "self_tests": self_tests, "files": files}


def load_record(path: Path = RECORD) -> dict:
    return json.loads(Path(path).read_text())


def _tol(ref: float) -> float:
    return REL_TOL * abs(ref) + ABS_TOL


def compare(recorded: dict, got: dict) -> list[str]:
    """Every difference that fails the regression (empty: it passes). A `got` computed for some rows
    only is compared on those rows."""
    moved = []
    partial = "verdicts" not in got
    for row, ms in recorded["metrics"].items():
        if partial and row not in got["metrics"]:
            continue
        if row not in got["metrics"]:
            moved.append(f"{row}: missing")
            continue
        for name, ref in ms.items():
            new = got["metrics"][row].get(name)
            if new is None or abs(new - ref) > _tol(ref):
                moved.append(f"{row} {name}: recorded {ref:.7g}, now {new if new is None else f'{new:.7g}'} "
                             f"(tolerance {_tol(ref):.2g})")
    for key in () if partial else ("verdicts", "self_tests"):
        for claim, ok in recorded.get(key, {}).items():
            if got[key].get(claim) != ok:
                moved.append(f"{key[:-1]} {claim} flipped: recorded {ok}, now {got[key].get(claim)}")
    return moved


def update_reference(cache=None, *, sources: dict[str, Path] | None = None, root: Path = CHECKPOINTS,
                     record: Path = RECORD, log=print) -> dict:
    """Copy `sources` (kind -> file; "evt" -> an evaluator file) into the committed checkpoints, then
    recompute and rewrite the regression record; prints what changed. The only writer of both."""
    files = committed_files(root)
    for kind, src in (sources or {}).items():
        dst = files["evaluators"] / Path(src).name if kind == "evt" else files[kind]
        old = file_sha(dst) if dst.exists() else None
        new = file_sha(src)
        if old != new:
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_suffix(dst.suffix + ".tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)
        log(f"[update-reference] {dst.relative_to(REPO) if dst.is_relative_to(REPO) else dst}: {old} -> {new}")
    got = compute(cache, root, log=log)
    old = load_record(record) if Path(record).exists() else {"metrics": {}}
    for row, ms in got["metrics"].items():
        for name, v in ms.items():
            o = old["metrics"].get(row, {}).get(name)
            log(f"[update-reference] {row:12s} {name:16s} {'-' if o is None else f'{o:.7g}':>14s} -> {v:.7g}")
    got["meta"] = provenance(tier="tiny", n_units=N_UNITS, rel_tol=REL_TOL, abs_tol=ABS_TOL, threads=THREADS)
    write_json(record, got)
    return got


def cached_sources(cache=None) -> dict[str, Path]:
    """The tiny tier's models as the cache holds them (built if missing): what `update_reference` commits."""

    teacher = TINY.build(TEACHER, None, cache)
    student = TINY.build(_STUDENT1, teacher, cache)
    TINY.load(cache)  # builds the VAE, CLAP and evaluator if absent
    comp = components_dir(cache)
    root = Path(cache).expanduser() if cache is not None else cache_dir()
    evts = sorted((root / "tiny" / "evaluators").glob("tiny-evt-v*.safetensors"), key=lambda p: p.stat().st_mtime)
    out = {"teacher": teacher, "student": student, "vae": comp / "vae.safetensors", "clap": comp / "clap.safetensors"}
    if evts:
        out["evt"] = evts[-1]
    return out
