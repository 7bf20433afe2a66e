"""MUSHRA listening tests (ITU-R BS.1534-3) run on webMUSHRA: stimuli, configuration, analysis.

Stimuli
  * loudness: every stimulus of a kit is brought to one integrated loudness (ITU-R BS.1770-4:
    K-weighting, 400 ms blocks with 75 % overlap, absolute gate -70 LKFS, relative gate -10 LU),
    measured with pyloudnorm's "DeMan" K-weighting filters, whose coefficients at 48 kHz are the
    standard's (a 0 dBFS 997 Hz sine reads -3.01 LUFS, as BS.1770 specifies). The target is
    -23 LUFS (EBU R 128), lowered for the whole kit when a stimulus would otherwise peak above
    -1 dBFS, so that every stimulus keeps the same loudness and none clips.
  * the low anchor: the reference low-passed at 3.5 kHz (BS.1534-3's low-quality anchor) with a
    linear-phase Kaiser-window FIR (32 ms long, ~80 dB stop band), delay-compensated.
  * all stimuli of a trial have the reference's length (webMUSHRA refuses trials whose conditions
    differ in length).

Configuration: `webmushra_yaml` writes a webMUSHRA config (the keys of its experimenter
documentation): an instructions page, a volume page, one `mushra` page per item and criterion in
random order, and a finish page whose questionnaire asks a rater id.

Analysis: `read_ratings` reads webMUSHRA's `mushra.csv` (columns session_test_id, the
questionnaire's fields, [session_uuid], trial_id, rating_stimulus, rating_score, rating_time,
rating_comment; the hidden reference is the stimulus named "reference"); `post_screen` excludes
raters who rate the hidden reference below 90 in more than 15 % of their trials (BS.1534-3
post-screening); `summarize` gives mean +- 95 % CI per system and criterion, the CI being
t_{0.975, N-1} * s / sqrt(N) over the N ratings of a system (BS.1534-3's confidence interval).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import signal, stats

__all__ = ["REFERENCE", "ANCHOR", "TARGET_LUFS", "PEAK_CEILING_DB", "integrated_loudness", "loudness_plan",
           "lowpass_anchor", "fit_length", "webmushra_yaml", "read_ratings", "post_screen", "Screening",
           "mushra_ci", "summarize", "criterion_of"]

REFERENCE = "reference"  # webMUSHRA's name for the hidden reference in mushra.csv
ANCHOR = "anchor35"  # the name webMUSHRA gives its own 3.5 kHz anchor; ours takes the same name
TARGET_LUFS = -23.0
PEAK_CEILING_DB = -1.0
BLOCK_S = 0.4


# ----------------------------------------------------------------------------------------------
# stimuli


def integrated_loudness(wav: np.ndarray, sample_rate: int) -> float:
    """ITU-R BS.1770-4 integrated loudness (LUFS) of a mono clip; -inf for silence."""
    try:
        import pyloudnorm
    except ImportError as e:  # a core dependency; a clear message if an environment lacks it
        raise ImportError("loudness normalisation needs pyloudnorm (`pip install pyloudnorm`)") from e
    x = np.asarray(wav, dtype=np.float64).reshape(-1)
    if x.size < BLOCK_S * sample_rate:
        raise ValueError(f"a clip of {x.size / sample_rate:.3f} s is shorter than one 400 ms gating block")
    if not np.isfinite(x).all():
        raise ValueError("the clip has NaN or Inf samples")
    return float(pyloudnorm.Meter(int(sample_rate), filter_class="DeMan").integrated_loudness(x))


def peak_db(wav: np.ndarray) -> float:
    p = float(np.max(np.abs(wav))) if len(wav) else 0.0
    return 20 * math.log10(p) if p > 0 else -math.inf


@dataclass(frozen=True)
class LoudnessPlan:
    target: float  # the LUFS every stimulus is brought to
    requested: float
    gains_db: dict[str, float]
    loudness: dict[str, float]  # measured before
    silent: tuple[str, ...]  # below the absolute gate: left as they are

    def to_dict(self) -> dict:
        fin = lambda v: v if math.isfinite(v) else None
        return {"standard": "ITU-R BS.1770-4 integrated loudness (pyloudnorm, DeMan K-weighting)",
                "target_lufs": self.target, "requested_lufs": self.requested, "peak_ceiling_dbfs": PEAK_CEILING_DB,
                "loudness_lufs": {k: fin(v) for k, v in self.loudness.items()},
                "gain_db": self.gains_db, "silent": list(self.silent)}


def loudness_plan(stimuli: dict[str, np.ndarray], sample_rate: int, target: float = TARGET_LUFS,
                  ceiling_db: float = PEAK_CEILING_DB) -> LoudnessPlan:
    """Gains that bring every stimulus to one loudness: `target`, or lower if a stimulus would peak
    above `ceiling_db` (the crest factor peak - loudness of the worst stimulus sets the limit)."""
    loud = {k: integrated_loudness(v, sample_rate) for k, v in stimuli.items()}
    audible = {k: v for k, v in loud.items() if math.isfinite(v)}
    silent = tuple(sorted(set(loud) - set(audible)))
    eff = target
    for k, lk in audible.items():
        eff = min(eff, ceiling_db - (peak_db(stimuli[k]) - lk))
    # BS.1770's absolute gate (-70 LUFS) is not scale-invariant: a clip with blocks near the gate changes its
    # gated set under a large gain, so the gain is refined on the scaled clip, and the target lowered if a
    # refined gain would put a peak over the ceiling
    gains = {k: 0.0 for k in stimuli}
    for _ in range(4):
        for k, lk in audible.items():
            gains[k] = _gain_to(stimuli[k], sample_rate, eff, lk)
        over = max((peak_db(stimuli[k]) + gains[k] - ceiling_db for k in audible), default=0.0)
        if over <= 1e-6:
            break
        eff -= over
    return LoudnessPlan(float(eff), float(target), gains, loud, silent)


def _gain_to(wav: np.ndarray, sample_rate: int, target: float, loudness: float, tol: float = 1e-3) -> float:
    """The gain (dB) that brings `wav` (integrated loudness `loudness`) to `target` LUFS, measured after scaling."""
    g = target - loudness
    for _ in range(8):
        lk = integrated_loudness(apply_gain(wav, g), sample_rate)
        if not math.isfinite(lk) or abs(lk - target) < tol:
            break
        g += target - lk
    return float(g)


def apply_gain(wav: np.ndarray, gain_db: float) -> np.ndarray:
    return (np.asarray(wav, dtype=np.float64) * 10 ** (gain_db / 20)).astype(np.float32)


def lowpass_anchor(wav: np.ndarray, sample_rate: int, cutoff_hz: float = 3500.0) -> np.ndarray:
    """The reference low-passed at `cutoff_hz`: linear-phase Kaiser FIR (beta 8), delay-compensated."""
    if not 0 < cutoff_hz < sample_rate / 2:
        raise ValueError(f"cut-off {cutoff_hz} Hz must lie in (0, {sample_rate / 2}) Hz at {sample_rate} Hz")
    taps = int(0.032 * sample_rate) | 1  # odd: an integer group delay of (taps - 1) / 2 samples
    h = signal.firwin(taps, cutoff_hz, fs=sample_rate, window=("kaiser", 8.0))
    x = np.asarray(wav, dtype=np.float64)
    return np.convolve(x, h, mode="full")[(taps - 1) // 2: (taps - 1) // 2 + len(x)].astype(np.float32)


def fit_length(wav: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad to `n` samples."""
    w = np.asarray(wav, dtype=np.float32).reshape(-1)[:n]
    return np.pad(w, (0, n - len(w))) if len(w) < n else w


