#!/usr/bin/env python
"""Where a run's time went: every Ray task that made an artifact (trainings, scorings, the reference) from the
artifact store's records, per kind and in total, with the utilisation of the workers and the work bound (the
busy worker-time / workers: no schedule of the same tasks is faster), and a Gantt chart.

    python reproduce/timeline.py --since "2026-12-04 12:29"           # the tiny tier's store, this run on
    python reproduce/timeline.py --store /nfs/store --workers 8 --png timeline.png

Only work inside tasks is recorded: the driver's own (a table's intervals, pair rows, in-process timings) is not.
"""

import argparse
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from soundctm.experiments.store import open_store
from soundctm.experiments.timeline import format_summary, gantt, read_records, summarise
from soundctm.paths import cache_dir


def when(text: str | None) -> float | None:
    """Epoch seconds, or an ISO date-time (UTC unless it says otherwise)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"--since/--until: not a date-time or epoch seconds: {text!r}") from None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default=os.environ.get("SOUNDCTM_STORE"),
                    help="the artifact store: a folder or a URI, as all.py's --store (default: $SOUNDCTM_STORE or "
                         "<cache>/<tier>/artifacts)")
    ap.add_argument("--cache", default=None, help="artifact cache (default: $SOUNDCTM_CACHE or ~/.cache/soundctm)")
    ap.add_argument("--tier", default="tiny")
    ap.add_argument("--since", default=None, help="only tasks that started then or later (ISO, UTC; or epoch s)")
    ap.add_argument("--until", default=None, help="only tasks that ended then or earlier")
    ap.add_argument("--workers", type=int, default=2, help="the run's --workers (for utilisation and the bound)")
    ap.add_argument("--png", default=None, help="also draw the tasks as a Gantt chart here")
    args = ap.parse_args(argv)
    store = open_store(args.store or Path(args.cache or cache_dir()).expanduser() / args.tier / "artifacts")
    if not store.list("nodes"):
        print(f"no task records in {store.uri}/nodes (a run with --workers > 1 or on a cluster writes them)",
              file=sys.stderr)
        return 2
    records = read_records(store, since=when(args.since), until=when(args.until))
    print(format_summary(summarise(records, args.workers)))
    if args.png and records:
        print(f"wrote {gantt(records, args.png, title=f'{store.uri} ({len(records)} tasks)')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
