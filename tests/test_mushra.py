"""MUSHRA kit: BS.1770 loudness against the standard's own numbers, the 3.5 kHz anchor's response,
the webMUSHRA config as YAML, and the analysis (post-screening, mean +- 95 % CI) on a synthetic
mushra.csv whose answer is computed here from the ratings that made it."""

import csv
import math
import statistics

import numpy as np
import pytest
from scipy.signal import lfilter

from soundctm.experiments import mushra as M

# ITU-R BS.1770-4, Tables 1 and 2: the K-weighting filter at 48 kHz (pre-filter, then RLB high-pass)
B1 = [1.53512485958697, -2.69169618940638, 1.19839281085285]
A1 = [1.0, -1.69065929318241, 0.73248077421585]
B2 = [1.0, -2.0, 1.0]
A2 = [1.0, -1.99004745483398, 0.99007225036621]


def _sine(f, amp, sr, seconds=3.0):
    t = np.arange(int(sr * seconds)) / sr
    return amp * np.sin(2 * np.pi * f * t)


def _bs1770_by_hand(x, sr=48000):
    """Integrated loudness written out from the standard (48 kHz coefficients, gating of Sec. 2.8)."""
    y = lfilter(B2, A2, lfilter(B1, A1, x))
    n, hop = int(0.4 * sr), int(0.1 * sr)
    z = np.array([np.mean(y[j:j + n] ** 2) for j in range(0, len(y) - n + 1, hop)])
    lj = -0.691 + 10 * np.log10(z)
    z = z[lj > -70.0]
    rel = -0.691 + 10 * np.log10(z.mean()) - 10.0
    z = z[-0.691 + 10 * np.log10(z) > rel]
    return -0.691 + 10 * np.log10(z.mean())


def test_loudness_of_a_full_scale_997_hz_sine_is_the_standards_minus_3_01():
    assert M.integrated_loudness(_sine(997, 1.0, 48000), 48000) == pytest.approx(-3.01, abs=0.005)
    # 6.02 dB quieter reads 6.02 LU lower; other sample rates agree within 0.05 LU
    assert M.integrated_loudness(_sine(997, 0.5, 48000), 48000) == pytest.approx(-3.01 - 6.02, abs=0.01)
    for sr in (44100, 16000):
        assert M.integrated_loudness(_sine(997, 1.0, sr), sr) == pytest.approx(-3.01, abs=0.05)


def test_loudness_gating_matches_the_standard_written_out():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(48000 * 4) * 0.1
    x[48000:96000] *= 0.001  # a near-silent second: below the relative gate, excluded
    x[2 * 48000:] *= 3.0
    got = M.integrated_loudness(x, 48000)
    assert got == pytest.approx(_bs1770_by_hand(x), abs=0.02)
    # the gate matters: the plain mean square over the whole clip reads lower
    y = lfilter(B2, A2, lfilter(B1, A1, x))
    assert -0.691 + 10 * np.log10(np.mean(y ** 2)) < got - 0.5
    assert M.integrated_loudness(np.zeros(16000), 16000) == -math.inf
    with pytest.raises(ValueError, match="400 ms"):
        M.integrated_loudness(np.ones(100), 16000)


def test_loudness_plan_brings_every_stimulus_to_the_target_and_lowers_it_for_all_to_avoid_clipping():
    sr = 16000
    stim = {"a": _sine(997, 0.05, sr, 2.0), "b": _sine(997, 0.3, sr, 2.0), "zero": np.zeros(2 * sr)}
    plan = M.loudness_plan(stim, sr, target=-23.0)
    assert plan.target == -23.0 and plan.silent == ("zero",) and plan.gains_db["zero"] == 0.0
    # a sine of amplitude A reads about -3.01 + 20 log10 A LUFS, so at -23 LUFS its amplitude is 10^(-19.99/20)
    for k in ("a", "b"):
        out = M.apply_gain(stim[k], plan.gains_db[k])
        assert np.abs(out).max() == pytest.approx(10 ** ((-23.0 + 3.01) / 20), rel=0.01)
    # an impulsive stimulus (crest factor ~ 30 dB) cannot reach -23 LUFS under -1 dBFS: all go lower
    clicks = np.zeros(2 * sr)
    clicks[::4000] = 0.9
    clicks += _sine(997, 0.001, sr, 2.0)
    stim["clicks"] = clicks
    plan = M.loudness_plan(stim, sr, target=-23.0)
    crest = M.peak_db(clicks) - M.integrated_loudness(clicks, sr)
    assert plan.target == pytest.approx(-1.0 - crest, abs=1e-9) and plan.target < -23.0
    outs = {k: M.apply_gain(v, plan.gains_db[k]) for k, v in stim.items()}
    assert max(np.abs(o).max() for o in outs.values()) <= 10 ** (-1.0 / 20) + 1e-6
    for k in ("a", "b", "clicks"):
        assert M.integrated_loudness(outs[k], sr) == pytest.approx(plan.target, abs=0.01)


