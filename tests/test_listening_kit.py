"""Tables 4 and 9 as listening-test kits: the export on a small runner over the committed tiny models
(stimuli = the objective tables' samples of the same items, one loudness, the reference length, a
webMUSHRA config that names every file), and the analysis of a synthetic mushra.csv through the
table script, whose means, intervals and claim verdicts are computed here from the ratings."""

import csv
import json
import math
import statistics
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from soundctm.data.corpus import make_clip_spec, render_take
from soundctm.experiments import get_table
from soundctm.experiments import mushra as M
from soundctm.experiments.listening import export_kit, kit_cli
from soundctm.experiments.regression import committed_files
from soundctm.experiments.runner import Runner
from soundctm.experiments.tier import TINY, Components, Unit
from soundctm.nn.text import get_text_encoder
from soundctm.nn.vae import AudioAutoencoder

REPO = Path(__file__).resolve().parents[1]
SR, CLIP = 16000, 32768  # the tiny corpus



def _small_tier(n_units=4):
    """The tiny tier over the committed models and the first test clips of the seed-0 corpus (rendered
    from their specs: no corpus build, no training, no evaluators)."""
    files = committed_files()

    def load(cache=None):
        vae = AudioAutoencoder.load(files["vae"]).eval().requires_grad_(False)
        clap = get_text_encoder("tiny-clap", path=files["clap"]).eval()
        units = [Unit(f"s0te{i:06d}", render_take(0, "test", i, 0, SR, CLIP),
                      list(make_clip_spec(0, "test", i, CLIP / SR).captions)) for i in range(n_units)]
        return Components(SR, units, vae, clap, {}, {"test": "listening-kit"}, None, "1/16kHz (tiny)")

    def build(run, teacher_export, cache=None):
        return files[run.kind]  # every run -> the committed teacher / student (a model is a model here)

    return replace(TINY, load=load, build=build, samples_per_caption=2, n_units=None)


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models on a shared CPU
    root = tmp_path_factory.mktemp("kit")
    runner = Runner(_small_tier(), root / "cache", store=root / "store", log=lambda *a: None)
    t4 = get_table("4")
    manifest = export_kit(t4, runner, root / "kit", n_items=3, log=lambda *a: None)
    yield t4, runner, manifest, root
    torch.set_num_threads(threads)


def test_kit_stimuli_are_the_tables_samples_at_one_loudness(kit):
    t4, runner, manifest, root = kit
    yaml = pytest.importorskip("yaml")
    kitdir = root / "kit"
    assert [it["trial"] for it in manifest["items"]] == ["t00", "t01", "t02"]
    assert len({it["unit"] for it in manifest["items"]}) == 3
    names = {M.REFERENCE, M.ANCHOR, "teacher", "student-1", "student-16"}
    target = manifest["loudness"]["target_lufs"]
    assert target <= -23.0
    for it in manifest["items"]:
        for n in names:
            wav, sr = sf.read(kitdir / f"configs/resources/audio/table4/{it['trial']}/{n}.wav")
            assert sr == SR and len(wav) == CLIP  # every condition has the reference's length
            assert M.integrated_loudness(wav, sr) == pytest.approx(target, abs=0.05)
            assert np.abs(wav).max() <= 10 ** (-1 / 20) + 1e-4
        # the hidden reference is the test clip itself, scaled by its gain
        ref, _ = sf.read(kitdir / f"configs/resources/audio/table4/{it['trial']}/reference.wav")
        gain = 10 ** (manifest["loudness"]["gain_db"][f"{it['trial']}/reference"] / 20)
        clip = runner.units[it["unit"]].audio
        assert np.abs(ref - clip * gain).max() < 2 / 32768
        assert it["caption"] in runner.units[it["unit"]].captions
        assert it["seed"] == it["index"] == (it["unit"] * runner.K + it["caption_index"]) * runner.S
    # the student stimuli are the very samples the runner makes for those items (same z_T, same model)
    for row in (t4.rows[3], t4.rows[4]):
        z = runner.latents(row)
        for it in manifest["items"]:
            want = runner.comp.vae.decode(z[it["index"]][None]).float()[0, 0].numpy()
            want = want * 10 ** (manifest["loudness"]["gain_db"][f"{it['trial']}/{row.name}"] / 20)
            got, _ = sf.read(kitdir / f"configs/resources/audio/table4/{it['trial']}/{row.name}.wav")
            assert np.abs(got - want).max() < 1e-3
    # the config names every exported file, and only files that exist; not-run systems are listed only
    cfg = yaml.safe_load((kitdir / manifest["config"]).read_text())
    pages = cfg["pages"][2][1:]
    assert len(pages) == 2 * 3 and {p["id"].split("-")[0] for p in pages} == {"OVAL", "REL"}
    for p in pages:
        assert set(p["stimuli"]) == names - {M.REFERENCE}
        for f in [p["reference"], *p["stimuli"].values()]:
            assert (kitdir / f).is_file() and f in manifest["files"]
    not_run = {s["name"] for s in manifest["systems"] if s["not_run"]}
    assert not_run == {"stable-audio-open", "audioldm2-48k"}
    assert "caption" not in pages[0]["content"] and manifest["items"][0]["caption"] in pages[3]["content"]


