"""How far two runs of the same tables differ: metric values row by row, and every claim's verdict.

A user who re-runs a table (on another machine, with another torch build, from a cold cache) gets result files
that `git diff` shows line by line; `compare_tables(a, b)` says what matters in them: the largest relative
difference of each metric column over the rows both files have, the rows only one of them has, and every claim
whose verdict or self-test differs. `compare_dirs` does it for every table file two result folders share
(`python reproduce/compare_results.py`). Timing columns are left out: seconds differ between any two runs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["MetricDiff", "TableDiff", "compare_tables", "compare_dirs", "load_table", "markdown"]


@dataclass(frozen=True)
class MetricDiff:
    column: str
    max_rel: float  # max over the shared rows of |a - b| / |a| (|a - b| where a == 0)
    row: str  # the row where it is largest
    a: float
    b: float


@dataclass
class TableDiff:
    name: str
    metrics: list[MetricDiff] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)  # rows only the first file has a value for
    only_b: list[str] = field(default_factory=list)
    flips: list[str] = field(default_factory=list)  # claims whose verdict or self-test differ, described
    differing: set[str] = field(default_factory=set)  # the names of those claims
    n_claims: int = 0

    @property
    def max_rel(self) -> float:
        return max((m.max_rel for m in self.metrics), default=0.0)


def load_table(path) -> dict:
    """A table's JSON (`experiments.report.write_result`); an error naming the file when it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable table file ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise ValueError(f"{path}: not a table file (no 'rows' list)")
    return data


def _values(table: dict) -> dict[str, dict[str, float]]:
    out = {}
    for r in table["rows"]:
        vals = {c: float(m["value"]) for c, m in (r.get("metrics") or {}).items()
                if isinstance(m, dict) and isinstance(m.get("value"), (int, float)) and math.isfinite(m["value"])}
        if vals:
            out[str(r["row"])] = vals
    return out


def _verdicts(table: dict) -> dict[str, tuple]:
    out = {}
    for c in table.get("claims") or []:
        st = c.get("self_test")
        out[str(c["claim"])] = (c.get("supported"), st.get("supported") if isinstance(st, dict) else None)
    return out


def _word(v) -> str:
    return {True: "SUPPORTED", False: "NOT SUPPORTED", None: "-"}[v]


def compare_tables(a: dict, b: dict, name: str = "") -> TableDiff:
    """The differences between two results of one table (a: the reference, b: the new run)."""
    va, vb = _values(a), _values(b)
    diff = TableDiff(name or str(a.get("meta", {}).get("table", "")))
    diff.only_a = sorted(set(va) - set(vb))
    diff.only_b = sorted(set(vb) - set(va))
    columns = sorted({c for r in set(va) & set(vb) for c in set(va[r]) & set(vb[r])})
    for col in columns:
        worst = None
        for r in (r for r in va if r in vb and col in va[r] and col in vb[r]):
            x, y = va[r][col], vb[r][col]
            rel = abs(x - y) / abs(x) if x != 0 else abs(x - y)
            if worst is None or rel > worst.max_rel:
                worst = MetricDiff(col, rel, r, x, y)
        diff.metrics.append(worst)
    ca, cb = _verdicts(a), _verdicts(b)
    diff.n_claims = len(set(ca) | set(cb))
    for claim in sorted(set(ca) | set(cb)):
        if claim not in ca or claim not in cb:
            found = [f"{claim}: only in {'the first' if claim in ca else 'the second'} file"]
        else:
            (sa, ta), (sb, tb) = ca[claim], cb[claim]
            found = ([f"{claim}: {_word(sa)} -> {_word(sb)}"] if sa != sb else []) + \
                    ([f"{claim} self-test: {_word(ta)} -> {_word(tb)}"] if ta != tb else [])
        if found:
            diff.flips += found
            diff.differing.add(claim)
    return diff


def compare_dirs(a, b, tables: list[str] | None = None) -> list[TableDiff]:
    """`compare_tables` for every table file (`<name>.json` with rows) that folders a and b both have."""
    a, b = Path(a), Path(b)
    for d in (a, b):
        if not d.is_dir():
            raise ValueError(f"{d}: not a folder")
    names = sorted(p.stem for p in a.glob("*.json") if (b / p.name).exists())
    if tables is not None:
        missing = [t for t in tables if t not in names]
        if missing:
            raise ValueError(f"not in both folders: {', '.join(missing)}")
        names = [n for n in names if n in tables]
    out = []
    for n in names:
        try:
            ta, tb = load_table(a / f"{n}.json"), load_table(b / f"{n}.json")
        except ValueError:
            if tables is not None:
                raise
            continue  # a JSON that is not a table (components.json, regression.json)
        out.append(compare_tables(ta, tb, n))
    return out


def _g(x: float) -> str:
    return f"{x:.4g}"


def markdown(diffs: list[TableDiff]) -> str:
    """One line per table and metric column, then the claims that differ."""
    lines = ["| table | metric | max relative difference | at row | first | second |", "|---|---|---|---|---|---|"]
    for d in diffs:
        for m in d.metrics:
            lines.append(f"| {d.name} | {m.column} | {m.max_rel:.2e} | {m.row} | {_g(m.a)} | {_g(m.b)} |")
    lines.append("")
    for d in diffs:
        lines.append(f"- {d.name}: {d.n_claims - len(d.differing)} of {d.n_claims} claims decided the same way"
                     + (f"; differing: {'; '.join(d.flips)}" if d.flips else ""))
        if d.only_a or d.only_b:
            lines.append(f"  rows only in the first: {', '.join(d.only_a) or '-'}; "
                         f"only in the second: {', '.join(d.only_b) or '-'}")
    return "\n".join(lines)
