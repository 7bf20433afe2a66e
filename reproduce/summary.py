#!/usr/bin/env python
"""The README's summary of verdicts, generated from the committed results: per table how many claims are
supported, not supported, inconclusive or broken, then the claims that are not supported with the interval
each was decided on (`soundctm.experiments.summary`). It rewrites the block of README.md between
`<!-- verdicts:begin -->` and `<!-- verdicts:end -->` and nothing else.

    python reproduce/summary.py             # rewrite the block from results/tiny/*.json
    python reproduce/summary.py --check     # exit 1 when the block is stale (CI), 0 when it is current
    python reproduce/summary.py --print     # the generated markdown on stdout; README.md untouched

Exit status 2 when README.md has no such block (or the results folder no table with claims).
"""

import argparse
import os
import sys
from pathlib import Path

from soundctm.experiments.summary import render_markdown, summarize

ROOT = Path(__file__).resolve().parent.parent

BEGIN, END = "<!-- verdicts:begin -->", "<!-- verdicts:end -->"
MAX_LINES = 60  # the README stays short (at most 250 lines): the block's budget


def block(rows, results: Path, readme: Path) -> str:
    """The generated markdown of `rows` (the claims of `results`) for `readme`: each table's name links to its
    .md (else its .json), relative to the README's folder."""
    rel = Path(os.path.relpath(results, readme.parent)).as_posix()
    link = lambda t: f"{rel}/{t}.md" if (results / f"{t}.md").is_file() else f"{rel}/{t}.json"
    return render_markdown(rows, link=link, max_lines=MAX_LINES - 5)


def splice(text: str, body: str) -> str | None:
    """`text` with the block between the markers replaced by `body`; None when the markers are not there
    (or not once each, in order)."""
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        return None
    head, rest = text.split(BEGIN)
    old, tail = rest.split(END)
    if END in head:
        return None
    return f"{head}{BEGIN}\n{body.rstrip()}\n{END}{tail}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=ROOT / "results" / "tiny", help="default results/tiny")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md", help="default README.md")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if the block is stale, change nothing")
    mode.add_argument("--print", action="store_true", help="print the generated markdown, change nothing")
    args = ap.parse_args(argv)
    if not args.results.is_dir():
        print(f"error: no results folder {args.results}", file=sys.stderr)
        return 2
    rows = summarize(args.results)
    if not rows:
        print(f"error: no table result with claims in {args.results}", file=sys.stderr)
        return 2
    body = block(rows, args.results, args.readme)
    if args.print:
        sys.stdout.write(body)
        return 0
    try:
        text = args.readme.read_text(encoding="utf-8")
    except OSError as e:
        print(f"error: cannot read {args.readme} ({e.strerror or type(e).__name__})", file=sys.stderr)
        return 2
    new = splice(text, body)
    if new is None:
        print(f"{args.readme} has no {BEGIN} ... {END} block (each marker once, in that order): nothing written",
              file=sys.stderr)
        return 2
    n = len(body.rstrip().splitlines())
    if n > MAX_LINES:
        print(f"warning: the block is {n} lines (budget {MAX_LINES})", file=sys.stderr)
    if args.check:
        if new != text:
            print(f"{args.readme}: the verdicts block is stale; run python reproduce/summary.py", file=sys.stderr)
            return 1
        print(f"{args.readme}: the verdicts block is current ({n} lines)")
        return 0
    if new == text:
        print(f"{args.readme}: the verdicts block is already current ({n} lines)")
        return 0
    tmp = args.readme.with_name(f".{args.readme.name}.tmp")
    tmp.write_text(new, encoding="utf-8")
    tmp.replace(args.readme)
    print(f"{args.readme}: verdicts block rewritten ({n} lines, {len(rows)} claims)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