# ----------------------------------------------------------------------------------------------
# webMUSHRA configuration


def _scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v), ensure_ascii=False)  # a YAML double-quoted scalar


def _yaml(obj, indent: int = 0) -> list[str]:
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{k}:")
                out += _yaml(v, indent + 4)
            else:
                out.append(f"{pad}{k}: {_scalar(v) if not isinstance(v, (dict, list)) else '{}'}")
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, (dict, list)) and v:
                sub = _yaml(v, indent + 2)
                out.append(f"{pad}- {sub[0].lstrip()}")
                out += sub[1:]
            else:
                out.append(f"{pad}- {_scalar(v)}")
    return out


def webmushra_yaml(test_id: str, name: str, trials: list[dict], criteria: dict[str, str],
                   intro: str, header: str = "") -> str:
    """A webMUSHRA config. `trials`: [{"id", "caption", "reference", "stimuli": {name: path}}] with
    paths relative to the webMUSHRA root; `criteria`: {criterion: instruction (may use {caption})}.
    One mushra page per trial and criterion, page id "<criterion>-<trial id>", all in random order."""
    pages = [
        {"type": "mushra", "id": f"{crit}-{t['id']}", "name": f"{crit}: item {i + 1} of {len(trials)}",
         "content": text.format(caption=t["caption"]), "showWaveform": False, "enableLooping": True,
         "reference": t["reference"], "createAnchor35": False, "createAnchor70": False, "randomize": True,
         "showConditionNames": False, "stimuli": dict(t["stimuli"])}
        for crit, text in criteria.items() for i, t in enumerate(trials)
    ]
    config = {
        "testname": name, "testId": test_id, "bufferSize": 2048, "stopOnErrors": True,
        "showButtonPreviousPage": False, "remoteService": "service/write.php",
        "pages": [
            {"type": "generic", "id": "instructions", "name": "Instructions", "content": intro},
            {"type": "volume", "id": "volume", "name": "Volume",
             "content": "Play the sound and set a comfortable volume; keep it for the whole test.",
             "stimulus": trials[0]["reference"], "defaultVolume": 0.5},
            ["random", *pages],
            {"type": "finish", "name": "Thank you", "content": "Thank you for taking part.",
             "showResults": False, "writeResults": True,
             "questionnaire": [{"type": "text", "label": "Rater id (given to you by the experimenter)",
                                "name": "rater_id"}]},
        ],
    }
    head = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return head + "\n".join(_yaml(config)) + "\n"


# ----------------------------------------------------------------------------------------------
# analysis


