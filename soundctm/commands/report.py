"""`soundctm report`: one page to look at, `results/<tier>/index.html`.

It reads what the tables already wrote under `results/<tier>/` (every `<table>.json` in the format of
`soundctm.experiments.report.write_result`, and the listening-test kits' results) and renders first the
verdicts of every claim in one table (`soundctm.experiments.summary`: the claim, the paper's numbers of the
rows it compares, ours with their 95 % intervals, the interval it was decided on, the verdict), then, per
table (Table 3 first): our numbers with their 95 % intervals next to the paper's, each claim's verdict
(SUPPORTED / NOT SUPPORTED / BROKEN, with its trivial-baseline self-test), links to the table's result files
(its JSON, CSV, Markdown and figure data) and the table's figures (every PNG under `results/<tier>/` whose
name, or one of whose folders' names, starts with the table's name; other PNGs go to a "More figures"
section). Result files that are no table are linked in their own section, with the reason. A "Listen"
section shows a few test captions, each with the real clip, the teacher's sample (40-step Heun, the same
ω, from the same z_T), a 1-step candidate of the student and its refinement from the same z_T (16 steps,
ν = 5, γ = 0), as spectrograms (time, mel frequency, a dB colour bar) and `<audio>` players, generated here
with `soundctm.generate` from a student export (default: the committed tiny student and teacher). A footer
carries every table's provenance.

The folder is self-contained and opens from disk: `index.html` plus `report/` (short PCM16 WAVs and
spectrogram PNGs; copies of the figures and result files when `--out` is not the results folder), relative
links only, no scripts, no remote resources; every table fits the page's width (a narrower window scrolls
it sideways inside its own box).

It writes only what it owns, into `--out` (default: the `--results` folder, itself by default
`./results/<tier>`): `report/manifest.json` lists every file a report wrote there, and a later report
replaces only files that list names. A file of the same name that it does not list (a report written by
hand, another tool's file) is refused before any work, and nothing is ever deleted. The console lists
every file written. A result file that cannot be read or is not a table (not UTF-8, not JSON, the wrong
shape) is skipped, with its reason, on the console and on the page.

    soundctm report                      # ./results/tiny/index.html
    soundctm report --tier paper --no-audio
    soundctm report --results results/tiny --out /tmp/site
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import re
import shutil
import statistics
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from soundctm.audio import _hz_to_mel, log_mel
from soundctm.cmdline import CLIError, Parser, bounded_int, in_dir, in_file, out_dir, run
from soundctm.data.corpus import TINY_CORPUS, make_clip_spec, render_take
from soundctm.edm import SIGMA_MAX
from soundctm.experiments.catalog import teacher_row
from soundctm.experiments.generation import sample_row
from soundctm.experiments.summary import VERDICTS, counts, interval_text, measure_text, summarize_record, table_order
from soundctm.experiments.tier import TIERS
from soundctm.generate import DEFAULT_STUDENT, DEFAULT_TEXT_ENCODER, DEFAULT_VAE, load_models, render
from soundctm.io import sha256_file
from soundctm.nn.text import Conditioner
from soundctm.paths import committed_tiny_dir, results_root
from soundctm.provenance import provenance
from soundctm.rng import prior_noise
from soundctm.train.checkpoint import load_export, read_export_metadata

__all__ = ["load_results", "find_figures", "find_result_files", "make_examples", "load_teacher", "render_html",
           "write_report", "spectrogram_png", "spectrogram_figure_png", "write_png", "ReportConflict", "MANIFEST",
           "main"]

ASSETS = "report"  # the folder beside index.html
MANIFEST = f"{ASSETS}/manifest.json"  # what the reports wrote into their folder (paths relative to it)
WRITER = "soundctm report"
SKIP_DIRS = {ASSETS, "checkpoints", ".work"}
EXAMPLE_STEPS = ((1, 1.0), (16, 5.0))  # (steps, nu) of the candidate and of its refinement; omega 5, gamma 0
DEFAULT_TEACHER = committed_tiny_dir() / "teacher-tiny-dit.safetensors"  # the committed tiny student's teacher
TEACHER_STEPS = 40  # Table 3's teacher row: Heun on the 40-point Karras grid
RESULT_EXTS = ("json", "csv", "md")  # the result files a section links (besides its figures)


# ----------------------------------------------------------------------------------------------
# reading the results



def _serves_default_student(tier: str) -> bool:
    """Whether the committed default student (its preset) is one of `tier`'s models, so that its samples can
    stand for the tier in Listen; an unknown tier: no."""
    t = TIERS.get(tier)
    if t is None:
        return False
    try:
        preset = read_export_metadata(DEFAULT_STUDENT)["preset"]["name"]
    except (OSError, KeyError, ValueError):
        return False
    return preset in t.presets.values()

def _title_from_md(md: Path, name: str) -> tuple[str, str]:
    """(title, description) from the first lines of <table>.md (`# title — tier`, blank, description)."""
    try:
        lines = md.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):  # no .md (or an unreadable one): the table's name
        return name, ""
    title = re.sub(r"\s+—\s+\S+ tier$", "", lines[0].lstrip("# ").strip()) if lines else name
    para = []
    for line in lines[2:]:
        if not line.strip():
            break
        para.append(line.strip())
    desc = " ".join(para)
    if desc.startswith(("Generated by", "|", "Listening-test kit")):
        desc = ""
    return title or name, desc


# the keys (and their types) of a table result: `experiments.report.write_result`'s, or a speed table's
# (`experiments.speed.run_speed`, Table 8: rows per system, seconds per step count, verdicts)
TABLE_KEYS = {"meta": dict, "columns": dict, "rows": list, "claims": list}
SPEED_KEYS = {"meta": dict, "steps": list, "rows": list, "verdicts": list}


def _shape_problem(rec) -> str | None:
    """Why `rec` (a parsed JSON) is not a table result the page can show, or None."""
    if not isinstance(rec, dict):
        return f"not a table result (a JSON {type(rec).__name__}, not an object)"
    keys = SPEED_KEYS if rec.get("kind") == "speed" else TABLE_KEYS
    missing = [k for k in keys if k not in rec]
    if missing:
        return "not a table result (no " + ", ".join(repr(k) for k in missing) + ")"
    wrong = [f"{k!r} is a {type(rec[k]).__name__}, not a {t.__name__}" for k, t in keys.items()
             if not isinstance(rec[k], t)]
    wrong += [f"an item of {k!r} is not an object" for k in ("rows", "claims", "verdicts")
              if k in keys and isinstance(rec[k], list) and not all(isinstance(x, dict) for x in rec[k])]
    return "wrong shape: " + "; ".join(wrong) if wrong else None


def load_results(results_dir: str | Path, skipped: list | None = None) -> list[dict]:
    """Every table result under `results_dir` (JSON with meta, columns, rows and claims, or a speed table's
    meta, steps, rows and verdicts), in table order. Each other `*.json` is appended to `skipped` as
    (file name, why): not UTF-8, not JSON, not a table result, or a table the page cannot render."""
    out = []
    skipped = [] if skipped is None else skipped
    for p in sorted(Path(results_dir).glob("*.json")):
        try:
            rec = json.loads(p.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as e:
            skipped.append((p.name, f"not UTF-8 text (byte {e.start})"))
            continue
        except json.JSONDecodeError as e:
            skipped.append((p.name, f"not JSON ({e.msg}, line {e.lineno})"))
            continue
        except OSError as e:
            skipped.append((p.name, f"cannot be read ({e.strerror or type(e).__name__})"))
            continue
        problem = _shape_problem(rec)
        if problem:
            skipped.append((p.name, problem))  # components.json, regression.json, a broken table, ...
            continue
        title, desc = _title_from_md(p.with_suffix(".md"), p.stem)
        t = {"name": p.stem, "path": p, "record": rec, "title": str(rec.get("title") or title),
             "description": str(rec.get("description") or desc)}
        try:
            _section(t, {})
        except (TypeError, ValueError, KeyError, AttributeError, IndexError, statistics.StatisticsError) as e:
            skipped.append((p.name, f"cannot be rendered ({type(e).__name__}: {e})"))
            continue
        out.append(t)
    return sorted(out, key=lambda t: table_order(t["name"]))


def _owned(results_dir: str | Path, names: list[str], exts, exclude: Path | None = None) -> dict[str | None, list[str]]:
    """Files under `results_dir` ending in one of `exts` (relative paths), by the table whose name starts the
    file's name or one of its folders' (`table7-grid.png`, `table7/fig4.png`; None: the others); none under
    `exclude` (a report's own folder inside the results), the report's and the caches' folders, listening-test
    kits or hidden folders."""
    root = Path(results_dir)
    exclude = None if exclude is None else Path(os.path.abspath(exclude))
    found: dict[str | None, list[str]] = {}
    for p in sorted(q for ext in exts for q in root.rglob(f"*.{ext}")):
        rel = p.relative_to(root)
        if rel.parts[0] in SKIP_DIRS or rel.parts[0].endswith("-kit") or rel.parts[0].startswith(".") \
                or not p.is_file():
            continue
        if exclude is not None and Path(os.path.abspath(p)).is_relative_to(exclude):
            continue
        key = rel.as_posix()
        owner = max((n for n in names if any(re.match(rf"{re.escape(n)}(?![0-9])", part) for part in rel.parts)),
                    key=len, default=None)
        found.setdefault(owner, []).append(key)
    return found


def find_figures(results_dir: str | Path, names: list[str], exclude: Path | None = None) -> dict[str | None, list[str]]:
    """PNG files under `results_dir` (relative paths), by the table whose name starts the file's name or one of
    its folders' (`table7-grid.png`, `table7/fig4.png`; None: the others); none under `exclude` (a report's own
    folder inside the results)."""
    return _owned(results_dir, names, ("png",), exclude)


def find_result_files(results_dir: str | Path, names: list[str], exclude: Path | None = None) -> dict[str | None,
                                                                                                      list[str]]:
    """The result files (JSON, CSV, Markdown) under `results_dir`, by table as `find_figures` sorts figures."""
    return _owned(results_dir, names, RESULT_EXTS, exclude)


# ----------------------------------------------------------------------------------------------
# images without a plotting package


_ANCHORS = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21],
                     [250, 193, 39], [252, 255, 164]], dtype=np.float64)  # a dark-to-light "inferno"-like ramp


def _palette() -> np.ndarray:
    x = np.linspace(0, len(_ANCHORS) - 1, 256)
    i = np.minimum(x.astype(int), len(_ANCHORS) - 2)
    f = (x - i)[:, None]
    return np.round(_ANCHORS[i] * (1 - f) + _ANCHORS[i + 1] * f).astype(np.uint8)


def write_png(path: str | Path, index: np.ndarray, palette: np.ndarray | None = None) -> Path:
    """An 8-bit palette PNG of `index` [H, W] (uint8) with `palette` [256, 3] (default the ramp above)."""
    index = np.ascontiguousarray(index, dtype=np.uint8)
    h, w = index.shape
    pal = (_palette() if palette is None else np.asarray(palette, dtype=np.uint8)).reshape(-1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + index[r].tobytes() for r in range(h))  # filter type 0 on every row
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
            + chunk(b"PLTE", pal.tobytes()) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def mel_db(wav: np.ndarray, sample_rate: int, n_mels: int = 64, n_fft: int = 1024, hop: int = 128) -> np.ndarray:
    """Log-mel magnitude in dB [n_mels, frames]."""
    x = torch.as_tensor(np.asarray(wav, dtype=np.float32))[None, None]
    return 20.0 * log_mel(x, sample_rate, n_fft, n_mels, hop)[0].numpy()


def spectrogram_png(path, db: np.ndarray, vmax: float, range_db: float = 80.0, height_scale: int = 2) -> Path:
    """`db` [n_mels, frames] as an image: low frequencies at the bottom, [vmax - range, vmax] dB mapped to the ramp."""
    v = np.clip((db - (vmax - range_db)) / range_db, 0.0, 1.0)
    img = np.round(v[::-1] * 255).astype(np.uint8)
    return write_png(path, np.repeat(img, height_scale, axis=0))


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def spectrogram_figure_png(path, db: np.ndarray, sample_rate: int, hop: int, vmax: float,
                           range_db: float = 80.0) -> Path:
    """`db` [n_mels, frames] (`mel_db`) as a figure with axes: time in s, frequency in kHz on the mel scale of
    `soundctm.audio.mel_filterbank` (0 Hz to Nyquist, HTK), and a colour bar of [vmax - range, vmax] dB. Without
    matplotlib: `spectrogram_png` (the image alone)."""
    plt = _pyplot()
    if plt is None:
        return spectrogram_png(path, db, vmax, range_db)
    n_mels, frames = db.shape
    top = float(_hz_to_mel(sample_rate / 2))
    step = top / (n_mels + 1)  # band i is centred on (i + 1) * step mel; the last one drawn up to Nyquist
    lo, hi = 0.5 * step, top
    fig, ax = plt.subplots(figsize=(6.0, 2.5), dpi=100, layout="constrained")
    try:
        im = ax.imshow(db, origin="lower", aspect="auto", cmap="inferno", vmin=vmax - range_db, vmax=vmax,
                       extent=(0.0, frames * hop / sample_rate, lo, hi), interpolation="nearest")
        ticks = [f for f in (250, 500, 1000, 2000, 4000, 8000, 16000) if lo <= _hz_to_mel(f) <= hi]
        ax.set_yticks([float(_hz_to_mel(f)) for f in ticks], [f"{f / 1000:g}" for f in ticks])
        ax.set_xlabel("time [s]", fontsize=9)
        ax.set_ylabel("frequency [kHz]", fontsize=9)
        ax.tick_params(labelsize=8)
        cb = fig.colorbar(im, ax=ax, pad=0.01)
        cb.set_label("dB", fontsize=9)
        cb.ax.tick_params(labelsize=8)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", metadata={"Software": None})
    finally:
        plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------
# audio examples


def _tiny_captions(n: int) -> list[tuple[str, str, np.ndarray]]:
    """(clip id, caption, real clip) of the first `n` test clips of the tiny corpus (rendered from their specs)."""
    sr, n_samples, seed = TINY_CORPUS["sample_rate"], TINY_CORPUS["clip_samples"], TINY_CORPUS["seed"]
    out = []
    for i in range(n):
        spec = make_clip_spec(seed, "test", i, n_samples / sr)
        out.append((spec.youtube_id, spec.captions[0], render_take(seed, "test", i, 0, sr, n_samples)))
    return out


def load_teacher(path, models) -> tuple[torch.nn.Module, Conditioner, dict]:
    """(teacher, its conditioner, {"path", "sha256"}) of a teacher export that fits `models` (the same latent
    shape and text encoder); anything else is a one-line CLIError."""
    p = in_file(path, "teacher checkpoint").resolve()
    try:
        teacher = load_export(p)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user error here
        raise CLIError(f"{p} is not a usable soundctm teacher export ({type(e).__name__}: {e})"[:300]) from None
    meta = getattr(teacher, "export_metadata", {}) or {}
    if meta.get("kind") != "teacher":
        raise CLIError(f"{p} is a {meta.get('kind')} export, not a teacher")
    if tuple(teacher.latent_shape) != tuple(models.student.latent_shape):
        raise CLIError(f"{p}: the teacher's latent shape {tuple(teacher.latent_shape)} is not the student's "
                       f"{tuple(models.student.latent_shape)}")
    enc = ((meta.get("extra") or {}).get("conditioning") or {}).get("text_encoder", "tiny-clap")
    if enc != "tiny-clap":
        raise CLIError(f"{p}: the teacher was trained with the {enc!r} text encoder, the report loads tiny-clap only")
    cond = Conditioner.for_model(models.text_encoder, teacher)
    return teacher.to(models.device).eval(), cond, {"path": str(p), "sha256": sha256_file(p)}


@torch.no_grad()
def render_teacher(models, teacher, conditioner, caption: str, seed: int, omega: float = 5.0) -> tuple[np.ndarray,
                                                                                                     dict]:
    """The teacher's clip from the student's z_T of `seed`, sampled as Table 3's teacher row (Heun, 40 steps,
    CFG `omega`), decoded with the student's VAE."""
    row = teacher_row(steps=TEACHER_STEPS, omega=omega)
    dev = models.device
    z_T = prior_noise([seed], tuple(teacher.latent_shape), SIGMA_MAX, device=dev)
    cond, uncond = conditioner([caption]).to(dev), conditioner.uncond.to(dev)
    z0 = sample_row(row, teacher, z_T, cond, uncond).float()
    wav = models.vae.decode(z0).float()[0, 0].cpu().numpy()
    return wav, {"sampler": "heun", "steps": row.steps, "omega": float(omega)}


