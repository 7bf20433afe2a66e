#!/usr/bin/env python
"""Run any subset of the reproduced tables, sharing one runner and its cached artifacts.

    python reproduce/all.py                      # every table, tiny tier
    python reproduce/all.py --tables 3,instrument
    ray submit cluster.yaml reproduce/all.py --tier paper

The tables are the registry's (`soundctm.experiments.tables`: ids as `--tables` takes them, in its order).
`ray submit` copies only this file to the head node; cluster.yaml ships and installs the repository, and this
script imports the installed package.
"""

from __future__ import annotations

import sys
from pathlib import Path

from soundctm.experiments.graph import prepare_graph
from soundctm.experiments.main import items_runner, make_runner, parser, run_table
from soundctm.experiments.progress import Progress, training_keys
from soundctm.experiments.tables import UnknownTable, get_table, table_ids
from soundctm.paths import MissingAssetsError


def main(argv=None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--tables", default=",".join(table_ids()), help="comma-separated ids (default: all, "
                    f"{', '.join(table_ids())})")
    ap.add_argument("--no-report", action="store_true", help="do not write results/<tier>/index.html")
    ap.add_argument("--no-progress", action="store_true", help="no [progress] lines (trainings, rows, pair rows, "
                    "tables: done / planned, what runs, ETA from the measured durations)")
    args = ap.parse_args(argv)
    try:
        tables = [get_table(k) for k in args.tables.split(",") if k.strip()]
    except UnknownTable as e:
        raise SystemExit(f"all.py: {e}") from None
    try:
        runner = make_runner(args)
        progress = None if args.no_progress else Progress(workers=args.workers)
        runner.events = progress
        groups: dict = {}  # tables by their item set (a table's own: `Table.items`; None: the runner's)
        for t in tables:
            groups.setdefault(t.items, []).append(t)
        runners = {k: items_runner(ts[0], args, runner) for k, ts in groups.items()}
        if progress is not None:
            progress.plan("train", training_keys(tables, runner.tier))
            progress.plan_tables(len(tables))
            for k, ts in groups.items():
                r = runners[k]
                progress.plan("score", [r.score_node(x) for x in r.prepare_rows(ts)])
                progress.plan("pair", [r.pair_node(x, t.metrics) for t in ts for x in t.score_rows
                                       if x.source == "pair"])
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
