"""Every claim's verdict in one place, read from a results folder (`results/<tier>/*.json`).

`summarize(folder)` reads the table results the reproduce scripts wrote (`<table>.json` in the format of
`experiments.report.write_result`, a speed table's `verdicts` (Table 8), a listening-test kit's claims) and
returns one `ClaimSummary` per claim, in table order (Table 3 first, then the instrument, the numbered tables
and the others): the claim, the paper's numbers of the rows it compares, ours (each row's value with its 95 %
interval), the statistic the claim was decided on with its interval, the verdict and its self-test. Nothing is
recomputed or re-decided: verdicts, estimates and intervals are the JSON's; the rows a claim compares and its
metric are read from the claim's own `detail` line (`experiments.claims.decide` writes it), and the paper's
number is the row's value in the paper column that measures the same thing (`PAPER_COLUMNS`).

`counts(rows)` tallies verdicts per table; `render_markdown(rows)` is the compact summary the README carries
(`reproduce/summary.py` writes it between `<!-- verdicts:begin -->` and `<!-- verdicts:end -->`).
"""

from __future__ import annotations

import json
import re
import statistics
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ClaimSummary", "Measure", "VERDICTS", "PAPER_COLUMNS", "summarize", "summarize_record", "counts",
           "render_markdown", "table_order", "table_title", "short_title", "verdict_of", "ours_text", "paper_text",
           "interval_text", "measure_text"]

VERDICTS = ("supported", "not supported", "inconclusive", "broken")

# the paper's column that measures what our metric family does, first match wins (FD: Table 3 reports
# FD_openl3, the 16 kHz tables FAD_vgg); families without a paper counterpart (KID, mel distance) are absent
PAPER_COLUMNS = {"fd": ("FD_openl3", "FAD_vgg"), "kl": ("KL_passt",), "clap": ("CLAP",),
                 "lpaps": ("CLAP-LPAPS",), "lsd": ("LSD",), "intensity-mse": ("MSE_dB2",),
                 "seconds": ("seconds_H100",), "memory": ("train memory MiB",)}

# the statistic each claim kind is decided on (the wording of `experiments.claims.decide`'s detail)
_ROW = r"[^\s\[\]();,]+"
_PATTERNS = (
    ("speed-up", re.compile(rf"^speed-up .*; (?P<b>{_ROW}) \S+ s, (?P<a>{_ROW}) \S+ s per sample\)")),
    ("memory ratio", re.compile(rf"^memory ratio .*; (?P<a>{_ROW}) \S+ MiB, (?P<b>{_ROW}) \S+ MiB\)")),
    ("q difference", re.compile(rf"^(?P<m>{_ROW}) on the q scale .*?q\((?P<a>[^)]+)\) \S+, q\((?P<b>[^)]+)\)")),
    ("improvement", re.compile(rf"^(?P<m>{_ROW}): (?P<a>{_ROW}) \S+ -> (?P<b>{_ROW}) \S+; improvement")),
    ("intervals", re.compile(rf"^(?P<m>{_ROW}): (?P<a>{_ROW}) \S+ \[[^\]]*\] (?:<<|>>|<|>) (?P<b>{_ROW}) ")),
)
_UNIT = {"speed-up": "×", "memory ratio": "×"}


@dataclass(frozen=True)
class Measure:
    """A value of ours with its 95 % interval (lo, hi None: a timing or memory, which has none)."""

    value: float
    lo: float | None = None
    hi: float | None = None


@dataclass(frozen=True)
class ClaimSummary:
    table: str  # the result file's stem: "table3"
    title: str  # "Table 3: full-band objective comparison"
    claim: str  # the claim's id: "(b-fd)"
    text: str
    verdict: str  # one of VERDICTS
    label: str  # the JSON's own label ("SUPPORTED", "NOT SUPPORTED", "BROKEN (...)", "NOT DECIDED", ...)
    statistic: str | None = None  # what estimate / lo / hi are: "improvement", "q difference", "speed-up", ...
    estimate: float | None = None
    lo: float | None = None
    hi: float | None = None
    margin: float | None = None
    metric: str | None = None  # the table's column the claim compares ("FD[tiny-evt]"), None for cost claims
    systems: tuple[str, ...] = ()  # the rows it compares (a, b)
    ours: tuple[Measure | None, ...] = ()  # per system
    paper: tuple[float | None, ...] = ()  # per system, in `paper_column`
    paper_column: str | None = None
    self_test: str | None = None  # "passed" (NOT SUPPORTED, as it must be), "failed" (the trivial row passes)
    detail: str = ""
    extra: dict = field(default_factory=dict, compare=False, repr=False)


