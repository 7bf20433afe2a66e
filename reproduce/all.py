#!/usr/bin/env python
"""Run every reproduced table in order (today: Table 3).

    python reproduce/all.py [--tier tiny|paper]
    ray submit cluster.yaml reproduce/all.py --tier paper     # on a Ray cluster (see cluster.yaml)

`ray submit` copies only this file to the head node; cluster.yaml ships and installs the repository
there, and this script finds it through the installed package.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

TABLES = ["table3"]


def _script_dir() -> Path:
    here = Path(__file__).resolve().parent
    if (here / "table3.py").exists():
        return here
    import soundctm  # installed from the shipped repository (cluster.yaml)

    return Path(soundctm.__file__).resolve().parent.parent / "reproduce"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tier", choices=["tiny", "paper"], default="tiny")
    ap.add_argument("--only", nargs="*", default=TABLES, help="tables to run (default: all)")
    args, rest = ap.parse_known_args(argv)
    d = _script_dir()
    for name in args.only:
        spec = importlib.util.spec_from_file_location(f"reproduce_{name}", d / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        print(f"== {name} ({args.tier}) ==", flush=True)
        rc = mod.main(["--tier", args.tier, *rest])
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
