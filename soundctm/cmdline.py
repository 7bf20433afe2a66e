"""The one convention of every `soundctm` command: bad input -> one line on stderr naming the problem, exit status 2.

- `CLIError`: a user error; `run` prints it as `<prog>: error: <message>` (one line) and returns 2.
- `Parser`: an `argparse.ArgumentParser` whose errors raise `CLIError` (no usage block), with `--version` and
  `--threads N` (positive; applied with `torch.set_num_threads` as soon as the arguments are parsed) on every
  command and sub-command.
- argparse types that refuse what no command can use: `positive_int`, `nonnegative_int`, `finite_float`,
  `positive_float` (finite and > 0: durations), `bounded_int(lo, hi)`.
- `out_dir` / `out_file`: an output that cannot be written is refused before any work; `in_file` /
  `in_dir`: an input that is missing, or a folder where a file is expected (and the reverse), is named.
- A closed stdout (`soundctm --help | head -1`) ends the command quietly with status 141 (128 + SIGPIPE).

This module sits in the package's lowest layer, so every command (presets', the trainers', ...) can use it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from soundctm import __version__

__all__ = ["CLIError", "Parser", "run", "version", "positive_int", "nonnegative_int", "finite_float",
           "positive_float", "bounded_int", "out_dir", "out_file", "in_file", "in_dir", "one_line",
           "BROKEN_PIPE_STATUS", "MAX_STEPS", "steps_int", "step_progress"]

BROKEN_PIPE_STATUS = 128 + 13  # what a shell reports for a process ended by SIGPIPE

# The most sampling steps (jumps) a command takes. The students are trained on jumps between the points of a
# 40-point Karras grid and the paper samples with at most 16 steps; past a few dozen steps nothing changes but
# the time, so 1000 jumps (25 times the training grid) is far beyond any useful setting while still refusing a
# typo such as 100000.
MAX_STEPS = 1000
# a progress bar (stderr) is shown from this many steps on, when stderr is a terminal
PROGRESS_FROM_STEPS = 32


class CLIError(Exception):
    """A user error: reported as one line on stderr, exit status 2."""


def one_line(text) -> str:
    """`text` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


def version() -> str:
    """The installed package's version (importlib.metadata), else the source tree's `soundctm.__version__`."""
    try:
        return metadata.version("soundctm")
    except metadata.PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
        return __version__


# ------------------------------------------------------------------------------------------------ argparse types


def _number(cast, text: str):
    try:
        return cast(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {'an integer' if cast is int else 'a number'}, "
                                         f"got {text!r}") from None


def positive_int(text: str) -> int:
    v = _number(int, text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v}")
    return v


