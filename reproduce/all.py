#!/usr/bin/env python
"""Run any subset of the reproduced tables, sharing one runner and its cached artifacts.

    python reproduce/all.py                      # every table, tiny tier
    python reproduce/all.py --tables 3,instrument
    ray submit cluster.yaml reproduce/all.py --tier paper

`ray submit` copies only this file to the head node; cluster.yaml ships and installs the repository,
and this script finds the table declarations through the installed package.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

# registry: table id -> declaration script (each defines TABLE)
TABLES = {"instrument": "instrument.py", "1": "table1.py", "2": "table2.py", "3": "table3.py", "6": "table6.py",
          "8": "table8.py", "7": "table7.py", "content": "content.py", "10": "table10.py",
          "11": "table11.py", "12": "table12.py", "13": "table13.py", "5": "table5.py", "14": "table14.py",
          "4": "table4.py", "9": "table9.py",
          "nu_omega": "nu_omega.py", "steps_diagnostic": "steps_diagnostic.py"}


def _script_dir() -> Path:
    here = Path(__file__).resolve().parent
    if (here / "table3.py").exists():
        return here
    import soundctm  # installed from the shipped repository (cluster.yaml)

    return Path(soundctm.__file__).resolve().parent.parent / "reproduce"


def load_table(key: str):
    key = key.removeprefix("table")
    if key not in TABLES:
        raise SystemExit(f"unknown table {key!r}; known: {', '.join(TABLES)}")
    path = _script_dir() / TABLES[key]
    spec = importlib.util.spec_from_file_location(f"reproduce_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.TABLE


def main(argv=None) -> int:
    sys.path.insert(0, str(_script_dir().parent))
    from soundctm.experiments.main import items_runner, make_runner, parser, run_table
    from soundctm.experiments.progress import Progress, training_keys
    from soundctm.experiments.runner import prepare_graph
    from soundctm.paths import MissingAssetsError

    ap = parser(__doc__)
    ap.add_argument("--tables", default=",".join(TABLES), help="comma-separated ids (default: all)")
    ap.add_argument("--no-report", action="store_true", help="do not write results/<tier>/index.html")
    ap.add_argument("--no-progress", action="store_true", help="no [progress] lines (trainings, rows, pair rows, "
                    "tables: done / planned, what runs, ETA from the measured durations)")
    args = ap.parse_args(argv)
    tables = [load_table(k.strip()) for k in args.tables.split(",") if k.strip()]
    try:
        runner = make_runner(args)
        progress = None if args.no_progress else Progress(workers=args.workers)
        runner.events = progress
        groups: dict[str, list] = {}  # tables by their item set (a table's own: Table.extra["items"])
        for t in tables:
            groups.setdefault(repr(sorted(getattr(t, "extra", {}).get("items", {}).items())), []).append(t)
        runners = {k: items_runner(ts[0], args, runner) for k, ts in groups.items()}
        if progress is not None:
            progress.plan("train", training_keys(tables, runner.tier))
            progress.plan_tables(len(tables))
            for k, ts in groups.items():
                r = runners[k]
                progress.plan("score", [r.score_node(x) for x in r.prepare_rows(ts)])
                progress.plan("pair", [r.pair_node(x, t.metrics) for t in ts for x in t.rows if x.source == "pair"])
            print(progress.line("planned"), flush=True)
        # every table's trainings and rows as one graph: with --workers, a student trains as soon as its
        # teacher has landed and a row is scored as soon as its models are, beside the other trainings
        prepare_graph([(runners[k], ts) for k, ts in groups.items()])
        for t in tables:
            print(f"== {t.name} ({args.tier}) ==", flush=True)
            run_table(t, args, runner)
            if progress is not None:
                progress.table_done(t.name)
        if not args.no_report:  # the page to look at: every table under results/<tier>/, its figures, audio
            from soundctm.commands.report import ReportConflict, write_report

            try:
                write_report(Path(args.out) if args.out else runner.tier.results_dir, tier=args.tier)
            except ReportConflict as e:  # the tables are written; the page would replace a file it did not write
                print(f"all.py: no report: {e}", file=sys.stderr)
                return 2
    except MissingAssetsError as e:
        print(str(e), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
