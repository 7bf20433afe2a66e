#!/usr/bin/env python
"""How far a run of the tables differs from another (e.g. yours from the committed `results/tiny/`): for each
table both folders have, the largest relative difference of every metric over the shared rows, and every claim
whose verdict or self-test differs. Exits 1 when a verdict differs (or a difference exceeds --tol).

    python reproduce/compare_results.py results/tiny /path/to/your/results
    python reproduce/compare_results.py results/tiny out/ --tables table3,table1 --tol 1e-3

To compare with the committed tables after a run that rewrote them: `git worktree add /tmp/ref HEAD`, then
`python reproduce/compare_results.py /tmp/ref/results/tiny results/tiny`.
"""

import argparse
import sys

from soundctm.experiments.resultdiff import compare_dirs, markdown


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("first", help="a result folder (the reference)")
    ap.add_argument("second", help="another result folder")
    ap.add_argument("--tables", default=None, help="comma-separated table names (default: every shared one)")
    ap.add_argument("--tol", type=float, default=None, help="also fail when a metric moves more than this, relative")
    args = ap.parse_args(argv)
    try:
        diffs = compare_dirs(args.first, args.second, args.tables.split(",") if args.tables else None)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not diffs:
        print("error: the two folders share no table file", file=sys.stderr)
        return 2
    print(markdown(diffs))
    flipped = any(d.flips for d in diffs)
    too_far = args.tol is not None and any(d.max_rel > args.tol for d in diffs)
    return 1 if flipped or too_far else 0


if __name__ == "__main__":
    sys.exit(main())