def make_examples(assets: Path, models, clips: list[tuple[str, str, np.ndarray | None]], seed: int = 0,
                  omega: float = 5.0, teacher=None, log=print) -> list[dict]:
    """For each (clip id, caption, real clip): the real clip, the teacher's sample (`teacher`: (model,
    conditioner) or None), the 1-step candidate (prior seed `seed` + i) and its refinement from the same z_T,
    as PCM16 WAVs and spectrogram figures under `assets`."""
    sr = models.sample_rate
    hop = 128  # `mel_db`'s
    out = []
    for i, (clip_id, caption, real) in enumerate(clips):
        sounds = [] if real is None else [("real", "real test clip", np.asarray(real, dtype=np.float32), None)]
        if teacher is not None:
            wav, settings = render_teacher(models, *teacher, caption, seed + i, omega=omega)
            sounds.append(("teacher", f"teacher, {TEACHER_STEPS}-step Heun", wav, settings))
        for steps, nu in EXAMPLE_STEPS:
            wav, settings = render(models, caption, seed + i, steps=steps, omega=omega, nu=nu, gamma=0.0)
            what = f"{steps}-step candidate" if steps == EXAMPLE_STEPS[0][0] else f"refined, {steps} steps"
            sounds.append((f"{steps}step", what, wav, settings))
        dbs = [mel_db(w, sr) for _, _, w, _ in sounds]
        vmax = max(float(d.max()) for d in dbs)
        entries = []
        for (tag, what, wav, settings), db in zip(sounds, dbs):
            stem = f"ex{i}-{tag}"
            sf.write(assets / "audio" / f"{stem}.wav", np.clip(wav, -1, 1), sr, subtype="PCM_16", format="WAV")
            spectrogram_figure_png(assets / "img" / f"{stem}.png", db, sr, hop, vmax)
            entries.append({"what": what, "audio": f"{ASSETS}/audio/{stem}.wav", "image": f"{ASSETS}/img/{stem}.png",
                            "settings": None if settings is None else {k: settings[k] for k in
                                                                       ("sampler", "steps", "omega", "nu", "gamma")
                                                                       if k in settings}})
        out.append({"clip": clip_id, "caption": caption, "seed": seed + i, "sounds": entries})
        log(f"[report] example {i + 1}/{len(clips)}: {caption!r}")
    return out


