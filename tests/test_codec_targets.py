"""The codec-targets measurement (experiments.codec) against codecs whose answer is known in advance."""

from __future__ import annotations

import json

import pytest
import torch
from test_metrics_indomain import CFG, TEST_CACHE, small_corpus

from soundctm.experiments import codec
from soundctm.metrics.indomain import tiny_evt


class _Codec(torch.nn.Module):
    """decode(encode(x)) = fn(x): enough of the AudioAutoencoder interface for the measurement."""

    sample_rate = 16000

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def encode(self, x):
        return x

    def decode(self, z):
        return self.fn(z)


@pytest.fixture(scope="module")
def corpus_and_evt():
    torch.set_num_threads(1)
    corpus = small_corpus()
    return corpus, tiny_evt(corpus.root, CFG, cache=TEST_CACHE / "evaluators", log=False, build=True)


def test_identity_codec_meets_both_targets_exactly(corpus_and_evt):
    corpus, evt = corpus_and_evt
    res = codec.codec_targets(_Codec(lambda x: x), corpus, evt, fd_teacher=50.0)
    assert res["map_ratio"] == 1.0  # the same clips score the same
    assert abs(res["fd_reconstruction"]) < 1e-6
    assert res["meets_map_target"] and res["meets_fd_target"]
    assert res["reconstruction"]["vae"]["mel_distance"]["mean"] == pytest.approx(0.0, abs=1e-6)


def test_silent_codec_fails_the_fd_target_and_no_teacher_leaves_it_undecided(corpus_and_evt):
    corpus, evt = corpus_and_evt
    quiet = codec.codec_targets(_Codec(lambda x: 1e-4 * x), corpus, evt, fd_teacher=1.0)
    assert quiet["fd_reconstruction"] > 1.0 and quiet["meets_fd_target"] is False
    undecided = codec.codec_targets(_Codec(lambda x: x), corpus, evt)
    assert undecided["fd_ratio"] is None and undecided["meets_fd_target"] is None
    assert "not decided" in codec.summary_lines(undecided)[1]


def test_teacher_fd_is_read_from_the_ladders_teacher_row(tmp_path):
    doc = {"rows": [{"row": "vae-recon", "metrics": {"FD[tiny-evt]": {"value": 3.0}}},
                    {"row": "teacher", "metrics": {"KL[tiny-evt]": {"value": 1.0}, "FD[tiny-evt]": {"value": 152.5}}}]}
    (tmp_path / "instrument.json").write_text(json.dumps(doc))
    assert codec.teacher_fd(tmp_path / "instrument.json") == 152.5
    assert codec.teacher_fd(tmp_path / "missing.json") is None