# ----------------------------------------------------------------------------------------------
# reading


def table_order(name: str) -> tuple:
    """Table 3 first (the paper's headline), then the instrument, the numbered tables, the others by name."""
    if name == "table3":
        return (0, 0, name)
    if name == "instrument":
        return (1, 0, name)
    m = re.fullmatch(r"table(\d+)", name)
    return (2, int(m.group(1)), name) if m else (3, 0, name)


def table_title(path: Path, rec: dict) -> str:
    """The record's title, else the first line of <table>.md (`# title — tier`), else the file's stem."""
    if isinstance(rec.get("title"), str) and rec["title"].strip():
        return rec["title"].strip()
    try:
        first = path.with_suffix(".md").read_text(encoding="utf-8").splitlines()[0]
    except (OSError, UnicodeDecodeError, IndexError):
        return path.stem
    return re.sub(r"\s+—\s+\S+ tier$", "", first.lstrip("# ").strip()) or path.stem


def verdict_of(c: dict) -> str:
    """The verdict the claim's JSON holds, as one of VERDICTS: its label (a BROKEN label, or `broken`, wins;
    a label that is neither SUPPORTED nor NOT SUPPORTED, e.g. a listening test's NOT DECIDED, is
    inconclusive), else its `supported` flag (missing: inconclusive)."""
    label = c.get("label")
    if isinstance(label, str) and label.strip():
        up = label.strip().upper()
        if up.startswith("BROKEN") or c.get("broken") is True:
            return "broken"
        if up.startswith("NOT SUPPORTED"):
            return "not supported"
        if up.startswith("SUPPORTED"):
            return "supported"
        return "inconclusive"
    if c.get("broken") is True:
        return "broken"
    s = c.get("supported")
    return "supported" if s is True else "not supported" if s is False else "inconclusive"


def _label(c: dict, verdict: str) -> str:
    label = c.get("label")
    return label.strip() if isinstance(label, str) and label.strip() else verdict.upper()


def _self_test(c: dict) -> str | None:
    st = c.get("self_test")
    if not isinstance(st, dict) or st.get("supported") is None:
        return None
    return "failed" if st["supported"] else "passed"


