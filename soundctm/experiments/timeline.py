"""Where a run's time went: the task records of an artifact store (`nodes/<key>.json`, one per Ray task that
made an artifact: kind, start, end; `graph.NodeLog`) as a summary and a Gantt chart.

    summary = summarise(read_records(store, since=t0), workers=2)
    print(format_summary(summary)); gantt(records, "timeline.png")

`summarise` gives, over the records' span (first start to last end): per kind the number of tasks and their
worker-seconds; the busy worker-seconds; the utilisation busy / (span x workers); and the work bound
busy / workers, the shortest wall time any schedule of the same tasks on `workers` workers could take (a
run whose span is close to it cannot be made much faster by scheduling, only by doing less work or by more
workers). Only work done inside tasks is counted: the driver's own work (a table's intervals, pair rows,
timings in process) is outside the records.
"""

from __future__ import annotations

import json
from pathlib import Path

from soundctm.experiments.store import open_store

__all__ = ["read_records", "summarise", "format_summary", "lanes", "gantt"]


def read_records(store, since: float | None = None, until: float | None = None) -> list[dict]:
    """The task records in `store` (an `experiments.store.Store`, or what `open_store` opens: a folder or a
    URI) that started at or after `since` and ended at or before `until` (epoch seconds; None: no bound), by
    start."""
    store = open_store(store)
    out = []
    for name in (n for n in store.list("nodes") if n.endswith(".json")):
        rec = json.loads(store.read_text(name))
        if not {"kind", "start", "end"} <= set(rec):
            continue
        if (since is None or rec["start"] >= since) and (until is None or rec["end"] <= until):
            out.append(rec)
    return sorted(out, key=lambda r: (r["start"], r["end"]))


def summarise(records: list[dict], workers: int) -> dict:
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not records:
        return {"tasks": 0, "span_s": 0.0, "busy_s": 0.0, "utilisation": None, "work_bound_s": 0.0, "kinds": {},
                "workers": workers, "concurrency": 0}
    span = max(r["end"] for r in records) - min(r["start"] for r in records)
    kinds: dict[str, dict] = {}
    for r in records:
        k = kinds.setdefault(r["kind"], {"tasks": 0, "seconds": 0.0, "longest_s": 0.0})
        d = r["end"] - r["start"]
        k["tasks"] += 1
        k["seconds"] += d
        k["longest_s"] = max(k["longest_s"], d)
    busy = sum(k["seconds"] for k in kinds.values())
    return {"tasks": len(records), "span_s": span, "busy_s": busy, "workers": workers,
            "utilisation": busy / (span * workers) if span > 0 else None, "work_bound_s": busy / workers,
            "kinds": dict(sorted(kinds.items())), "concurrency": len(set(lanes(records)))}


def _hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def format_summary(s: dict) -> str:
    if not s["tasks"]:
        return "no task records"
    lines = [f"{s['tasks']} tasks over {_hms(s['span_s'])} (first start to last end), at most {s['concurrency']} "
             f"at once; busy {_hms(s['busy_s'])} worker-time",
             f"utilisation {s['utilisation']:.1%} of {s['workers']} worker(s); work bound (busy / workers) "
             f"{_hms(s['work_bound_s'])}"]
    for kind, k in s["kinds"].items():
        lines.append(f"  {kind:10s} {k['tasks']:4d} tasks  {_hms(k['seconds'])} worker-time  "
                     f"longest {_hms(k['longest_s'])}")
    return "\n".join(lines)


def lanes(records: list[dict]) -> list[int]:
    """A lane per record (records sorted by start): the lowest lane free at its start, so that the number of
    lanes is the largest number of tasks that ran at once."""
    ends: list[float] = []
    out = []
    for r in records:
        for i, e in enumerate(ends):
            if e <= r["start"]:
                ends[i] = r["end"]
                out.append(i)
                break
        else:
            ends.append(r["end"])
            out.append(len(ends) - 1)
    return out


def gantt(records: list[dict], path, title: str = "") -> Path:
    """One bar per task, coloured by kind, on the lanes of `lanes`; minutes since the first start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    t0 = min(r["start"] for r in records)
    lane = lanes(records)
    kinds = sorted({r["kind"] for r in records})
    colours = dict(zip(kinds, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    fig, ax = plt.subplots(figsize=(10, 0.6 * max(lane) + 1.8))
    for r, y in zip(records, lane):
        ax.barh(y, (r["end"] - r["start"]) / 60, left=(r["start"] - t0) / 60, height=0.8,
                color=colours[r["kind"]], edgecolor="black", linewidth=0.3)
    ax.set_yticks(range(max(lane) + 1))
    ax.set_yticklabels([f"lane {i}" for i in range(max(lane) + 1)])
    ax.set_xlabel("minutes since the first task started")
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=colours[k]) for k in kinds], labels=kinds,
              loc="upper right", fontsize=8)
    ax.set_title(title or "tasks of the run")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