def nonnegative_int(text: str) -> int:
    v = _number(int, text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def finite_float(text: str) -> float:
    v = _number(float, text)
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be finite, got {text}")
    return v


def positive_float(text: str) -> float:
    v = finite_float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be finite and > 0, got {text}")
    return v


def bounded_int(lo: int, hi: int):
    """An argparse type: an integer in [lo, hi]."""

    def parse(text: str) -> int:
        v = _number(int, text)
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be in [{lo}, {hi}], got {v}")
        return v

    parse.__name__ = f"int in [{lo}, {hi}]"
    return parse


def steps_int(text: str) -> int:
    """Sampling steps: an integer in [1, MAX_STEPS]."""
    return bounded_int(1, MAX_STEPS)(text)


class step_progress:  # noqa: N801 - used like a function: `with step_progress(n, "sampling") as cb:`
    """A tqdm bar on stderr for a long sampling run (>= PROGRESS_FROM_STEPS steps, stderr a terminal); the
    context value is a `callback(i, *rest)` for the samplers (`soundctm.sampling.sample` etc.), None otherwise."""

    def __init__(self, steps: int, desc: str = "sampling", total: int | None = None):
        self.show = steps >= PROGRESS_FROM_STEPS and sys.stderr.isatty()
        self.steps, self.desc, self.total, self.bar = steps, desc, total or steps, None

    def __enter__(self):
        if not self.show:
            return None
        from tqdm import tqdm  # only a long run on a terminal needs it

        self.bar = tqdm(total=self.total, desc=self.desc, unit="step", file=sys.stderr, leave=False)
        return lambda *_: self.bar.update(1)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False


# ------------------------------------------------------------------------------------------------ files


def _nearest_existing(p: Path) -> Path:
    p = Path(os.path.abspath(p))
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe_writable(folder: Path, what: str, target: Path) -> None:
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise CLIError(f"{what} {target} cannot be written: {folder} is not writable "
                       f"({e.strerror or type(e).__name__})") from None


def out_dir(path, what: str = "--out") -> Path:
    """`path` as an output folder that can be written (it need not exist yet; nothing is created)."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise CLIError(f"{what} {p} is an existing file, not a folder")
    base = _nearest_existing(p)
    if not base.is_dir():
        raise CLIError(f"{what} {p} cannot be made: {base} is a file, not a folder")
    _probe_writable(base, what, p)
    return p


def out_file(path, what: str = "--out") -> Path:
    """`path` as an output file that can be written (an existing file is overwritten; nothing is created)."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise CLIError(f"{what} {p} is a directory, not a file")
    if p.exists():
        if not os.access(p, os.W_OK):
            raise CLIError(f"{what} {p} exists and is not writable")
        return p
    base = _nearest_existing(p.parent)
    if not base.is_dir():
        raise CLIError(f"{what} {p} cannot be made: {base} is a file, not a folder")
    _probe_writable(base, what, p)
    return p


def in_file(path, what: str) -> Path:
    """An existing input file; a missing path or a folder is a `CLIError` naming `what`."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise CLIError(f"{what} {p} is a directory, not a file")
    if not p.is_file():
        raise CLIError(f"{what} not found: {p}")
    return p


def in_dir(path, what: str) -> Path:
    """An existing input folder; a missing path or a file is a `CLIError` naming `what`."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise CLIError(f"{what} {p} is a file, not a folder")
    if not p.is_dir():
        raise CLIError(f"{what} not found: {p}")
    return p


# ------------------------------------------------------------------------------------------------ parser + runner


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (`CLIError`), `--version` and `--threads` (pass `threads_default` to
    change the default thread count; a sub-command's parser takes `threads_default=argparse.SUPPRESS`, so that
    `--threads` given before the sub-command is kept)."""

    def __init__(self, *args, threads: bool = True, threads_default: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument("--version", action="version", version=f"%(prog)s {version()}")
        if threads:
            self.add_argument("--threads", type=positive_int, default=threads_default, metavar="N",
                              help="CPU threads of torch (torch.set_num_threads; default: "
                                   + (f"{threads_default})" if isinstance(threads_default, int) else "torch's)"))

    def error(self, message):  # argparse's default prints the usage too; we want one line
        raise CLIError(message)

    def parse_known_args(self, args=None, namespace=None):
        ns, rest = super().parse_known_args(args, namespace)
        n = getattr(ns, "threads", None)
        if n is not None:
            import torch  # only here: parsing alone needs no torch

            torch.set_num_threads(int(n))
        return ns, rest


def _close_broken_stdout() -> int:
    """stdout's reader went away: point stdout at /dev/null so the interpreter's last flush is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # pragma: no cover - stdout without a file descriptor
        pass
    return BROKEN_PIPE_STATUS


def run(prog: str, body, argv) -> int:
    """`body(argv)` under the convention: a `CLIError` -> one line on stderr and 2; `--help` / `--version` -> 0;
    a closed stdout -> quietly 141."""
    try:
        rc = body(argv)
        sys.stdout.flush()
        return int(rc or 0)
    except CLIError as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help, --version
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    except BrokenPipeError:
        return _close_broken_stdout()