def criterion_of(trial_id: str, criteria: tuple[str, ...]) -> str:
    """The criterion of a page id "<criterion>-<item>" (case-insensitive)."""
    m = re.match(r"^([A-Za-z]+)[-_]", str(trial_id))
    if m:
        for c in criteria:
            if m.group(1).lower() == c.lower():
                return c
    raise ValueError(f"trial id {trial_id!r} does not start with one of the criteria {criteria} "
                     "followed by '-' (the pages of the exported config are named '<criterion>-<item>')")


def read_ratings(csv_path: str | Path, criteria: tuple[str, ...] = ("OVAL", "REL"),
                 rater_column: str | None = None) -> pd.DataFrame:
    """webMUSHRA's mushra.csv -> one row per rating: rater, trial, criterion, system, score.

    The rater is `rater_column` if given, else `session_uuid` (newer webMUSHRA), else the
    questionnaire's `rater_id`."""
    p = Path(csv_path)
    if not p.is_file():
        raise FileNotFoundError(f"ratings file not found: {p}")
    df = pd.read_csv(p, dtype=str, keep_default_na=False)
    need = ["trial_id", "rating_stimulus", "rating_score"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"{p} is not a webMUSHRA mushra.csv: missing columns {missing} (has {list(df.columns)})")
    col = rater_column or next((c for c in ("session_uuid", "rater_id") if c in df.columns), None)
    if col is None or col not in df.columns:
        raise ValueError(f"{p}: no rater column ({rater_column or 'session_uuid or rater_id'}); name one with "
                         f"--rater-column (columns: {list(df.columns)})")
    if (df[col].str.strip() == "").any():
        raise ValueError(f"{p}: some ratings have an empty {col!r}, so their rater is unknown")
    score = pd.to_numeric(df["rating_score"], errors="coerce")
    if score.isna().any() or ((score < 0) | (score > 100)).any():
        bad = df.loc[score.isna() | (score < 0) | (score > 100), "rating_score"].tolist()[:5]
        raise ValueError(f"{p}: rating_score must be numbers in [0, 100], got e.g. {bad}")
    out = pd.DataFrame({"rater": df[col].str.strip(), "trial": df["trial_id"],
                        "criterion": [criterion_of(t, criteria) for t in df["trial_id"]],
                        "system": df["rating_stimulus"], "score": score.astype(float)})
    dup = out.duplicated(["rater", "trial", "system"])
    if dup.any():
        r = out[dup].iloc[0]
        raise ValueError(f"{p}: rater {r.rater!r} rated {r.system!r} twice in trial {r.trial!r}")
    return out


@dataclass(frozen=True)
class Screening:
    threshold: float
    max_fraction: float
    fraction: dict[str, float]  # rater -> fraction of trials with the hidden reference below threshold
    excluded: tuple[str, ...]
    kept: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"rule": f"exclude raters who rate the hidden reference below {self.threshold:g} in more than "
                        f"{100 * self.max_fraction:g} % of their trials (ITU-R BS.1534-3 post-screening)",
                "fraction_below": self.fraction, "excluded": list(self.excluded), "kept": list(self.kept)}


def post_screen(ratings: pd.DataFrame, threshold: float = 90.0, max_fraction: float = 0.15,
                reference: str = REFERENCE) -> tuple[pd.DataFrame, Screening]:
    """Drop every rating of the raters who rate the hidden reference below `threshold` in more than
    `max_fraction` of their trials (all criteria together)."""
    ref = ratings[ratings.system == reference]
    if ref.empty:
        raise ValueError(f"no ratings of the hidden reference {reference!r}: cannot post-screen")
    per_trial = ref.groupby(["rater", "trial"]).score.min() < threshold
    frac = per_trial.groupby(level="rater").mean()
    raters = sorted(ratings.rater.unique())
    fraction = {r: float(frac.get(r, float("nan"))) for r in raters}
    excluded = tuple(r for r in raters if not (fraction[r] <= max_fraction))  # a rater without reference: out
    kept = tuple(r for r in raters if r not in excluded)
    return ratings[ratings.rater.isin(kept)], Screening(threshold, max_fraction, fraction, excluded, kept)


def mushra_ci(scores, level: float = 0.95) -> tuple[float, float]:
    """(mean, half-width) of the `level` Student-t interval over the ratings (BS.1534-3)."""
    x = np.asarray(scores, dtype=np.float64)
    if x.size < 2:
        return (float(x.mean()) if x.size else float("nan")), float("nan")
    half = stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean()), float(half)


def summarize(ratings: pd.DataFrame, level: float = 0.95) -> dict[str, dict[str, dict]]:
    """system -> criterion -> {"value", "lo", "hi", "half", "n", "raters", "level"}."""
    out: dict[str, dict[str, dict]] = {}
    for (system, crit), g in ratings.groupby(["system", "criterion"], sort=True):
        m, h = mushra_ci(g.score.to_numpy(), level)
        out.setdefault(system, {})[crit] = {"value": m, "lo": m - h, "hi": m + h, "half": h, "n": int(len(g)),
                                            "raters": int(g.rater.nunique()), "level": level}
    return out