def test_loudness_plan_reaches_the_target_for_a_clip_whose_quiet_part_crosses_the_absolute_gate():
    """1 s at about -62 LUFS then 2 s about 12 LU quieter: before the gain the quiet part is under BS.1770's
    -70 LUFS gate, after +40 dB it is not (and within 10 LU of the loud part, so the relative gate keeps it):
    the gain computed from the unscaled loudness misses the target by LUs."""
    sr = 16000
    rng = np.random.default_rng(3)
    a = rng.normal(size=sr) * 10 ** (-65 / 20)
    b = rng.normal(size=2 * sr) * 10 ** (-74 / 20)
    x = np.concatenate([a, b])
    l0 = M.integrated_loudness(x, sr)
    naive = M.integrated_loudness(M.apply_gain(x, -23.0 - l0), sr)
    assert abs(naive + 23.0) > 1.0  # the case is the one described
    plan = M.loudness_plan({"x": x}, sr, target=-23.0)
    assert plan.target == -23.0
    assert M.integrated_loudness(M.apply_gain(x, plan.gains_db["x"]), sr) == pytest.approx(-23.0, abs=0.01)


def test_anchor_is_a_3_5_khz_low_pass_without_delay():
    sr = 16000
    lo, hi = _sine(1000, 0.5, sr, 1.0), _sine(4000, 0.5, sr, 1.0)
    mid = slice(sr // 4, 3 * sr // 4)  # away from the edges
    a_lo, a_hi = M.lowpass_anchor(lo, sr), M.lowpass_anchor(hi, sr)
    assert np.abs(a_lo[mid] - lo[mid]).max() < 1e-3  # passband: unchanged, in phase (delay compensated)
    assert 20 * np.log10(np.abs(a_hi[mid]).max() / 0.5) < -60  # stop band, 500 Hz above the cut-off
    assert len(a_lo) == len(lo)
    # at the cut-off the windowed-sinc FIR is at -6 dB
    at = M.lowpass_anchor(_sine(3500, 0.5, sr, 1.0), sr)
    assert 20 * np.log10(np.abs(at[mid]).max() / 0.5) == pytest.approx(-6.0, abs=0.5)
    with pytest.raises(ValueError, match="cut-off"):
        M.lowpass_anchor(lo, 6000)


def test_webmushra_yaml_has_one_page_per_item_and_criterion_in_random_order():
    yaml = pytest.importorskip("yaml")
    trials = [{"id": f"t{i:02d}", "caption": f'a dog barks: "woof" {i}',
               "reference": f"configs/resources/audio/k/t{i:02d}/reference.wav",
               "stimuli": {"anchor35": f"configs/resources/audio/k/t{i:02d}/anchor35.wav",
                           "student-1": f"configs/resources/audio/k/t{i:02d}/student-1.wav"}} for i in range(3)]
    text = M.webmushra_yaml("kit", "My test", trials, {"OVAL": "Rate the quality.", "REL": "Text: {caption}"},
                            intro="<b>hello</b>", header="line one\nline two")
    assert text.startswith("# line one\n# line two\n")
    cfg = yaml.safe_load(text)
    assert cfg["testId"] == "kit" and cfg["remoteService"] == "service/write.php"
    types = [p["type"] if isinstance(p, dict) else "list" for p in cfg["pages"]]
    assert types == ["generic", "volume", "list", "finish"]
    block = cfg["pages"][2]
    assert block[0] == "random"
    pages = block[1:]
    assert [p["id"] for p in pages] == [f"{c}-t{i:02d}" for c in ("OVAL", "REL") for i in range(3)]
    assert all(p["type"] == "mushra" and p["createAnchor35"] is False for p in pages)
    assert pages[4]["content"] == 'Text: a dog barks: "woof" 1'
    assert pages[0]["stimuli"] == trials[0]["stimuli"] and pages[0]["reference"] == trials[0]["reference"]
    assert cfg["pages"][3]["questionnaire"][0]["name"] == "rater_id"


def _synthetic_csv(path, rng):
    """7 raters x (10 OVAL + 10 REL trials) x {reference, anchor35, A, B}. r5 rates the hidden reference
    below 90 in 3 of 20 trials (15 %: kept), r6 in 4 of 20 (20 %: excluded)."""
    systems = {"reference": 95, "anchor35": 20, "A": 60, "B": 70}
    trials = [f"{c}-t{i:02d}" for c in ("OVAL", "REL") for i in range(10)]
    rows, kept = [], {}
    for r in range(7):
        bad = {5: 3, 6: 4}.get(r, 0)
        bad_trials = set(rng.choice(len(trials), size=bad, replace=False).tolist())
        for ti, t in enumerate(trials):
            for s, mu in systems.items():
                score = int(np.clip(round(rng.normal(mu, 8)), 0, 100))
                if s == "reference":
                    score = int(rng.integers(50, 90)) if ti in bad_trials else int(rng.integers(90, 101))
                rows.append(["kit", f"rater{r}", f"uuid-{r}", t, s, score, 1234, "fine, thanks"])
                if r != 6:
                    kept.setdefault((s, t.split("-")[0]), []).append(score)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["session_test_id", "rater_id", "session_uuid", "trial_id", "rating_stimulus", "rating_score",
                    "rating_time", "rating_comment"])
        w.writerows(rows)
    return kept


