"""One convention for every `soundctm` command: bad input -> exactly one line on stderr naming the problem,
exit status 2, no traceback; `--threads N` and `--version` on every command; a closed stdout ends quietly.

Every case runs the installed console script (the `soundctm` executable next to `sys.executable`). A cold
start imports torch (seconds), so the table runs in one driver process that imports the package once and
then forks one child per case; each child runs the console script itself (`runpy`, `__main__`) with the
case's argv, its own stdout / stderr files and working directory, and its exit status is the child's.
A few cases also run as plain subprocesses, cold, to show the driver changes nothing.

CASES is a plain list of (id, argv, substring of the one error line). argv may name these fixtures:
  {tmp}      a fresh empty working folder of the case (its cwd; outputs land there)
  {file}     an existing small text file
  {dir}      an existing empty folder
  {wav}      a 0.5 s 16 kHz WAV
  {sidecar}  a candidate sidecar whose settings say `steps: -3` (otherwise well formed)
  {clips}    a folder holding one WAV (a generated / reference set)
  {badjson}  a results folder whose one table99.json is not UTF-8
  {notable}  a results folder whose one table99.json is JSON of the wrong shape (a list)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundctm.cli import COMMANDS

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "soundctm"
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")

G = ["generate", "rain"]
C = ["control", "rain", "--intensity", "rising"]
X = ["extend", "{wav}", "--cutoff", "3000"]
E = ["evaluate", "{clips}", "--reference", "{clips}"]

CASES = [
    # the top level
    ("unknown command", ["bogus"], "unknown command 'bogus'"),
    # outputs that cannot be written, refused before any work
    ("generate out /proc", [*G, "--out", "/proc/x"], "/proc"),
    ("generate out file", [*G, "--out", "{file}"], "is an existing file"),
    ("generate out under a file", [*G, "--out", "{file}/sub"], "is a file, not a folder"),
    ("refine out /proc", ["refine", "{sidecar}", "--out", "/proc/x"], "/proc"),
    ("control out /proc", [*C, "--out", "/proc/x"], "/proc"),
    ("control out file", [*C, "--out", "{file}"], "is an existing file"),
    ("extend out /proc", [*X, "--out", "/proc/x"], "/proc"),
    ("extend out file", [*X, "--out", "{file}"], "is an existing file"),
    ("evaluate out /proc", [*E, "--out", "/proc/x.json"], "/proc"),
    ("evaluate out dir", [*E, "--out", "{dir}"], "is a directory"),
    ("build-components out /proc", ["build-components", "--out", "/proc/x.json"], "/proc"),
    ("build-evaluator out /proc", ["build-evaluator", "--out", "/proc/x"], "/proc"),
    ("train-teacher run-dir /proc", ["train-teacher", "--run-dir", "/proc/x"], "/proc"),
    ("distill run-dir file", ["distill", "--teacher", "{file}", "--run-dir", "{file}"], "is an existing file"),
    ("convert out /proc", ["convert", "vae", "{file}", "--stats", "{file}", "--out", "/proc/x.safetensors"], "/proc"),
    # evaluate: every name and number checked before any work
    ("evaluate no reference", ["evaluate", "{clips}"], "--reference"),
    ("evaluate gen dir missing", ["evaluate", "{tmp}/none", "--reference", "{clips}"], "not found"),
    ("evaluate gen dir is a file", ["evaluate", "{file}", "--reference", "{clips}"], "is a file"),
    ("evaluate metric bogus", [*E, "--metrics", "bogus"], "unknown metric 'bogus'"),
    ("evaluate metrics empty", [*E, "--metrics", ""], "--metrics"),
    ("evaluate embedder bogus", [*E, "--embedder", "fd=bogus"], "bogus"),
    ("evaluate embedder no =", [*E, "--embedder", "fd"], "METRIC=NAME"),
    ("evaluate chunk size 0", [*E, "--chunk-size", "0"], "--chunk-size"),
    ("evaluate clip seconds nan", [*E, "--clip-seconds", "nan"], "--clip-seconds"),
    ("evaluate clip seconds 0", [*E, "--clip-seconds", "0"], "--clip-seconds"),
    ("evaluate clip seconds inf", [*E, "--clip-seconds", "inf"], "--clip-seconds"),
    ("evaluate clip seconds -1", [*E, "--clip-seconds", "-1"], "--clip-seconds"),
    ("evaluate workers -1", [*E, "--workers", "-1"], "--workers"),
    ("evaluate no audio files", ["evaluate", "{dir}", "--reference", "{clips}", "--metrics", "fd",
                                 "--embedder", "fd=logmel"], "no audio files"),
    ("evaluate reference missing", ["evaluate", "{clips}", "--reference", "{tmp}/none"], "--reference not found"),
    ("evaluate embedder for no metric", [*E, "--metrics", "fd", "--embedder", "kl=logmel"], "'kl'"),
    # demo / params
    ("demo steps 0", ["demo", "--steps", "0"], "--steps"),
    ("demo steps too many", ["demo", "--steps", "100000"], "--steps"),
    ("demo preset bogus", ["demo", "--preset", "bogus"], "bogus"),
    ("demo omega nan", ["demo", "--omega", "nan"], "--omega"),
    ("demo nu inf", ["demo", "--nu", "inf"], "--nu"),
    ("params bogus", ["params", "foo"], "unknown model preset 'foo'"),
    # sampling steps are bounded (soundctm.cmdline.MAX_STEPS)
    ("generate steps too many", [*G, "--steps", "100000"], "--steps"),
    ("refine steps too many", ["refine", "{sidecar}", "--steps", "100000"], "--steps"),
    ("control steps too many", [*C, "--steps", "100000"], "--steps"),
    ("extend steps too many", [*X, "--steps", "100000"], "--steps"),
    ("extend steps 0", [*X, "--steps", "0"], "--steps"),
    # every value read from a sidecar is validated
    ("refine sidecar steps -3", ["refine", "{sidecar}"], "steps"),
    ("refine sidecar is a dir", ["refine", "{dir}"], "is a directory"),
    # captions, seeds, eta, files
    ("extend empty caption", [*X, "--caption", ""], "caption is empty"),
    ("extend blank caption", [*X, "--caption", "  "], "caption is empty"),
    ("control seed -1", [*C, "--seed", "-1"], "--seed"),
    ("control eta huge", [*C, "--eta", "1e9"], "--eta"),
    ("control eta nan", [*C, "--eta", "nan"], "--eta"),
    ("generate checkpoint is a dir", [*G, "--checkpoint", "{dir}"], "is a directory"),
    ("control vae is a dir", [*C, "--vae", "{dir}"], "is a directory"),
    ("extend input is a dir", ["extend", "{dir}", "--cutoff", "3000"], "is a directory"),
    ("extend input missing", ["extend", "{tmp}/none.wav", "--cutoff", "3000"], "not found"),
    ("extend cutoff inf", [*X, "--cutoff", "inf"], "--cutoff"),
    ("generate omega nan", [*G, "--omega", "nan"], "--omega"),
    # report: its folders checked before any work; a results folder without one readable table is an error
    ("report no results folder", ["report"], "no results folder"),
    ("report results missing", ["report", "--results", "{tmp}/none"], "--results not found"),
    ("report results is a file", ["report", "--results", "{file}"], "is a file, not a folder"),
    ("report results /proc", ["report", "--results", "/proc"], "/proc"),
    ("report out /proc", ["report", "--results", "{dir}", "--out", "/proc/x"], "/proc"),
    ("report out file", ["report", "--results", "{dir}", "--out", "{file}"], "is an existing file"),
    ("report empty results", ["report", "--results", "{dir}"], "no table results"),
    ("report non-UTF-8 table", ["report", "--results", "{badjson}"], "table99.json: not UTF-8"),
    ("report wrong-shape table", ["report", "--results", "{notable}"], "table99.json: not a table result"),
    ("report checkpoint missing", ["report", "--results", "{clips}", "--checkpoint", "{tmp}/none.safetensors"],
     "--checkpoint not found"),
    ("report checkpoint is a dir", ["report", "--checkpoint", "{dir}"], "is a directory"),
    ("report teacher missing", ["report", "--results", "{clips}", "--teacher", "{tmp}/none.safetensors"],
     "--teacher not found"),
    ("report captions 0", ["report", "--captions", "0"], "--captions"),
    # --threads is a positive integer everywhere
    *[(f"{cmd} threads 0", [cmd, "--threads", "0"], "--threads") for cmd in COMMANDS if cmd != "convert"],
    ("convert threads 0", ["convert", "vae", "--threads", "0"], "--threads"),
]

# argv that each command refuses for a reason other than --threads (so `--threads 1` before it must be accepted)
AFTER_THREADS = {
    "demo": ["--steps", "0"], "params": ["foo"], "build-components": ["--out", "/proc/x.json"],
    "train-teacher": ["--run-dir", "/proc/x"], "distill": ["--run-dir", "/proc/x"],
    "generate": ["rain", "--steps", "0"], "refine": ["{sidecar}"], "evaluate": ["{clips}"],
    "build-evaluator": ["--out", "/proc/x"], "control": ["rain", "--intensity", "rising", "--seed", "-1"],
    "extend": ["{wav}", "--cutoff", "0"], "report": ["--results", "{tmp}/none"],
    "convert": ["vae", "{tmp}/none.pth"],
}

DRIVER = textwrap.dedent("""
    import importlib, json, os, runpy, signal, sys, traceback
    script, cases = sys.argv[1], json.load(open(sys.argv[2]))
    import soundctm.cli
    for mod, _, _ in soundctm.cli.COMMANDS.values():  # imported once, before the forks
        importlib.import_module(mod)
    out = {}
    for cid, argv, cwd in cases:
        paths = [os.path.join(cwd, ".case-stdout"), os.path.join(cwd, ".case-stderr")]
        pid = os.fork()
        if pid == 0:
            code = 1
            signal.alarm(30)  # a case that starts real work instead of refusing is killed (exit status -14)
            try:
                os.chdir(cwd)
                for fd, p in zip((1, 2), paths):
                    os.dup2(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
                sys.argv = [script, *argv]
                runpy.run_path(script, run_name="__main__")
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush(); sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        out[cid] = [rc] + [open(p, errors="replace").read() for p in paths]
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("cli-errors")
    (root / "file.txt").write_text("not a folder\n")
    (root / "dir").mkdir()
    sr = 16000
    wav = np.sin(2 * np.pi * 440 * np.arange(sr // 2) / sr).astype(np.float32) * 0.1
    sf.write(root / "in.wav", wav, sr)
    (root / "clips").mkdir()
    sf.write(root / "clips" / "yt0.wav", wav, sr)
    side = {"format": "soundctm-candidate", "format_version": 1, "caption": "rain", "seed": 0,
            "settings": {"steps": -3, "omega": 5.0, "nu": 1.0, "gamma": 0.0}, "sample_rate": 16000,
            "audio": "rain.wav", "checkpoints": {r: {"path": "x", "sha256": "0" * 64}
                                                 for r in ("student", "vae", "text_encoder")}}
    (root / "side.json").write_text(json.dumps(side))
    for name, body in (("badjson", b'{"meta": {}, "title": "\xff\xfe"}'), ("notable", b"[1, 2, 3]")):
        (root / name).mkdir()
        (root / name / "table99.json").write_bytes(body)
    return {"file": str(root / "file.txt"), "dir": str(root / "dir"), "wav": str(root / "in.wav"),
            "sidecar": str(root / "side.json"), "clips": str(root / "clips"), "root": str(root),
            "badjson": str(root / "badjson"), "notable": str(root / "notable")}


def _fill(argv, files, tmp) -> list[str]:
    return [a.format(tmp=tmp, **files) for a in argv]


def run_table(cases, files) -> dict[str, tuple[int, str, str]]:
    """{id: (exit status, stdout, stderr)} of each (id, argv) run through the console script."""
    root = Path(files["root"]) / "runs"
    todo = []
    for i, (cid, argv) in enumerate(cases):
        cwd = root / f"case{i}"
        cwd.mkdir(parents=True)
        todo.append((cid, _fill(argv, files, str(cwd)), str(cwd)))
    spec = root / f"cases-{len(list(root.glob('cases-*')))}.json"
    spec.write_text(json.dumps(todo))
    r = subprocess.run([sys.executable, "-c", DRIVER, str(SCRIPT), str(spec)], capture_output=True, text=True,
                       env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    shutil.rmtree(root)
    return {k: tuple(v) for k, v in out.items()}


def assert_one_line(cid: str, rc: int, err: str, expected: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, f"{cid}: exit status {rc}, stderr:\n{err[-2000:]}"
    assert "Traceback" not in err, f"{cid}: traceback:\n{err[-2000:]}"
    assert len(lines) == 1, f"{cid}: {len(lines)} stderr lines:\n{err[-2000:]}"
    assert expected in lines[0], f"{cid}: {expected!r} not in {lines[0]!r}"
    assert "error:" in lines[0], f"{cid}: {lines[0]!r}"


def test_the_console_script_is_installed():
    assert SCRIPT.is_file(), f"{SCRIPT}: install the package (pip install -e .)"


def test_every_bad_input_is_one_line_and_exit_status_2(files):
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    got = run_table([(cid, argv) for cid, argv, _ in CASES], files)
    failures = []
    for cid, _, expected in CASES:
        rc, _, err = got[cid]
        try:
            assert_one_line(cid, rc, err, expected)
        except AssertionError as e:
            failures.append(str(e))
    assert not failures, f"{len(failures)} of {len(CASES)} cases break the convention:\n\n" + "\n\n".join(failures)


@pytest.mark.parametrize("cid", ["generate out /proc", "evaluate metric bogus", "params bogus"])
def test_cold_subprocess_gives_the_same_line(files, tmp_path, cid):
    (_, argv, expected), = [c for c in CASES if c[0] == cid]
    r = subprocess.run([str(SCRIPT), *_fill(argv, files, str(tmp_path))], capture_output=True, text=True,
                       env=ENV, cwd=tmp_path, timeout=300)
    assert_one_line(cid, r.returncode, r.stderr, expected)


def test_every_command_takes_threads_and_version(files):
    cases = []
    for cmd in COMMANDS:
        cases.append((f"{cmd} --threads 1", [cmd, "--threads", "1", *AFTER_THREADS[cmd]]))
        cases.append((f"{cmd} --version", [cmd, "--version"]))
    cases.append(("--version", ["--version"]))
    got = run_table(cases, files)
    from soundctm.cmdline import version

    for cmd in COMMANDS:
        rc, _, err = got[f"{cmd} --threads 1"]
        # refused, but for the deliberate later reason: --threads 1 itself was accepted
        assert rc == 2 and len(err.strip().splitlines()) == 1 and "threads" not in err, (cmd, rc, err)
        rc, out, err = got[f"{cmd} --version"]
        assert rc == 0 and out.strip() == f"soundctm {cmd} {version()}", (cmd, rc, out, err)
    rc, out, _ = got["--version"]
    assert rc == 0 and out.strip() == f"soundctm {version()}"


def test_threads_sets_torchs_thread_count():
    import torch

    from soundctm.cmdline import Parser

    before = torch.get_num_threads()
    try:
        Parser(prog="x").parse_args(["--threads", "1"])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("argv", [["--help"], ["generate", "--help"], ["evaluate", "--help"]])
def test_a_closed_stdout_ends_quietly(argv, tmp_path):
    p = subprocess.Popen([str(SCRIPT), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
                         cwd=tmp_path)
    p.stdout.close()  # the reader is gone before the command writes a byte (`soundctm --help | head -0`)
    err = p.stderr.read().decode()
    rc = p.wait(timeout=300)
    # 141 (128 + SIGPIPE) where the command sees the closed pipe; argparse's own help printer ignores it (0)
    assert err == "" and rc in (0, 141), (rc, err)


@pytest.mark.parametrize("cmd", ["", "generate", "report"])
def test_help_into_head_has_no_traceback(cmd, tmp_path):
    r = subprocess.run(["bash", "-c", f"'{SCRIPT}' {cmd} --help | head -1"], capture_output=True, text=True,
                       env=ENV, cwd=tmp_path, timeout=300)
    assert r.returncode == 0 and r.stderr == "" and r.stdout.startswith("usage: soundctm"), r


def test_a_valid_generate_run_with_threads_writes_its_clip(tmp_path):
    r = subprocess.run([str(SCRIPT), "generate", "rain", "-n", "1", "--steps", "1", "--threads", "1",
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, env=ENV, cwd=tmp_path,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert [p.name for p in sorted((tmp_path / "out").iterdir())] == ["rain-seed0-1step.json", "rain-seed0-1step.wav"]
    assert r.stderr == ""


def _stderr_on_a_terminal(argv, cwd) -> tuple[int, str]:
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    p = subprocess.Popen([str(SCRIPT), *argv], stdout=subprocess.DEVNULL, stderr=slave, env=ENV, cwd=cwd)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return p.wait(timeout=300), b"".join(chunks).decode(errors="replace")


def test_long_sampling_shows_progress_on_a_terminal_only(tmp_path):
    from soundctm.cmdline import PROGRESS_FROM_STEPS

    argv = ["generate", "rain", "-n", "1", "--steps", str(PROGRESS_FROM_STEPS), "--threads", "1"]
    rc, err = _stderr_on_a_terminal([*argv, "--out", str(tmp_path / "tty")], tmp_path)
    assert rc == 0 and "sampling" in err and f"/{PROGRESS_FROM_STEPS} [" in err, err
    r = subprocess.run([str(SCRIPT), *argv, "--out", str(tmp_path / "pipe")], capture_output=True, text=True,
                       env=ENV, cwd=tmp_path, timeout=300)
    assert r.returncode == 0 and r.stderr == "", r.stderr  # not a terminal: no bar
    rc, err = _stderr_on_a_terminal(["generate", "rain", "-n", "1", "--steps", str(PROGRESS_FROM_STEPS - 1),
                                     "--out", str(tmp_path / "short")], tmp_path)
    assert rc == 0 and "sampling" not in err, err  # a short run: no bar