def _ratings_csv(path, manifest, means, rng, sd=6.0, raters=8):
    """webMUSHRA's mushra.csv for the kit's pages; rater 7 fails the post-screening."""
    trials = [f"{c}-{it['trial']}" for c in ("OVAL", "REL") for it in manifest["items"]]
    rows, kept = [], {}
    for r in range(raters):
        for t in trials:
            for s, mu in means.items():
                score = float(np.clip(round(rng.normal(mu, sd)), 0, 100))
                if s == M.REFERENCE:
                    score = 40.0 if r == raters - 1 else float(rng.integers(90, 101))
                rows.append(["soundctm_table4", f"r{r}", f"u{r}", t, s, score, 1000, ""])
                if r != raters - 1:
                    kept.setdefault((s, t.split("-")[0]), []).append(score)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["session_test_id", "rater_id", "session_uuid", "trial_id", "rating_stimulus", "rating_score",
                    "rating_time", "rating_comment"])
        w.writerows(rows)
    return kept


def _t975(n):  # Student t quantiles from tables (two-sided 95 %), for the sizes used here
    return {41: 2.019541, 20: 2.085963}[n - 1]


def test_analysis_through_the_table_script_gives_known_means_intervals_and_verdicts(kit, tmp_path, capsys):
    t4, runner, manifest, root = kit
    means = {M.REFERENCE: 95, M.ANCHOR: 15, "teacher": 62, "student-1": 60, "student-16": 80}
    kept = _ratings_csv(tmp_path / "mushra.csv", manifest, means, np.random.default_rng(3))
    out = tmp_path / "results"
    rc = kit_cli(get_table("4"), ["--analyze", str(tmp_path / "mushra.csv"), "--kit", str(root / "kit"),
                                  "--out", str(out)])
    assert rc == 0
    rec = json.loads((out / "table4.json").read_text())
    assert rec["kind"] == "listening-test" and rec["kit"]["rated"]
    assert rec["kit"]["screening"]["excluded"] == ["u7"]
    by = {r["row"]: r for r in rec["rows"]}
    for (s, c), xs in kept.items():
        m = by[s]["metrics"][c]
        assert m["n"] == len(xs) == 7 * 3
        assert m["value"] == pytest.approx(statistics.mean(xs), rel=1e-12)
        assert (m["hi"] - m["lo"]) / 2 == pytest.approx(_t975(len(xs)) * statistics.stdev(xs) / math.sqrt(len(xs)),
                                                        rel=1e-5)
    assert by["student-16"]["paper"] == {"OVAL": 72.0, "REL": 77.0} and by["stable-audio-open"]["not_run"]
    verdicts = {c["claim"]: c for c in rec["claims"]}

    def separated(a, b, c):
        (ma, ha), (mb, hb) = (M.mushra_ci(kept[(x, c)]) for x in (a, b))
        return ma - ha > mb + hb

    for c in ("OVAL", "REL"):
        v = verdicts[f"(a-{c})"]
        assert v["supported"] is separated("student-16", "student-1", c) is True
        assert v["self_test"]["supported"] is False and v["label"] == "SUPPORTED"  # the anchor does not beat 1 step
        assert verdicts[f"(b-stable-audio-open-{c})"]["label"] == "NOT DECIDED"
        # 1 step (60) and teacher (62) with sd 6 over 21 ratings: the intervals overlap
        (m1, h1), (mt, ht) = M.mushra_ci(kept[("student-1", c)]), M.mushra_ci(kept[("teacher", c)])
        assert verdicts[f"(c-{c})"]["supported"] is (m1 - h1 <= mt + ht and mt - ht <= m1 + h1)
    md = (out / "table4.md").read_text()
    assert "SUPPORTED" in md and "not run: the Stable Audio Open" in md and "72" in md
    assert "excluded 1" in capsys.readouterr().out


