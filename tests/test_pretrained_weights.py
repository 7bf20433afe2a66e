"""Local-weights table: one error naming every missing file, env overrides, safe loading."""

import pytest
import torch

from soundctm.metrics.pretrained import weights as W
from soundctm.paths import MissingAssetsError


@pytest.fixture
def empty_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDCTM_WEIGHTS", str(tmp_path / "w"))
    for spec in W.WEIGHTS.values():
        monkeypatch.delenv(spec.env, raising=False)
    return tmp_path / "w"


def test_missing_error_names_every_file_and_env_var(empty_weights):
    keys = list(W.WEIGHTS)
    with pytest.raises(MissingAssetsError) as ei:
        W.require_weights(*keys)
    msg = str(ei.value)
    for spec in W.WEIGHTS.values():
        assert spec.filename in msg
        assert spec.env in msg
        assert str(empty_weights / spec.filename) in msg
    assert len(ei.value.missing) == len(keys)


def test_env_override_and_directory_contents(empty_weights, tmp_path, monkeypatch):
    f = tmp_path / "my_vggish.pth"
    torch.save({"a": torch.zeros(1)}, f)
    monkeypatch.setenv("SOUNDCTM_VGGISH_WEIGHTS", str(f))
    assert W.require_weights("vggish") == {"vggish": f}
    d = tmp_path / "tok"
    d.mkdir()
    (d / "vocab.json").write_text("{}")
    monkeypatch.setenv("SOUNDCTM_ROBERTA_TOKENIZER", str(d))
    with pytest.raises(MissingAssetsError) as ei:
        W.require_weights("vggish", "roberta-tokenizer")
    assert len(ei.value.missing) == 1  # vocab.json is there, only merges.txt is missing
    assert ei.value.missing[0][1] == str(d / "merges.txt")
    (d / "merges.txt").write_text("#version: 0.2\n")
    assert W.require_weights("roberta-tokenizer")["roberta-tokenizer"] == d


def test_load_state_dict_formats(tmp_path):
    lin = torch.nn.Linear(3, 2)
    p1 = tmp_path / "a.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in lin.state_dict().items()}, "epoch": 3}, p1)
    sd = W.load_state_dict(p1)
    assert set(sd) == {"weight", "bias"}
    from safetensors.torch import save_file

    p2 = tmp_path / "b.safetensors"
    save_file(lin.state_dict(), str(p2))
    assert torch.equal(W.load_state_dict(p2)["weight"], lin.weight.detach())


def test_load_into_reports_mismatches():
    lin = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match="missing keys: bias"):
        W.load_into(lin, {"weight": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="unexpected keys: extra"):
        W.load_into(lin, {**lin.state_dict(), "extra": torch.zeros(1)})
    with pytest.raises(ValueError, match="shape mismatch"):
        W.load_into(lin, {"weight": torch.zeros(3, 3), "bias": torch.zeros(2)})
    W.load_into(lin, {**lin.state_dict(), "skip.me": torch.zeros(1)}, ignore_prefixes=("skip.",))


def test_unknown_key():
    with pytest.raises(KeyError, match="unknown pretrained asset"):
        W.weight_path("nope")