# ----------------------------------------------------------------------------------------------
# HTML


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1280px;padding:0 1.2em 3em;
color:#1d1d1f;line-height:1.45}
h1{margin:.8em 0 .2em}h2{margin-top:2em;border-bottom:2px solid #ddd;padding-bottom:.2em}
nav a{margin-right:1em}
.scroll{overflow-x:auto;max-width:100%;margin:.8em 0}
table{border-collapse:collapse;font-size:.86em}
th,td{border:1px solid #ddd;padding:.3em .5em;text-align:right;white-space:nowrap;vertical-align:top}
th{background:#f4f4f6;white-space:normal}td.model,th.model{text-align:left;white-space:normal;min-width:10em}
td.paper,th.paper{background:#f7f9ff;color:#334}td.notrun{text-align:left;color:#777;white-space:normal}
.ci{display:block;color:#777;font-size:.85em}
ul.claims{list-style:none;padding-left:0}ul.claims li{margin:.35em 0}
.v,.badge{display:inline-block;font-weight:600;font-size:.8em;padding:.1em .5em;border-radius:.8em;margin-right:.4em;
white-space:nowrap}
.v-supported{background:#d8f5dd;color:#11621f}.v-not{background:#f1f1f1;color:#555}
.v-broken{background:#fde0e0;color:#a01010}.v-undecided{background:#fff4d6;color:#7a5b00}
.selftest{display:block;color:#666;font-size:.88em;margin-left:1.5em}
figure{display:inline-block;margin:.6em 1em .6em 0;vertical-align:top}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.85em;color:#555}
.examples{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:.8em}
.sound img{width:100%;image-rendering:auto;border:1px solid #ddd}.sound audio{width:100%}
.caption{font-style:italic;margin:1.2em 0 .3em}
footer{margin-top:3em;font-size:.8em;color:#555;border-top:1px solid #ddd}footer table{font-size:.95em}
footer td{text-align:left;white-space:normal}
.warning{background:#fff4d6;border-left:4px solid #c99700;padding:.5em .8em}
table.summary td{text-align:left;white-space:normal}table.summary td.claim{min-width:16em}
table.summary td.num{white-space:nowrap}table.summary td.num div{white-space:nowrap}
table.summary tr.group th{background:#eef1f8}table.summary th,table.counts th:first-child{text-align:left}
table.counts td:first-child{text-align:left;white-space:normal}
.sub{display:block;color:#777;font-size:.85em}p.files{font-size:.9em}ul.skipped li{margin:.2em 0}
"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _sig(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.4g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def _num(x, nd=None) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if nd is not None:
        return f"{x:.{nd}f}"
    return f"{x:g}" if isinstance(x, (int, float)) else _e(x)


def verdict_class(label: str) -> str:
    if label.startswith("BROKEN"):
        return "v-broken"
    if label.startswith("NOT SUPPORTED"):
        return "v-not"
    if label.startswith("SUPPORTED"):
        return "v-supported"
    return "v-undecided"


def _claims_html(claims: list[dict], trivial: str) -> str:
    if not claims:
        return "<p>No claims.</p>"
    items = []
    for c in claims:
        label = c.get("label") or ("SUPPORTED" if c.get("supported") else "NOT SUPPORTED")
        li = (f'<li><span class="v {verdict_class(label)}">{_e(label)}</span><b>{_e(c.get("claim", ""))}</b> '
              f'{_e(c.get("text", ""))} — {_e(c.get("detail", ""))}')
        st = c.get("self_test")
        if st:
            ok = "NOT SUPPORTED, as it must be" if not st.get("supported") else "SUPPORTED: the claim is broken"
            li += f'<span class="selftest">self-test with {_e(trivial)} in place of the system: {ok} — ' \
                  f'{_e(st.get("detail", ""))}</span>'
        items.append(li + "</li>")
    return '<ul class="claims">' + "".join(items) + "</ul>"


def _setting(r: dict, key: str, student_only: bool = False) -> str:
    """A sampling setting of a row: '-' for rows that are not sampled (and ν, γ of the teacher's solvers)."""
    if r.get("source", "sampler") != "sampler" or (student_only and r.get("sampler") in ("heun", "euler")):
        return "-"
    return _num(r.get(key))


def _table_html(t: dict) -> str:
    rec = t["record"]
    rows, cols = rec["rows"], list(rec["columns"].values())
    paper_cols = list(dict.fromkeys(k for r in rows for k in (r.get("paper") or {})))
    has_sec = any(r.get("seconds") for r in rows)
    mem_col = rec.get("memory_column")
    has_gamma = any((r.get("gamma") or 0) != 0 for r in rows)
    head = ['<th class="model">Model</th>', "<th>steps</th>", "<th>ω</th>", "<th>ν</th>"]
    head += ["<th>γ</th>"] if has_gamma else []
    head += [f"<th>{_e(c)}</th>" for c in cols]
    head += ["<th>seconds/sample</th>"] if has_sec else []
    head += [f"<th>{_e(mem_col)}</th>"] if mem_col else []
    head += [f'<th class="paper">paper {_e(c)}</th>' for c in paper_cols]
    body = []
    for r in rows:
        setting = lambda k, student=False, r=r: _setting(r, k, student)
        cells = [f'<td class="model">{_e(r.get("model") or r.get("row"))}</td>', f"<td>{setting('steps')}</td>",
                 f"<td>{setting('omega')}</td>", f"<td>{setting('nu', True)}</td>"]
        if has_gamma:
            cells.append(f"<td>{setting('gamma', True)}</td>")
        if r.get("not_run"):
            n = len(cols) + has_sec + bool(mem_col)
            cells.append(f'<td class="notrun" colspan="{n}">not run: {_e(r["not_run"])}</td>')
        else:
            for c in cols:
                m = (r.get("metrics") or {}).get(c)
                if not m or m.get("value") is None:
                    cells.append("<td>-</td>")
                else:
                    ci = (f' <span class="ci">[{_sig(m["lo"])}, {_sig(m["hi"])}]</span>'
                          if m.get("lo") is not None and m.get("hi") is not None else "")
                    cells.append(f"<td>{_sig(m['value'])}{ci}</td>")
            if has_sec:
                s = r.get("seconds")
                cells.append(f"<td>{_num(statistics.median(s), 4) if s else '-'}</td>")
            if mem_col:
                mm = r.get("train_memory_mib")
                cells.append(f"<td>{_num(statistics.mean(mm), 0) if mm else '-'}</td>")
        cells += [f'<td class="paper">{_num((r.get("paper") or {}).get(c))}</td>' for c in paper_cols]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return _scroll(f'<table class="results" data-table="{_e(t["name"])}"><thead><tr>{"".join(head)}</tr></thead>'
                   f'<tbody>{"".join(body)}</tbody></table>')


def _scroll(table: str) -> str:
    """A table in its own box: it fits the page, and a window too narrow for it scrolls the box, not the page."""
    return f'<div class="scroll">{table}</div>'


def _at(by_steps: dict, n):
    """by_steps[n] of a speed row (its JSON has the step counts as str keys)."""
    return by_steps.get(str(n), by_steps.get(n))


def _speed_table_html(t: dict) -> str:
    """A speed table (Table 8): per system and unconditional-branch mode, the median seconds per sample at each
    step count next to the paper's (on the rows timed as the paper's systems: branch skipped)."""
    rec = t["record"]
    steps = rec["steps"]
    head = ['<th class="model">Model</th>', "<th>ch/sr</th>", "<th>params (text / backbone / decoder)</th>",
            "<th>∅ at ν = 1</th>", *[f"<th>{_e(n)} step(s) [s]</th>" for n in steps],
            *[f'<th class="paper">paper {_e(n)} [s]</th>' for n in steps]]
    body = []
    for r in rec["rows"]:
        p = r.get("params") or {}
        params = " / ".join("-" if p.get(k) is None else f"{p[k] / 1e6:.1f} M"
                            for k in ("text", "backbone", "decoder"))
        cells = [f'<td class="model">{_e(r.get("label") or r.get("system"))}</td>',
                 f"<td>{_e(r.get('ch_sr', '-'))}</td>", f"<td>{_e(params)}</td>",
                 f"<td>{_e(r.get('uncond_at_nu_1', '-'))}</td>"]
        cells += [f"<td>{_num(_at(r.get('median') or {}, n), 4)}</td>" for n in steps]
        cells += [f'<td class="paper">{_num(_at(r.get("paper") or {}, n), 3)}</td>' for n in steps]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return _scroll(f'<table class="results" data-table="{_e(t["name"])}"><thead><tr>{"".join(head)}</tr></thead>'
                   f'<tbody>{"".join(body)}</tbody></table>')


def _setting_line(meta: dict, rec: dict) -> str:
    if rec.get("kind") == "speed":
        return (f"Device: {_e(meta.get('device'))}; seconds per sample at batch {_e(meta.get('batch', 1))}, median "
                f"of {_e(meta.get('repeats'))} calls after {_e(meta.get('warmup'))} warm-up calls. Paper: "
                f"{_e(rec.get('paper_device') or '-')}.")
    if rec.get("kind") == "listening-test":
        kit = rec.get("kit", {})
        s = (f"Listening-test kit <code>{_e(kit.get('dir'))}</code> (webMUSHRA config <code>{_e(kit.get('config'))}"
             f"</code>), {kit.get('items')} items per criterion, every stimulus at "
             f"{_num(kit.get('loudness_lufs'), 1)} LUFS. ")
        if kit.get("rated"):
            scr = kit.get("screening") or {}
            s += (f"{kit.get('n_ratings')} ratings; {len(scr.get('kept', []))} raters kept, "
                  f"{len(scr.get('excluded', []))} excluded ({_e(scr.get('rule', ''))}). Cells: mean and 95 % CI.")
        else:
            s += "Not rated yet: our columns fill in when the ratings are analysed."
        return s
    parts = []
    if meta.get("n_units"):
        parts.append(f"{meta['n_units']} test clips × {meta.get('captions_per_unit')} captions × "
                     f"{meta.get('samples_per_caption')} samples per row")
    if meta.get("n_boot"):
        parts.append(f"95 % bootstrap intervals over test clips ({meta['n_boot']} resamples) in brackets")
    return "; ".join(parts) + ("." if parts else "")


LISTEN_LINK = '<a href="#listen">listen</a>'
OTHER_LINK = '<a href="#skipped">other files</a>'


def _file_links(files: list[str]) -> str:
    return ", ".join(f'<a href="{_e(f)}"><code>{_e(f.rsplit("/", 1)[-1])}</code></a>' for f in files)


def _section(t: dict, figures: dict, files: dict | None = None) -> list[str]:
    """The HTML of one table's section: title, description, settings, the table, its claims, links to its
    result files (`files[name]`: relative links), its figures."""
    rec = t["record"]
    trivial = "the low-pass anchor" if rec.get("kind") == "listening-test" else "the decoded-zeros row"
    parts = [f'<section id="{_e(t["name"])}"><h2>{_e(t["title"])}</h2>']
    if t["description"]:
        parts.append(f"<p>{_e(t['description'])}</p>")
    parts.append(f"<p>{_setting_line(rec.get('meta', {}), rec)}</p>")
    speed = rec.get("kind") == "speed"
    parts.append(_speed_table_html(t) if speed else _table_html(t))
    parts.append("<h3>Claims</h3>" + _claims_html(rec["verdicts"] if speed else rec.get("claims", []), trivial))
    if (files or {}).get(t["name"]):
        parts.append(f'<p class="files">Result files: {_file_links(files[t["name"]])}</p>')
    for f in figures.get(t["name"], []):
        parts.append(f'<figure><img src="{_e(f)}" alt="{_e(f)}" loading="eager"><figcaption>{_e(f)}'
                     "</figcaption></figure>")
    parts.append("</section>")
    return parts


VERDICT_CLASS = {"supported": "v-supported", "not supported": "v-not", "inconclusive": "v-undecided",
                 "broken": "v-broken"}


def _summary_html(tables: list[dict]) -> list[str]:
    """The verdicts section: a count of each verdict per table, then every claim (grouped by table) with the
    paper's numbers of the rows it compares, ours with their 95 % intervals, the interval of the statistic it was
    decided on, the verdict and its self-test (`soundctm.experiments.summary`; nothing re-decided)."""
    rows = [r for t in tables for r in summarize_record(t["name"], t["title"], t["record"])]
    if not rows:
        return []
    per = counts(rows)
    titles = {t["name"]: t["title"] for t in tables}
    n = {v: sum(c[v] for c in per.values()) for v in VERDICTS}
    parts = ['<section id="verdicts"><h2>Verdicts</h2>',
             f"<p>{len(rows)} claims in {len(per)} tables: {n['supported']} supported, {n['not supported']} not "
             f"supported, {n['inconclusive']} inconclusive, {n['broken']} broken (the trivial baseline passes them "
             "too). <i>paper</i>: the paper's numbers of the rows a claim compares (in the paper's column for that "
             "metric, where it has one); <i>ours</i>: the same rows' values with their 95 % intervals; "
             "<i>interval</i>: the statistic the claim is decided on, with its 95 % interval. Each table's section "
             "below has the details.</p>"]
    head = "".join(f"<th>{_e(v)}</th>" for v in VERDICTS)
    body = "".join(f'<tr><td><a href="#{_e(t)}">{_e(titles.get(t, t))}</a></td><td>{sum(c.values())}</td>'
                   + "".join(f"<td>{c[v]}</td>" for v in VERDICTS) + "</tr>" for t, c in per.items())
    body += f"<tr><th>all</th><th>{len(rows)}</th>" + "".join(f"<th>{n[v]}</th>" for v in VERDICTS) + "</tr>"
    parts.append(_scroll(f'<table class="counts"><thead><tr><th>table</th><th>claims</th>{head}</tr></thead>'
                         f"<tbody>{body}</tbody></table>"))
    trs = []
    for t in per:
        trs.append(f'<tr class="group"><th colspan="5"><a href="#{_e(t)}">{_e(titles.get(t, t))}</a></th></tr>')
        for r in (r for r in rows if r.table == t):
            col = f'<span class="sub">{_e(r.paper_column)}</span>' if r.paper_column and any(
                v is not None for v in r.paper) else ""
            paper = "".join(f"<div>{_e(measure_text(None) if v is None else f'{v:g}')}</div>" for v in r.paper) \
                if any(v is not None for v in r.paper) else "–"
            ours = "".join(f"<div>{_e(sys_)}: {_e(measure_text(m))}</div>" for sys_, m in zip(r.systems, r.ours)) \
                or "–"
            metric = f'<span class="sub">{_e(r.metric)}</span>' if r.metric else ""
            st = {"passed": "self-test passed", "failed": "self-test failed: the trivial row passes it"}
            self_test = f'<span class="sub">{st[r.self_test]}</span>' if r.self_test else ""
            badge = f'<span class="badge {VERDICT_CLASS[r.verdict]}">{_e(r.verdict)}</span>'
            trs.append(f'<tr><td class="claim"><b>{_e(r.claim)}</b> {_e(r.text)}</td><td class="num">{paper}{col}</td>'
                       f'<td class="num">{ours}{metric}</td><td>{_e(interval_text(r))}</td><td>{badge}{self_test}</td>'
                       "</tr>")
    parts.append(_scroll('<table class="summary"><thead><tr><th>claim</th><th>paper</th><th>ours [95 % interval]'
                         '</th><th>interval</th><th>verdict</th></tr></thead><tbody>' + "".join(trs)
                         + "</tbody></table>"))
    parts.append("</section>")
    return parts


def _other_files_html(skipped: list, links: dict) -> list[str]:
    """The result files not shown as a table: each skipped file with its reason, then the other files of no
    table (`links`: file name -> relative link, of every file of no table); each linked where `links` has it."""
    named = {name for name, _ in skipped}
    others = [f for f in links if f not in named]
    if not skipped and not others:
        return []
    link = lambda name: (f'<a href="{_e(links[name])}"><code>{_e(name)}</code></a>' if links.get(name)
                         else f"<code>{_e(name)}</code>")
    items = [f"<li>{link(name)}: {_e(why)}</li>" for name, why in skipped]
    items += [f"<li>{link(f)}</li>" for f in others]
    return ['<section id="skipped"><h2>Other result files</h2><p>Result files that are not shown as a table above '
            "(they are not table results, or cannot be read as one), with the reason:</p>"
            f'<ul class="skipped">{"".join(items)}</ul></section>']


def render_html(tables: list[dict], figures: dict, examples: list[dict] | None, tier: str,
                examples_note: str = "", meta: dict | None = None, skipped: list | None = None,
                files: dict | None = None, links: dict | None = None) -> str:
    """The page. `skipped`: (file name, why) of each result file not shown, listed (and linked) in their own
    section with the other files of no table (`links`: file name -> relative link); `files`: each table's result
    files (table name -> relative links)."""
    meta, files, links, skipped = meta or {}, files or {}, links or {}, skipped or []
    summary = _summary_html(tables)
    nav = ('<a href="#verdicts">verdicts</a>' if summary else "") + "".join(
        f'<a href="#{_e(t["name"])}">{_e(t["name"])}</a>' for t in tables)
    other = _other_files_html(skipped, links)
    parts = [f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" "
             f"content=\"width=device-width, initial-scale=1\"><title>SoundCTM reproduction — {_e(tier)} tier</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>SoundCTM reproduction — {_e(tier)} tier</h1>",
             "<p>Every table we reproduce, with our numbers and their 95 % intervals next to the paper's, each "
             "claim's verdict and its trivial-baseline self-test, the figures, and samples to listen to. Our "
             "numbers and the paper's are not comparable in absolute value on the tiny tier (other data, "
             "embedders and models); the claims are what it checks."
             + (f' <a href="#skipped">{len(skipped)} result file(s)</a> are not shown as tables.' if skipped else "")
             + "</p>",
             f"<nav>{nav}{OTHER_LINK if other else ''}{LISTEN_LINK if examples else ''}</nav>"]
    mixed = mixed_components_note(tables)
    if mixed:
        parts.append(f'<p class="warning">{_e(mixed)}</p>')
    parts += summary
    for t in tables:
        parts += _section(t, figures, files)
    parts += other
    if figures.get(None):
        parts.append('<section id="figures"><h2>More figures</h2>')
        parts += [f'<figure><img src="{_e(f)}" alt="{_e(f)}"><figcaption>{_e(f)}</figcaption></figure>'
                  for f in figures[None]]
        parts.append("</section>")
    parts.append('<section id="listen"><h2>Listen: the teacher, 1-step candidates and their refinements</h2>')
    if examples:
        has_teacher = any(s["audio"].endswith("-teacher.wav") for ex in examples for s in ex["sounds"])
        parts.append("<p>The sound creator's loop: a 1-step candidate (ω = 5, ν = 1) and the same z_T refined "
                     "with 16 deterministic steps (ν = 5, γ = 0), next to the real test clip of the caption"
                     + (f" and the teacher's sample from the same z_T ({TEACHER_STEPS}-step Heun, the same ω)"
                        if has_teacher else "")
                     + ". Log-mel spectrograms (time in s, frequency in kHz on the mel scale) share one 80 dB range "
                     "per caption.</p>")
        if examples_note:
            parts.append(f"<p>{_e(examples_note)}.</p>")
        for ex in examples:
            parts.append(f'<p class="caption">“{_e(ex["caption"])}” <small>(test clip {_e(ex["clip"])}, prior seed '
                         f'{ex["seed"]})</small></p><div class="examples">')
            for s in ex["sounds"]:
                parts.append(f'<div class="sound"><div>{_e(s["what"])}</div><img src="{_e(s["image"])}" '
                             f'alt="spectrogram: {_e(s["what"])}"><audio controls preload="metadata" '
                             f'src="{_e(s["audio"])}"></audio></div>')
            parts.append("</div>")
    else:
        parts.append(f"<p>No audio examples: {_e(examples_note or 'not generated')}.</p>")
    parts.append("</section>")
    parts.append(_footer(tables, meta))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _vae_of(t: dict) -> str | None:
    return ((t["record"].get("meta") or {}).get("components") or {}).get("vae")


def mixed_components_note(tables: list[dict]) -> str:
    """A sentence when the evaluated tables were not all made with one VAE (their provenance records
    the VAE's checksum; a table without that record predates it), else ""."""
    by_vae: dict[str | None, list[str]] = {}
    for t in tables:
        if (t["record"].get("meta") or {}).get("n_units"):  # an evaluated table (not a kit or a timing)
            by_vae.setdefault(_vae_of(t), []).append(t["name"])
    if len(by_vae) < 2:
        return ""
    groups = "; ".join(f"VAE {v or 'not recorded'}: {', '.join(names)}" for v, names in by_vae.items())
    return (f"These tables were not all made with the same VAE ({groups}); numbers of tables made with "
            "different VAEs are not comparable with each other. Re-run the older ones "
            "(python reproduce/all.py --tables ...) to bring them onto one instrument.")


def _footer(tables: list[dict], meta: dict) -> str:
    rows = []
    for t in tables:
        m = t["record"].get("meta", {})
        v = m.get("versions") or {}
        wall = m.get("wall_seconds")
        rows.append("<tr>" + "".join(f"<td>{_e(x)}</td>" for x in (
            t["name"], m.get("git_commit"), m.get("command"), m.get("device"), m.get("time"),
            "-" if wall is None else f"{wall:.0f} s", _vae_of(t) or "-",
            ", ".join(f"{k} {val}" for k, val in v.items()))) + "</tr>")
    own = (f"This page: written by <code>{_e(meta.get('command', 'soundctm report'))}</code> at commit "
           f"<code>{_e(meta.get('git_commit'))}</code> on {_e(meta.get('time'))}")
    if meta.get("examples_from"):
        own += "; audio from " + ", ".join(f"{_e(k)} <code>{_e(v)}</code>" for k, v in meta["examples_from"].items())
    return ('<footer><h3>Provenance</h3><div class="scroll"><table><thead><tr><th>table</th><th>commit</th>'
            "<th>command</th><th>device</th><th>time</th><th>wall</th><th>VAE</th><th>versions</th></tr></thead><tbody>"
            + "".join(rows) + f"</tbody></table></div><p>{own}.</p></footer>")


# ----------------------------------------------------------------------------------------------
# the folder


class ReportConflict(CLIError):
    """The report would replace a file it did not write (one its folder's manifest does not list)."""


def _safe_rel(name) -> bool:
    return isinstance(name, str) and bool(name) and not name.startswith("/") and ".." not in name.split("/")


def owned_files(out: str | Path) -> set[str]:
    """The files (relative to `out`) that reports wrote there before, from `out/report/manifest.json` (empty
    without one, the manifest itself included with one); a manifest that is not a report's is a ReportConflict."""
    m = Path(out) / MANIFEST
    if not (m.exists() or m.is_symlink()):
        return set()
    try:
        rec = json.loads(m.read_bytes().decode("utf-8"))
        files = rec.get("files") if isinstance(rec, dict) and rec.get("written_by") == WRITER else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        files = None
    if not isinstance(files, list) or not all(_safe_rel(f) for f in files):
        raise ReportConflict(f"{m} exists and is not a manifest written by {WRITER}; move it or pass another --out")
    return set(files) | {MANIFEST}


def _conflicts(out: Path, planned, owned: set[str]) -> list[Path]:
    """Planned files of `out` that exist without being the report's own (or that a file in the way blocks)."""
    bad = []
    for rel in planned:
        p = out / rel
        blocked = next((q for q in p.parents if q != out and out in q.parents and q.exists() and not q.is_dir()),
                       None)
        if blocked is not None:
            bad.append(blocked)
        elif (p.exists() or p.is_symlink()) and (rel not in owned or p.is_dir()):
            bad.append(p)
    return list(dict.fromkeys(bad))


def _example_files(n_captions: int) -> list[str]:
    tags = ["real", "teacher"] + [f"{steps}step" for steps, _ in EXAMPLE_STEPS]
    return [f"{ASSETS}/{kind}/ex{i}-{tag}.{ext}" for i in range(n_captions) for tag in tags
            for kind, ext in (("audio", "wav"), ("img", "png"))]


def write_report(results_dir: str | Path, *, out: str | Path | None = None, tier: str = "tiny", audio: bool = True,
                 n_captions: int = 3, student=None, vae=None, text_encoder=None, teacher=None, seed: int = 0,
                 overwrite: bool = False, log=print) -> Path:
    """Render the tables of `results_dir` into `out` (default `results_dir`): `out/index.html`, its `report/`
    folder and `report/manifest.json`; returns the index path. Logs every file it wrote.

    Only files the manifest lists (or new ones) are replaced; any other file of a name it would write is a
    `ReportConflict` before any work (`overwrite=True` replaces those too: a report from before manifests).
    Nothing is deleted: a file of an earlier report that this one does not write stays, listed. No table
    result in `results_dir` is a CLIError naming the files skipped; student / VAE / text encoder / teacher given
    explicitly must load (CLIError), the committed defaults make the Listen section say why they did not. The
    teacher's samples default to the committed tiny teacher with the committed student, to none with another
    student (pass `teacher`)."""
    results_dir, out = Path(results_dir), Path(results_dir if out is None else out)
    skipped: list[tuple[str, str]] = []
    tables = load_results(results_dir, skipped)
    if not tables:
        why = "; ".join(f"{n}: {w}" for n, w in skipped[:5]) + ("; ..." if len(skipped) > 5 else "")
        raise CLIError(f"no table results in {results_dir}" + (f" ({len(skipped)} file(s) skipped: {why})"
                                                               if skipped else " (no <table>.json files)"))
    for name, why in skipped:
        log(f"[report] skipped {results_dir / name}: {why}")
    in_place = os.path.abspath(out) == os.path.abspath(results_dir)
    names = [t["name"] for t in tables]
    figures = find_figures(results_dir, names, exclude=out / ASSETS)
    by_table = find_result_files(results_dir, names, exclude=out / ASSETS)  # every JSON, CSV and Markdown file
    copies = {}  # figures and result files live in results_dir: copied beside the page when it is written elsewhere
    if not in_place:
        copies = {f"{ASSETS}/figures/{f}": results_dir / f for fs in figures.values() for f in fs}
        copies.update({f"{ASSETS}/files/{f}": results_dir / f for fs in by_table.values() for f in fs})
        figures = {k: [f"{ASSETS}/figures/{f}" for f in fs] for k, fs in figures.items()}
    links = {f: f if in_place else f"{ASSETS}/files/{f}" for fs in by_table.values() for f in fs}
    files = {k: [links[f] for f in fs] for k, fs in by_table.items() if k is not None}
    others = by_table.get(None, [])  # the files of no table (components.json, ...), skipped ones among them
    try:
        owned = owned_files(out)
    except ReportConflict:
        if not overwrite:
            raise
        owned = set()
    planned = ["index.html", MANIFEST, *copies, *(_example_files(n_captions) if audio else [])]
    if not overwrite:
        bad = _conflicts(out, planned, owned)
        if bad:
            raise ReportConflict(f"{len(bad)} file(s) in {out} were not written by {WRITER} (not in {MANIFEST}): "
                                 + ", ".join(map(str, bad[:3])) + (", ..." if len(bad) > 3 else "")
                                 + "; move them, pass another --out, or --overwrite to replace them")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=f".{ASSETS}-") as tmpdir:
        stage = Path(tmpdir)
        (stage / "audio").mkdir()
        (stage / "img").mkdir()
        examples, note, sources = None, "", None
        explicit = any(x is not None for x in (student, vae, text_encoder))
        if not audio:
            note = "disabled (--no-audio)"
        elif student is None and not _serves_default_student(tier):
            note = "the default student is the committed tiny one; pass --checkpoint, --vae and --text-encoder"
        else:
            try:
                models = load_models(student or DEFAULT_STUDENT, vae or DEFAULT_VAE,
                                     text_encoder or DEFAULT_TEXT_ENCODER)
            except CLIError as e:
                if explicit:
                    raise
                note = str(e)
                log(f"[report] no audio examples: {e}")
            else:
                if models.sample_rate != TINY_CORPUS["sample_rate"]:
                    note = ("the example captions and real clips come from the tiny corpus, which this student "
                            "does not fit")
                else:
                    files_used = dict(models.files)
                    teacher_pair = None
                    if teacher is not None or student is None:
                        try:
                            t_model, t_cond, files_used["teacher"] = load_teacher(teacher or DEFAULT_TEACHER, models)
                            teacher_pair = (t_model, t_cond)
                        except CLIError as e:
                            if teacher is not None:
                                raise
                            note = f"no teacher samples ({e})"
                            log(f"[report] no teacher samples: {e}")
                    else:
                        note = "no teacher samples: pass --teacher with the student's teacher export"
                    with torch.no_grad():
                        examples = make_examples(stage, models, _tiny_captions(n_captions), seed=seed,
                                                 teacher=teacher_pair, log=log)
                    sources = {k: Path(v["path"]).name + f" (sha256 {v['sha256'][:12]})"
                               for k, v in files_used.items()}
        meta = provenance(tier=tier, examples_from=sources)
        (stage / "index.html").write_text(render_html(tables, figures, examples, tier, note, meta, skipped, files,
                                                      {f: links[f] for f in others}), encoding="utf-8")
        staged = {f"{ASSETS}/{p.relative_to(stage).as_posix()}": p for d in ("audio", "img")
                  for p in sorted((stage / d).iterdir())}
        for rel, src in copies.items():
            staged[rel] = stage / "figures" / rel
            staged[rel].parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, staged[rel])
        staged["index.html"] = stage / "index.html"
        written = []
        for rel, src in staged.items():
            dst = out / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            written.append(rel)
        kept = sorted(f for f in owned - set(written) - {MANIFEST} if (out / f).is_file())
        manifest = {"written_by": WRITER, "about": "the files soundctm report wrote into this folder (relative "
                    "paths); a later report replaces only these", "files": sorted(set(written) | set(kept))}
        (stage / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        (out / MANIFEST).parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / "manifest.json", out / MANIFEST)
        written.append(MANIFEST)
    for rel in written:
        log(f"[report] wrote {out / rel}")
    if kept:
        log(f"[report] kept {len(kept)} file(s) of an earlier report that this page does not use: "
            + ", ".join(kept))
    log(f"[report] {out / 'index.html'}: {len(tables)} tables, {sum(map(len, figures.values()))} figures, "
        f"{0 if not examples else sum(len(e['sounds']) for e in examples)} sounds, {len(skipped)} result file(s) "
        f"skipped; {len(written)} files written")
    return out / "index.html"


def _report(argv) -> int:
    ap = Parser(prog="soundctm report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tier", default="tiny", help="the tier whose results to render (default tiny)")
    ap.add_argument("--results", type=Path, default=None, help="results folder (default ./results/<tier>)")
    ap.add_argument("--out", type=Path, default=None,
                    help="the folder to write index.html and report/ into (default: the results folder)")
    ap.add_argument("--overwrite", action="store_true",
                    help="also replace files of the names it writes that its manifest does not list (a report "
                         "written before manifests); nothing is deleted either way")
    ap.add_argument("--no-audio", action="store_true", help="skip the generated audio examples")
    ap.add_argument("--captions", type=bounded_int(1, TINY_CORPUS["n_test"]), default=3,
                    help="captions in the Listen section (default 3)")
    ap.add_argument("--checkpoint", type=Path, default=None, help="student export (default: the committed tiny one)")
    ap.add_argument("--vae", type=Path, default=None)
    ap.add_argument("--text-encoder", type=Path, default=None)
    ap.add_argument("--teacher", type=Path, default=None,
                    help="the student's teacher export, sampled beside it (default: the committed tiny teacher with "
                         "the committed student, none with another)")
    a = ap.parse_args(argv)
    for flag, p in (("--checkpoint", a.checkpoint), ("--vae", a.vae), ("--text-encoder", a.text_encoder),
                    ("--teacher", a.teacher)):
        if p is not None:
            in_file(p, flag)
    if a.results is None:
        results = results_root() / a.tier
        if not results.is_dir():
            raise CLIError(f"no results folder {results} (run in the folder that holds results/{a.tier}, or pass "
                           "--results)")
    else:
        results = in_dir(a.results, "--results")
    out = out_dir(results if a.out is None else a.out, "--out" if a.out is not None else "the results folder")
    t0 = time.time()
    write_report(results, out=out, tier=a.tier, audio=not a.no_audio, n_captions=a.captions, student=a.checkpoint,
                 vae=a.vae, text_encoder=a.text_encoder, teacher=a.teacher, overwrite=a.overwrite)
    print(f"[report] done in {time.time() - t0:.1f} s")
    return 0


def main(argv=None) -> int:
    """`soundctm report`: bad input -> one line on stderr and exit status 2."""
    return run("soundctm report", _report, sys.argv[1:] if argv is None else list(argv))
