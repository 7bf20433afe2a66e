#!/usr/bin/env python
"""The CI regression reference: check it, or (explicitly) update it.

    python reproduce/regression.py                      # recompute from the committed checkpoints, compare
    python reproduce/regression.py --update-reference   # copy the cache's models into soundctm/assets/tiny,
                                                        # rewrite results/tiny/regression.json, print old -> new

Nothing else writes the committed checkpoints or the regression record.
"""

import argparse
import sys

from soundctm.experiments import regression as R


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--update-reference", action="store_true",
                    help="copy the tiny tier's cached models (teacher, student seed 0, VAE, CLAP, evaluator) "
                         "into soundctm/assets/tiny and rewrite results/tiny/regression.json")
    args = ap.parse_args(argv)
    if args.update_reference:
        R.update_reference(args.cache, sources=R.cached_sources(args.cache))
        return 0
    moved = R.compare(R.load_record(), R.compute(args.cache))
    print("\n".join(moved) if moved else "regression: every metric and verdict as recorded")
    return 1 if moved else 0


if __name__ == "__main__":
    sys.exit(main())
