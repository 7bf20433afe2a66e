"""A text progress display of the artifact graph of several tables (`reproduce/all.py`).

`Progress` is a runner's event sink (`Runner.events`, `Runner.event`): every artifact node (one training of a
run and seed, one row's scores, one pair row) reports "start", "done" (with its seconds) or "cached". Given the
plan (`plan(kind, keys)`: the nodes expected of each kind), it prints one line whenever a node finishes and
when a table is written:

    [progress 0:12:31] train 7/12 (3 reused) | score 10/43 (8 cached) | pair 0/13 | tables 1/16 | running:
    score scores-1a2b.. | ETA 0:41:00

A node is "reused" (found by its maker, e.g. a training run that was already complete) when it reports
"done" in under `REUSED_S` seconds, and "cached" when it reports "cached"; only the others are "built". The ETA
is, per kind, the mean duration of the built nodes of that kind times the nodes left, divided by the workers
(`workers`), summed over the kinds; before a kind has a built node it is left out and the line says so
("ETA >= ..."). The nodes left may turn out to be cached, so the ETA is an upper estimate on a warm cache.
"""

from __future__ import annotations

import time

from soundctm.experiments.artifacts import train_key
from soundctm.experiments.graph import table_runs

__all__ = ["Progress", "KINDS", "REUSED_S", "fmt_seconds", "training_keys"]

KINDS = ("train", "score", "pair")
REUSED_S = 3.0


def fmt_seconds(s: float) -> str:
    s = int(round(max(0.0, s)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    def __init__(self, log=print, workers: int = 1, clock=time.monotonic):
        self.log, self.workers, self.clock = log, max(1, int(workers or 1)), clock
        self.t0 = clock()
        self.planned: dict[str, set[str]] = {k: set() for k in KINDS}
        self.state: dict[tuple[str, str], str] = {}  # (kind, key) -> running | built | reused | cached
        self.seconds: dict[str, list[float]] = {k: [] for k in KINDS}
        self.tables_total, self.tables_done = 0, 0

    # ---------------------------------------------------------------- the plan
    def plan(self, kind: str, keys) -> None:
        """Nodes of `kind` the run will visit (added to those already planned)."""
        self.planned.setdefault(kind, set()).update(keys)

    def plan_tables(self, n: int) -> None:
        self.tables_total += int(n)

    # ---------------------------------------------------------------- events
    def __call__(self, kind: str, key: str, state: str, seconds: float | None = None) -> None:
        self.planned.setdefault(kind, set()).add(key)
        self.seconds.setdefault(kind, [])
        prev = self.state.get((kind, key))
        if prev in ("built", "reused", "cached"):  # a finished node read again
            return
        if state == "start":
            self.state[kind, key] = "running"
            return
        if state == "cached":
            self.state[kind, key] = "cached"
        elif state == "done":
            if seconds is not None and seconds >= REUSED_S:
                self.state[kind, key] = "built"
                self.seconds[kind].append(float(seconds))
            else:
                self.state[kind, key] = "reused"
        else:
            raise ValueError(f"unknown progress state {state!r}")
        if state == "done" or prev == "running":
            self.log(self.line())

    def table_done(self, name: str) -> None:
        self.tables_done += 1
        self.log(self.line(f"wrote {name}"))

    # ---------------------------------------------------------------- the display
    def counts(self, kind: str) -> dict[str, int]:
        states = [self.state.get((kind, k)) for k in self.planned.get(kind, ())]
        return {"total": len(states), "finished": sum(s in ("built", "reused", "cached") for s in states),
                "cached": sum(s == "cached" for s in states), "reused": sum(s == "reused" for s in states),
                "running": sum(s == "running" for s in states)}

    def eta(self) -> tuple[float, bool]:
        """(seconds left, complete): complete is False when some kind with nodes left has no measured node."""
        total, complete = 0.0, True
        for kind in self.planned:
            c = self.counts(kind)
            left = c["total"] - c["finished"]
            if left <= 0:
                continue
            if not self.seconds.get(kind):
                complete = False
                continue
            mean = sum(self.seconds[kind]) / len(self.seconds[kind])
            total += mean * left / min(self.workers, left)
        return total, complete

    def line(self, note: str = "") -> str:
        parts = []
        for kind in self.planned:
            c = self.counts(kind)
            if not c["total"]:
                continue
            extra = [f"{c['cached']} cached"] if c["cached"] else []
            extra += [f"{c['reused']} reused"] if c["reused"] else []
            parts.append(f"{kind} {c['finished']}/{c['total']}" + (f" ({', '.join(extra)})" if extra else ""))
        if self.tables_total:
            parts.append(f"tables {self.tables_done}/{self.tables_total}")
        running = sorted(f"{k} {key[:24]}" for (k, key), s in self.state.items() if s == "running")
        if running:
            parts.append("running: " + ", ".join(running[:3]) + (f" +{len(running) - 3}" if len(running) > 3 else ""))
        left, complete = self.eta()
        parts.append(f"ETA {'' if complete else '>= '}{fmt_seconds(left)}")
        if note:
            parts.append(note)
        return f"[progress {fmt_seconds(self.clock() - self.t0)}] " + " | ".join(parts)


def training_keys(tables, tier=None) -> list[str]:
    """The progress keys of every training the tables need (each run and seed of `graph.table_runs`: their
    teachers too; with `tier`, also the runs a table uses on that tier itself, e.g. Table 8's)."""
    runs = table_runs(tables, tier)
    return sorted({train_key(r, s) for r in runs for s in r.seeds})