def _float(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _claims_of(rec) -> list[dict] | None:
    """A table result's claims (a speed table's verdicts), or None when `rec` is no table result."""
    if not isinstance(rec, dict):
        return None
    key = "verdicts" if rec.get("kind") == "speed" else "claims"
    claims = rec.get(key)
    if not isinstance(claims, list) or not all(isinstance(c, dict) for c in claims):
        return None
    if key == "claims" and not isinstance(rec.get("rows"), list):
        return None
    return claims


def _row_index(rec: dict) -> dict[str, dict]:
    return {r["row"]: r for r in rec.get("rows", []) if isinstance(r, dict) and isinstance(r.get("row"), str)}


def _speed_row(rec: dict, system: str) -> tuple[dict | None, str | None]:
    """A speed table's row for "<system>-<steps>" (timed with the unconditional branch skipped) and the step key."""
    m = re.fullmatch(r"(.+)-(\d+)", system)
    if not m:
        return None, None
    rows = [r for r in rec.get("rows", []) if isinstance(r, dict) and r.get("system") == m.group(1)]
    row = next((r for r in rows if r.get("uncond_at_nu_1") == "skipped"), rows[0] if rows else None)
    return row, m.group(2)


def _ours_and_paper(rec: dict, statistic: str | None, family: str | None, systems: tuple[str, ...]):
    """(ours per system, the paper's per system, the paper column) from the table's rows, as the JSON holds them."""
    if rec.get("kind") == "speed":
        ours, paper = [], []
        for s in systems:
            row, k = _speed_row(rec, s)
            med = _float((row or {}).get("median", {}).get(k)) if row else None
            ours.append(None if med is None else Measure(med))
            paper.append(_float((row or {}).get("paper", {}).get(k)) if row else None)
        return tuple(ours), tuple(paper), f"seconds ({rec.get('paper_device') or 'paper'})"
    rows = _row_index(rec)
    fam = "seconds" if statistic == "speed-up" else "memory" if statistic == "memory ratio" else family
    keys = set().union(*[set(r.get("paper") or {}) for r in rows.values()]) if rows else set()
    column = next((c for c in PAPER_COLUMNS.get(fam, ()) if c in keys), None)
    ours = []
    col = (rec.get("columns") or {}).get(family) if family else None
    for s in systems:
        r = rows.get(s) or {}
        if statistic == "speed-up":
            t = [x for x in (r.get("seconds") or []) if _float(x) is not None]
            ours.append(Measure(float(statistics.median(t))) if t else None)
        elif statistic == "memory ratio":
            mm = [x for x in (r.get("train_memory_mib") or []) if _float(x) is not None]
            ours.append(Measure(float(statistics.mean(mm))) if mm else None)
        else:
            m = (r.get("metrics") or {}).get(col) if col else None
            v = _float(m.get("value")) if isinstance(m, dict) else None
            ours.append(None if v is None else Measure(v, _float(m.get("lo")), _float(m.get("hi"))))
    paper = tuple(_float((rows.get(s, {}).get("paper") or {}).get(column)) if column else None for s in systems)
    return tuple(ours), paper, column


def _one(table: str, title: str, rec: dict, c: dict) -> ClaimSummary:
    verdict = verdict_of(c)
    detail = str(c.get("detail") or "")
    statistic, family, systems = None, None, ()
    for name, pat in _PATTERNS:
        m = pat.search(detail)
        if m:
            statistic, systems = name, (m.group("a"), m.group("b"))
            family = m.groupdict().get("m")
            break
    ours, paper, column = _ours_and_paper(rec, statistic, family, systems) if systems else ((), (), None)
    est, lo, hi = _float(c.get("estimate")), _float(c.get("lo")), _float(c.get("hi"))
    if statistic == "intervals":  # "a << b": the JSON's lo/hi are a's own interval, shown with ours, not here
        est = lo = hi = None
    return ClaimSummary(
        table=table, title=title, claim=str(c.get("claim") or ""), text=str(c.get("text") or ""),
        verdict=verdict, label=_label(c, verdict), statistic=statistic, estimate=est, lo=lo, hi=hi,
        margin=_float(c.get("margin")),
        metric=(rec.get("columns") or {}).get(family, family) if family else None, systems=systems, ours=ours,
        paper=paper, paper_column=column, self_test=_self_test(c), detail=detail)


def summarize(results_dir: str | Path, skipped: list | None = None) -> list[ClaimSummary]:
    """One ClaimSummary per claim of every table result in `results_dir` (its `*.json`), in `table_order`, each
    table's claims in the file's order. Files that are not table results (components.json, regression.json, a
    file that is not JSON) are appended to `skipped` as (file name, why) and left out."""
    skipped = [] if skipped is None else skipped
    found = []
    for p in sorted(Path(results_dir).glob("*.json")):
        try:
            rec = json.loads(p.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            skipped.append((p.name, f"unreadable ({type(e).__name__})"))
            continue
        claims = _claims_of(rec)
        if claims is None:
            skipped.append((p.name, "not a table result with claims"))
            continue
        found.append((p, rec, claims))
    out = []
    for p, rec, _ in sorted(found, key=lambda f: table_order(f[0].stem)):
        out += summarize_record(p.stem, table_title(p, rec), rec)
    return out


def summarize_record(name: str, title: str, rec: dict) -> list[ClaimSummary]:
    """The ClaimSummary of each claim of one parsed table result (none when `rec` is no table result)."""
    return [_one(name, title, rec, c) for c in _claims_of(rec) or []]


def counts(rows: list[ClaimSummary]) -> dict[str, dict[str, int]]:
    """Per table (in the rows' order): how many claims have each verdict (every key of VERDICTS, zeros too)."""
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        out.setdefault(r.table, dict.fromkeys(VERDICTS, 0))[r.verdict] += 1
    return out


# ----------------------------------------------------------------------------------------------
# text


def _sig(x: float | None, sign: bool = False, digits: int = 4) -> str:
    if x is None:
        return "–"
    s = f"{x:+.{digits}g}" if sign else f"{x:.{digits}g}"
    return s.replace("-", "−")


def measure_text(m: Measure | None) -> str:
    """"185.2 [175.4, 195.5]" (a value without an interval alone; None: "–")."""
    if m is None:
        return "–"
    if m.lo is None or m.hi is None:
        return _sig(m.value)
    return f"{_sig(m.value)} [{_sig(m.lo)}, {_sig(m.hi)}]"


def paper_text(r: ClaimSummary) -> str:
    """The paper's numbers of the compared rows ("84.07 → 72.24"), "–" when the paper has none."""
    if not any(v is not None for v in r.paper):
        return "–"
    return " → ".join(_sig(v) for v in r.paper)


def ours_text(r: ClaimSummary) -> str:
    """Our values of the compared rows, each with its 95 % interval where it has one."""
    if not r.systems:
        return "–"
    return " → ".join(f"{s} {measure_text(m)}" for s, m in zip(r.systems, r.ours or (None,) * len(r.systems)))


def interval_text(r: ClaimSummary, digits: int = 4) -> str:
    """The statistic the claim was decided on, with its interval: "improvement +51.49 [+37.09, +66.73]"."""
    if r.statistic == "intervals":
        return "95 % intervals apart" if "<<" in r.detail or ">>" in r.detail else "point values ordered"
    if r.estimate is None:
        return "–"
    unit = _UNIT.get(r.statistic or "", "")
    sign = unit == ""
    what = f"{r.statistic} " if r.statistic else ""
    e, lo, hi = (_sig(x, sign, digits) for x in (r.estimate, r.lo, r.hi))
    if r.lo is None or r.hi is None:
        return f"{what}{e}{unit}"
    return f"{what}{e}{unit} [{lo}, {hi}]"


def _cell(s: str) -> str:
    return " ".join(str(s).split()).replace("|", "\\|")


def short_title(title: str) -> str:
    """"Table 3: full-band objective comparison" -> "Table 3"."""
    return title.split(":")[0].strip() or title


def _claim_line(r: ClaimSummary) -> str:
    return " ".join(x for x in (_cell(r.claim), _cell(r.text)) if x)


def _grouped(bad: list[ClaimSummary]) -> list[str]:
    """Claims that differ only in their metric ("... (fd)", "... (kl, within 0.1 on q)") as one phrase with
    one interval per metric; the others one by one."""
    groups: dict[str, list[tuple[str, ClaimSummary]]] = {}
    for r in bad:
        fam = r.detail.split(":")[0].split(" on the q scale")[0].strip() if r.statistic else ""
        m = re.fullmatch(rf"(.*\S)\s*\({re.escape(fam)}(?:[,;][^)]*)?\)", r.text.strip()) if fam else None
        key, item = (m.group(1), fam) if m else (_claim_line(r), "")
        groups.setdefault(key, []).append((item, r))
    out = []
    for key, items in groups.items():
        parts = []
        for item, r in items:
            iv = interval_text(r, digits=3)
            flag = "" if r.verdict == "not supported" else f"**{r.verdict}** "
            parts.append(" ".join(x for x in (flag.strip(), item, "" if iv == "–" else iv) if x))
        out.append(f"{_cell(key)}: " + ", ".join(_cell(p) for p in parts) if any(parts) else _cell(key))
    return out


LINE_WIDTH = 160  # the longest line of the compact summary (a list item wraps onto indented continuation lines)


def render_markdown(rows: list[ClaimSummary], *, link=None, max_lines: int = 40) -> str:
    """The compact summary: a table of verdict counts per table, then the claims themselves in one table when
    everything fits in `max_lines`, else one line per table listing its claims that are not supported (and any
    inconclusive or broken ones), claims that differ only in their metric merged. `link(table)`: the relative
    link of a table's name (None: no links)."""
    per = counts(rows)
    titles = {r.table: r.title for r in rows}
    name = (lambda t: f"[{_cell(titles[t])}]({link(t)})") if link else (lambda t: _cell(titles[t]))
    head = [f"{len(rows)} claims in {len(per)} tables, as the committed results decide them "
            "(broken: the trivial baseline passes the claim too).", "",
            "| table | claims | supported | not supported | inconclusive | broken |", "|---|--:|--:|--:|--:|--:|"]
    for t, c in per.items():
        head.append(f"| {name(t)} | {sum(c.values())} | " + " | ".join(str(c[v]) for v in VERDICTS) + " |")
    tot = {v: sum(c[v] for c in per.values()) for v in VERDICTS}
    head.append(f"| **all** | **{len(rows)}** | " + " | ".join(f"**{tot[v]}**" for v in VERDICTS) + " |")
    full = ["", "| table | claim | paper | ours | interval | verdict | self-test |", "|---|---|---|---|---|---|---|"]
    full += [f"| {_cell(short_title(r.title))} | {_claim_line(r)} | {_cell(paper_text(r))} | {_cell(ours_text(r))} | "
             f"{_cell(interval_text(r))} | {r.verdict} | {r.self_test or '–'} |" for r in rows]
    if len(head) + len(full) <= max_lines:
        return "\n".join(head + full) + "\n"
    lines = head + ["", "The claims not supported (and any inconclusive or broken), with the interval each was "
                    "decided on:", ""]
    for t in per:
        bad = [r for r in rows if r.table == t and r.verdict != "supported"]
        if bad:
            text = f"- **{_cell(short_title(titles[t]))}**: " + "; ".join(_grouped(bad))
            lines += textwrap.wrap(text, LINE_WIDTH, subsequent_indent="  ", break_on_hyphens=False)
    return "\n".join(lines) + "\n"
