"""`cli(table, argv)`: the command line every `reproduce/tableN.py` shares; `run_table`: run any experiment
(`spec.Experiment`: its `execute`); `run_scored`: what a scored `Table` executes."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from soundctm.apps.plots import MissingPlotting
from soundctm.experiments.report import to_markdown, write_result
from soundctm.experiments.runner import Runner
from soundctm.experiments.spec import Experiment, Table, set_table_executor
from soundctm.experiments.tier import get_tier
from soundctm.paths import MissingAssetsError

__all__ = ["parser", "cli", "run_table", "run_scored", "make_runner", "items_runner"]


def parser(description: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tier", default="tiny", help="tiny (CPU, default) or paper (GPUs, AudioCaps, your weights)")
    ap.add_argument("--cache", default=None, help="artifact cache (default: $SOUNDCTM_CACHE or ~/.cache/soundctm)")
    ap.add_argument("--out", default=None, help="output directory (default: results/<tier>)")
    ap.add_argument("--seed", type=int, default=0, help="prior noise of item i comes from seed + i")
    ap.add_argument("--units", type=int, default=None, help="use only the first N test clips (a quick look)")
    ap.add_argument("--samples-per-caption", type=int, default=None)
    ap.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples (default: the tier's)")
    ap.add_argument("--workers", type=int, default=0,
                    help="N > 1: trainings and rows as Ray tasks, at most N at once (a local Ray session when no "
                         "cluster runs); 1: all in this process; 0 (default): Ray tasks when a Ray cluster is "
                         "running (ray submit, RAY_ADDRESS), else in this process")
    ap.add_argument("--store", default=os.environ.get("SOUNDCTM_STORE"),
                    help="artifact store: a folder (on a cluster one every node mounts at the same path) or a URI "
                         "(s3://bucket/prefix, gs://..., file://...) (default: $SOUNDCTM_STORE or "
                         "<cache>/<tier>/artifacts)")
    ap.add_argument("--max-retries", type=int, default=3,
                    help="Ray: run a task again this many times when its worker or node dies (default 3)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return ap


def make_runner(args) -> Runner:
    if args.threads:
        torch.set_num_threads(args.threads)
    return Runner(get_tier(args.tier), args.cache, workers=args.workers, seed=args.seed, n_units=args.units,
                  samples_per_caption=args.samples_per_caption, n_boot=args.n_boot, store=args.store,
                  max_retries=args.max_retries)


def items_runner(table: Experiment, args, runner: Runner) -> Runner:
    """The runner for `table`: `runner`, or, for a table that declares its own item set (`Table.items`, e.g.
    `Items(samples_per_caption=1)` for a grid of many rows), the same runner on those items, unless the command
    line gives --units or --samples-per-caption."""
    items = table.items
    if items is None or getattr(args, "units", None) is not None or getattr(args, "samples_per_caption", None):
        return runner
    return runner.with_items(n_units=items.n_units, samples_per_caption=items.samples_per_caption)


def component_checksums(identity: dict) -> dict[str, str]:
    """The checksums among a tier's component identity (corpus, VAE, text encoder, ...): what a table's
    provenance records, so that tables made with different components can be told apart."""
    return {k: v for k, v in identity.items() if isinstance(v, str)}


def run_scored(table: Table, args, runner: Runner | None = None) -> dict:
    """Score `table` (with `runner`, shared between tables, or a new one; on the table's own item set) and write
    its files and figures: what `Table.execute` runs."""
    runner = items_runner(table, args, runner or make_runner(args))
    tier = runner.tier
    res = runner.run(table)
    out = Path(args.out) if args.out else tier.results_dir
    rec = write_result(res, out, seed=args.seed, n_units=len(runner.units), captions_per_unit=runner.K,
                       samples_per_caption=runner.S, n_boot=runner.n_boot,
                       components=component_checksums(runner.comp.identity))
    print()
    print(to_markdown(res, rec["meta"]))
    print(f"[{table.name}] wrote {out}/{table.name}.{{csv,md,json}} in {res.wall_seconds:.0f} s")
    for figure in table.figures:  # a table's PNG figures: figure(runner, result, out) -> path
        try:
            print(f"[{table.name}] wrote {figure(runner, res, out)}")
        except MissingPlotting as e:
            print(f"[{table.name}] figure {getattr(figure, '__name__', figure)} not drawn: {e}", file=sys.stderr)
    return rec


set_table_executor(run_scored)


def run_table(table: Experiment, args, runner: Runner | None = None) -> dict:
    """Run `table` (with `runner`, shared between tables, or a new one) and write its files: `table.execute`, i.e.
    a table's scores (`run_scored`), a listening test's kit (Tables 4, 9: `experiments.listening.run_kit`), a
    speed table's timings (Table 8: `experiments.speed.run_speed`)."""
    return table.execute(args, runner)


def cli(table: Experiment, argv=None) -> int:
    args = parser(table.description or table.title).parse_args(argv)
    try:
        run_table(table, args)
    except MissingAssetsError as e:
        print(f"{e}", file=sys.stderr)
        return 2
    return 0