def test_a_claim_the_anchor_also_passes_is_broken(kit, tmp_path):
    t4, runner, manifest, root = kit
    # raters who cannot hear the difference: the anchor is rated like the 16-step student
    means = {M.REFERENCE: 95, M.ANCHOR: 80, "teacher": 40, "student-1": 40, "student-16": 80}
    _ratings_csv(tmp_path / "mushra.csv", manifest, means, np.random.default_rng(4))
    out = tmp_path / "results"
    assert kit_cli(get_table("4"), ["--analyze", str(tmp_path / "mushra.csv"), "--kit", str(root / "kit"),
                                    "--out", str(out)]) == 0
    verdicts = {c["claim"]: c for c in json.loads((out / "table4.json").read_text())["claims"]}
    assert verdicts["(a-OVAL)"]["supported"] and verdicts["(a-OVAL)"]["broken"]
    assert verdicts["(a-OVAL)"]["label"].startswith("BROKEN")


def test_analysis_rejects_ratings_of_another_kit(kit, tmp_path, capsys):
    t4, runner, manifest, root = kit
    _ratings_csv(tmp_path / "mushra.csv", manifest, {M.REFERENCE: 95, "someone-else": 50}, np.random.default_rng(5))
    rc = kit_cli(get_table("4"), ["--analyze", str(tmp_path / "mushra.csv"), "--kit", str(root / "kit"),
                                  "--out", str(tmp_path / "o")])
    assert rc == 2 and "someone-else" in capsys.readouterr().err


def test_table9_declares_the_unet_students_and_lists_audiolcm_as_not_run():
    t9 = get_table("9")
    assert [r.name for r in t9.runnable] == ["unet-student-1", "unet-student-4"]
    assert all(r.run.backbone == "unet" and r.omega == 3.5 and r.nu == 1.0 for r in t9.runnable)
    assert {r.name for r in t9.rows if r.not_run} == {"audiolcm-1", "audiolcm-4"}
    assert t9.reference_paper == {"OVAL": 75.5, "REL": 74.9} and t9.paper_raters == 15


def test_run_table_exports_the_kit_again_bit_for_bit_and_keeps_its_analysis(kit, tmp_path):
    from soundctm.experiments.main import parser, run_table

    t4, runner, manifest, root = kit
    out = tmp_path / "results"
    _ratings_csv(tmp_path / "mushra.csv", manifest, {M.REFERENCE: 95, M.ANCHOR: 15, "teacher": 60, "student-1": 60,
                                                      "student-16": 80}, np.random.default_rng(6))
    assert kit_cli(t4, ["--analyze", str(tmp_path / "mushra.csv"), "--kit", str(root / "kit"), "--out", str(out)]) == 0
    args = parser().parse_args(["--out", str(out)])  # what reproduce/all.py passes
    args.items, args.kit = 3, str(root / "kit")
    rec = run_table(t4, args, runner)  # the same stimuli again: same fingerprint, the ratings still apply
    assert rec["kit"]["fingerprint"] == manifest["fingerprint"] and rec["kit"]["rated"]
    assert json.loads((out / "table4.json").read_text())["rows"][-1]["metrics"]["OVAL"]["n"] == 7 * 3


def test_the_report_renders_a_rated_kit_with_its_verdicts(kit, tmp_path):
    from test_report_html import _Page

    from soundctm.commands.report import write_report

    t4, runner, manifest, root = kit
    out = tmp_path / "results"
    _ratings_csv(tmp_path / "mushra.csv", manifest, {M.REFERENCE: 95, M.ANCHOR: 15, "teacher": 60, "student-1": 60,
                                                      "student-16": 80}, np.random.default_rng(7))
    assert kit_cli(t4, ["--analyze", str(tmp_path / "mushra.csv"), "--kit", str(root / "kit"), "--out", str(out)]) == 0
    rec = json.loads((out / "table4.json").read_text())
    page = _Page()
    page.feed(write_report(out, audio=False, log=lambda *a: None).read_text())
    head, *rows = page.tables["table4"]
    assert head == ["Model", "steps", "ω", "ν", "OVAL", "REL", "paper OVAL", "paper REL"]
    ref = rows[0]
    m = rec["rows"][0]["metrics"]["OVAL"]
    assert ref[0] == "Ground truth (hidden reference)" and ref[1:4] == ["-", "-", "-"]
    assert ref[4] == f"{m['value']:.4g} [{m['lo']:.4g}, {m['hi']:.4g}]" and ref[-2:] == ["79.6", "83.2"]
    assert rows[-1][:4] == ["SoundCTM-DiT, 16 steps", "16", "5", "5"]
    labels = [label for _, label in page.badges]
    assert labels.count("NOT DECIDED") == 4  # the claims against the two baselines we cannot run
    assert labels == [c["label"] for c in rec["claims"]]
