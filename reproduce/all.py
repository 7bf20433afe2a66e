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
TABLES = {"instrument": "instrument.py", "1": "table1.py", "3": "table3.py", "6": "table6.py", "10": "table10.py",
          "11": "table11.py", "12": "table12.py", "13": "table13.py", "steps_diagnostic": "steps_diagnostic.py"}


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
    from soundctm.experiments.main import make_runner, parser, run_table
    from soundctm.paths import MissingAssetsError

    ap = parser(__doc__)
    ap.add_argument("--tables", default=",".join(TABLES), help="comma-separated ids (default: all)")
    args = ap.parse_args(argv)
    tables = [load_table(k.strip()) for k in args.tables.split(",") if k.strip()]
    try:
        runner = make_runner(args)
        runner.prepare(tables)  # every table's trainings and rows, side by side with --workers
        for t in tables:
            print(f"== {t.name} ({args.tier}) ==", flush=True)
            run_table(t, args, runner)
    except MissingAssetsError as e:
        print(str(e), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
