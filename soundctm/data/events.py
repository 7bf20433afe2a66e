"""Synthesizers for the procedural sound-event classes of the tiny-tier corpus.

Every class is a small signal model with a handful of parameters that captions state in words
(pitch low/high, rate slow/fast, loudness quiet/loud, a repeat count, onset and duration).
The classes are chosen to be clearly distinct in their spectro-temporal shape so that a tiny
model at 16 kHz and 2 s can tell them apart:

=============  ==============================================================  ===================
class          signal                                                          parameters
=============  ==============================================================  ===================
beep           pure sine tone bursts                                           pitch, count
rising_chirp   one exponential sine sweep upwards                              pitch
falling_chirp  one exponential sine sweep downwards                            pitch
siren          harmonic tone with slow/fast sinusoidal frequency modulation   pitch, rate
bell           struck inharmonic partials with exponential decay               pitch, count
engine         low sawtooth-like harmonic drone with firing-rate tremolo       pitch
rain           high-band noise plus random droplet blips                       rate (light/heavy)
footsteps      low-passed noise thuds at a walking tempo                       rate
bird           short high frequency-modulated tweets                           pitch, rate
wind           low-band noise with slow gusts and a faint whistle              -
knocking       groups of three damped wooden resonances                        rate
buzzer         band-limited square wave                                        pitch
crackle        sparse broadband impulses (fire crackle)                        rate
=============  ==============================================================  ===================

`synthesize_event(cls, n, sample_rate, rng, ...)` returns a float64 signal of `n` samples whose
shape depends only on the parameters and the random generator, not on the sample rate
(apart from the sampling itself): all frequencies stay below 6.5 kHz so 16 kHz renders them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.signal import butter, sosfilt

# Nominal frequencies / rates per parameter value (before a small random jitter).
BEEP_HZ = {"low": 520.0, "high": 1400.0}
CHIRP_RANGE_HZ = {"low": (250.0, 1000.0), "high": (900.0, 3600.0)}
SIREN_CENTER_HZ = {"low": 650.0, "high": 1300.0}
SIREN_RATE_HZ = {"slow": 0.8, "fast": 4.0}
BELL_HZ = {"low": 330.0, "high": 880.0}
BELL_PARTIALS = ((1.0, 1.0), (2.32, 0.6), (4.25, 0.4), (6.63, 0.25), (9.38, 0.15))  # (ratio, amp)
ENGINE_HZ = {"low": 45.0, "high": 110.0}
RAIN_DROPS_PER_S = {"slow": 15.0, "fast": 70.0}
STEPS_PER_S = {"slow": 1.8, "fast": 4.5}
BIRD_HZ = {"low": 2000.0, "high": 3500.0}
TWEETS_PER_S = {"slow": 2.5, "fast": 6.0}
KNOCKS_PER_S = {"slow": 3.0, "fast": 7.0}
BUZZER_HZ = {"low": 150.0, "high": 400.0}
CRACKLES_PER_S = {"slow": 8.0, "fast": 35.0}

# Time one repetition of a counted event takes (seconds); a count of k spans k units.
COUNT_UNIT_S = {"beep": 0.3, "bell": 0.5}


def _t(n: int, sr: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) / sr


def _fade(x: np.ndarray, sr: int, ms: float = 10.0) -> np.ndarray:
    """Raised-cosine fade in and out of `ms` milliseconds (in place, returns x)."""
    m = min(int(sr * ms / 1000.0), len(x) // 2)
    if m > 1:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, m))
        x[:m] *= ramp
        x[-m:] *= ramp[::-1]
    return x


def _jitter(rng: np.random.Generator, rel: float = 0.05) -> float:
    return float(1.0 + rng.uniform(-rel, rel))


def _sos(kind: str, freq, sr: int, order: int = 4):
    nyq = sr / 2.0
    if kind == "bandpass":
        lo, hi = freq
        hi = min(hi, 0.95 * nyq)
        return butter(order, [lo, hi], btype="bandpass", fs=sr, output="sos")
    return butter(order, min(freq, 0.95 * nyq), btype=kind, fs=sr, output="sos")


def _filter(x: np.ndarray, sos) -> np.ndarray:
    return sosfilt(sos, x)


def _poisson_times(rng: np.random.Generator, rate: float, dur: float, min_gap: float = 0.0) -> np.ndarray:
    """Event times of a Poisson process of `rate`/s on [0, dur)."""
    k = rng.poisson(rate * dur)
    times = np.sort(rng.uniform(0.0, dur, size=max(k, 1)))
    if min_gap > 0 and len(times) > 1:
        keep = [times[0]]
        for tt in times[1:]:
            if tt - keep[-1] >= min_gap:
                keep.append(tt)
        times = np.asarray(keep)
    return times


def _add_at(y: np.ndarray, start: int, grain: np.ndarray) -> None:
    if start >= len(y) or start < 0:
        return
    m = min(len(grain), len(y) - start)
    y[start : start + m] += grain[:m]


def _evenly(n_items: int, n: int) -> list[int]:
    """Start samples of `n_items` repetitions spread evenly over n samples."""
    return [int(round(i * n / n_items)) for i in range(n_items)]


# ---------------------------------------------------------------------------------------------
# Synthesizers: (n, sr, rng, pitch, rate, count) -> float64 [n]
# ---------------------------------------------------------------------------------------------


def _beep(n, sr, rng, pitch, rate, count):
    f = BEEP_HZ[pitch] * _jitter(rng)
    count = max(1, count or 1)
    y = np.zeros(n)
    seg = n // count
    on = min(int(0.18 * sr), max(int(0.6 * seg), 1))
    tt = _t(on, sr)
    tone = _fade(np.sin(2 * np.pi * f * tt), sr, 5.0)
    for s in _evenly(count, n):
        _add_at(y, s, tone)
    return y


def _chirp(n, sr, rng, pitch, up: bool):
    f0, f1 = CHIRP_RANGE_HZ[pitch]
    j = _jitter(rng)
    f0, f1 = f0 * j, f1 * j
    if not up:
        f0, f1 = f1, f0
    dur = n / sr
    tt = _t(n, sr)
    k = np.log(f1 / f0)
    phase = 2 * np.pi * f0 * dur / k * (np.exp(k * tt / dur) - 1.0)
    return _fade(np.sin(phase), sr, 15.0)


def _rising_chirp(n, sr, rng, pitch, rate, count):
    return _chirp(n, sr, rng, pitch, up=True)


def _falling_chirp(n, sr, rng, pitch, rate, count):
    return _chirp(n, sr, rng, pitch, up=False)


def _siren(n, sr, rng, pitch, rate, count):
    fc = SIREN_CENTER_HZ[pitch] * _jitter(rng)
    r = SIREN_RATE_HZ[rate] * _jitter(rng, 0.1)
    tt = _t(n, sr)
    inst = fc * (1.0 + 0.3 * np.sin(2 * np.pi * r * tt - np.pi / 2))
    phase = 2 * np.pi * np.cumsum(inst) / sr
    y = np.sin(phase) + 0.4 * np.sin(2 * phase) + 0.2 * np.sin(3 * phase)
    return _fade(y, sr, 20.0)


def _bell(n, sr, rng, pitch, rate, count):
    f0 = BELL_HZ[pitch] * _jitter(rng)
    count = max(1, count or 1)
    seg = max(n // count, 1)
    tt = _t(seg, sr)
    strike = np.zeros(seg)
    for ratio, amp in BELL_PARTIALS:
        f = f0 * ratio
        if f >= 0.45 * sr:
            continue
        tau = 0.35 / np.sqrt(ratio)
        strike += amp * np.exp(-tt / tau) * np.sin(2 * np.pi * f * tt + rng.uniform(0, 2 * np.pi))
    a = min(int(0.002 * sr), seg)
    if a > 1:
        strike[:a] *= np.linspace(0.0, 1.0, a)
    y = np.zeros(n)
    for s in _evenly(count, n):
        _add_at(y, s, strike)
    return _fade(y, sr, 5.0)


def _engine(n, sr, rng, pitch, rate, count):
    f0 = ENGINE_HZ[pitch] * _jitter(rng)
    tt = _t(n, sr)
    phase = 2 * np.pi * f0 * tt + 0.05 * np.sin(2 * np.pi * 0.7 * tt)
    y = np.zeros(n)
    kmax = int(min(40, 3000.0 // f0))
    for k in range(1, kmax + 1):
        y += np.sin(k * phase) / k
    trem = 1.0 + 0.35 * np.sin(2 * np.pi * f0 / 4.0 * tt)
    noise = _filter(rng.standard_normal(n), _sos("lowpass", 400.0, sr, 2))
    y = y * trem + 0.6 * noise
    return _fade(y, sr, 40.0)


def _rain(n, sr, rng, pitch, rate, count):
    dur = n / sr
    bed = _filter(rng.standard_normal(n), _sos("bandpass", (1500.0, 6000.0), sr, 2))
    bed *= 0.25 if rate == "slow" else 0.5
    drops = np.zeros(n)
    g = int(0.015 * sr)
    tg = _t(g, sr)
    for t0 in _poisson_times(rng, RAIN_DROPS_PER_S[rate], dur):
        f = rng.uniform(2000.0, 5000.0)
        grain = np.exp(-tg / 0.003) * np.sin(2 * np.pi * f * tg) * rng.uniform(0.4, 1.0)
        _add_at(drops, int(t0 * sr), grain)
    return _fade(bed + drops, sr, 30.0)


def _footsteps(n, sr, rng, pitch, rate, count):
    period = 1.0 / (STEPS_PER_S[rate] * _jitter(rng))
    g = int(0.08 * sr)
    tg = _t(g, sr)
    lp = _sos("lowpass", 900.0, sr, 2)
    y = np.zeros(n)
    t0 = 0.02
    while t0 < n / sr - 0.05:
        burst = _filter(rng.standard_normal(g), lp) * np.exp(-tg / 0.015)
        burst += 1.5 * np.sin(2 * np.pi * 85.0 * tg) * np.exp(-tg / 0.02)
        _add_at(y, int(t0 * sr), burst * rng.uniform(0.7, 1.0))
        t0 += period * rng.uniform(0.92, 1.08)
    return y


def _bird(n, sr, rng, pitch, rate, count):
    fb = BIRD_HZ[pitch] * _jitter(rng)
    y = np.zeros(n)
    period = 1.0 / TWEETS_PER_S[rate]
    t0 = 0.01
    while t0 < n / sr - 0.06:
        d = rng.uniform(0.06, 0.1)
        g = int(d * sr)
        tg = _t(g, sr)
        inst = fb * (1.0 + 0.5 * tg / d) * (1.0 + 0.08 * np.sin(2 * np.pi * 30.0 * tg))
        grain = np.sin(2 * np.pi * np.cumsum(inst) / sr) * np.sin(np.pi * tg / d) ** 2
        _add_at(y, int(t0 * sr), grain)
        t0 += period * rng.uniform(0.8, 1.2)
    return y


def _wind(n, sr, rng, pitch, rate, count):
    tt = _t(n, sr)
    base = _filter(rng.standard_normal(n), _sos("lowpass", 500.0, sr, 2))
    whistle = _filter(rng.standard_normal(n), _sos("bandpass", (750.0, 1000.0), sr, 2))
    ph = rng.uniform(0, 2 * np.pi, size=3)
    gust = 0.55 + 0.25 * np.sin(2 * np.pi * 0.45 * tt + ph[0]) + 0.2 * np.sin(2 * np.pi * 1.1 * tt + ph[1])
    gust2 = 0.5 + 0.5 * np.sin(2 * np.pi * 0.3 * tt + ph[2])
    return _fade(base * gust + 0.6 * whistle * gust2 * gust, sr, 60.0)


def _knocking(n, sr, rng, pitch, rate, count):
    period = 1.0 / (KNOCKS_PER_S[rate] * _jitter(rng))
    g = int(0.06 * sr)
    tg = _t(g, sr)
    f1, f2 = 180.0 * _jitter(rng), 430.0 * _jitter(rng)
    knock = np.exp(-tg / 0.02) * (np.sin(2 * np.pi * f1 * tg) + 0.6 * np.sin(2 * np.pi * f2 * tg))
    click = int(0.003 * sr)
    y = np.zeros(n)
    t0 = 0.01
    i = 0
    while t0 < n / sr - 0.04:
        k = knock.copy()
        k[:click] += 0.5 * rng.standard_normal(click)
        _add_at(y, int(t0 * sr), k * rng.uniform(0.8, 1.0))
        i += 1
        t0 += period if i % 3 else period * 2.5
    return y


def _buzzer(n, sr, rng, pitch, rate, count):
    f = BUZZER_HZ[pitch] * _jitter(rng)
    tt = _t(n, sr)
    y = np.zeros(n)
    k = 1
    while k * f < min(0.45 * sr, 6500.0):
        y += np.sin(2 * np.pi * k * f * tt) / k
        k += 2
    return _fade(y, sr, 5.0)


def _crackle(n, sr, rng, pitch, rate, count):
    dur = n / sr
    g = max(int(0.004 * sr), 2)
    tg = _t(g, sr)
    hp = _sos("highpass", 800.0, sr, 2)
    y = 0.04 * _filter(rng.standard_normal(n), hp)
    for t0 in _poisson_times(rng, CRACKLES_PER_S[rate], dur, min_gap=0.005):
        grain = rng.standard_normal(g) * np.exp(-tg / 0.0008) * np.exp(rng.uniform(np.log(0.3), 0.0))
        _add_at(y, int(t0 * sr), grain)
    return y


SYNTHESIZERS: dict[str, Callable] = {
    "beep": _beep,
    "rising_chirp": _rising_chirp,
    "falling_chirp": _falling_chirp,
    "siren": _siren,
    "bell": _bell,
    "engine": _engine,
    "rain": _rain,
    "footsteps": _footsteps,
    "bird": _bird,
    "wind": _wind,
    "knocking": _knocking,
    "buzzer": _buzzer,
    "crackle": _crackle,
}

#: Event class names, in label-vector order.
EVENT_CLASSES: list[str] = list(SYNTHESIZERS)

#: Which parameters each class uses (the others are None in its event spec).
CLASS_PARAMS: dict[str, tuple[str, ...]] = {
    "beep": ("pitch", "count"),
    "rising_chirp": ("pitch",),
    "falling_chirp": ("pitch",),
    "siren": ("pitch", "rate"),
    "bell": ("pitch", "count"),
    "engine": ("pitch",),
    "rain": ("rate",),
    "footsteps": ("rate",),
    "bird": ("pitch", "rate"),
    "wind": (),
    "knocking": ("rate",),
    "buzzer": ("pitch",),
    "crackle": ("rate",),
}

#: Classes that sound continuously and can form the background of another event ("... while rain falls").
BACKGROUND_CLASSES: tuple[str, ...] = ("siren", "engine", "rain", "wind", "buzzer", "crackle")


def synthesize_event(
    cls: str,
    n: int,
    sample_rate: int,
    rng: np.random.Generator,
    *,
    pitch: str | None = None,
    rate: str | None = None,
    count: int | None = None,
) -> np.ndarray:
    """One event of class `cls`, `n` samples long, before loudness scaling: float64 [n].

    The result is not normalised; `corpus.synthesize_clip` scales it to its loudness.
    """
    if cls not in SYNTHESIZERS:
        raise ValueError(f"unknown event class {cls!r}; expected one of {EVENT_CLASSES}")
    if n <= 0:
        return np.zeros(0)
    params = CLASS_PARAMS[cls]
    if "pitch" in params and pitch not in ("low", "high"):
        raise ValueError(f"{cls}: pitch must be 'low' or 'high', got {pitch!r}")
    if "rate" in params and rate not in ("slow", "fast"):
        raise ValueError(f"{cls}: rate must be 'slow' or 'fast', got {rate!r}")
    return SYNTHESIZERS[cls](n, sample_rate, rng, pitch, rate, count)