def test_analysis_post_screens_and_gives_the_t_interval_of_the_kept_ratings(tmp_path):
    kept = _synthetic_csv(tmp_path / "mushra.csv", np.random.default_rng(1))
    ratings = M.read_ratings(tmp_path / "mushra.csv")
    assert len(ratings) == 7 * 20 * 4 and set(ratings.criterion) == {"OVAL", "REL"}
    screened, scr = M.post_screen(ratings)
    assert scr.excluded == ("uuid-6",) and "uuid-5" in scr.kept
    assert scr.fraction["uuid-5"] == pytest.approx(0.15) and scr.fraction["uuid-6"] == pytest.approx(0.20)
    summary = M.summarize(screened)
    assert set(summary) == {"reference", "anchor35", "A", "B"}
    t_975_59 = 2.000995  # Student t quantile, 59 degrees of freedom (tables)
    for (s, c), xs in kept.items():
        got = summary[s][c]
        assert got["n"] == len(xs) == 60 and got["raters"] == 6
        assert got["value"] == pytest.approx(statistics.mean(xs), rel=1e-12)
        assert got["half"] == pytest.approx(t_975_59 * statistics.stdev(xs) / math.sqrt(60), rel=1e-5)
    # without the post-screening the excluded rater's ratings would change the reference's mean
    assert M.summarize(ratings)["reference"]["OVAL"]["n"] == 70


def test_analysis_rejects_malformed_files(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("trial_id,rating_stimulus\nOVAL-t00,A\n")
    with pytest.raises(ValueError, match="missing columns"):
        M.read_ratings(p)
    p.write_text("session_uuid,trial_id,rating_stimulus,rating_score\nu1,t00,A,50\n")
    with pytest.raises(ValueError, match="criteria"):
        M.read_ratings(p)
    p.write_text("session_uuid,trial_id,rating_stimulus,rating_score\nu1,OVAL-t00,A,150\n")
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        M.read_ratings(p)
    p.write_text("trial_id,rating_stimulus,rating_score\nOVAL-t00,A,50\n")
    with pytest.raises(ValueError, match="rater column"):
        M.read_ratings(p)
    p.write_text("session_uuid,trial_id,rating_stimulus,rating_score\nu1,OVAL-t00,A,50\nu1,OVAL-t00,A,60\n")
    with pytest.raises(ValueError, match="twice"):
        M.read_ratings(p)
    with pytest.raises(FileNotFoundError):
        M.read_ratings(tmp_path / "absent.csv")
