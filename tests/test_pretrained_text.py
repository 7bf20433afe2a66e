"""Pretrained text encoders (metrics env): LAION-CLAP single token and FLAN-T5 tokens from a local directory."""

import pytest
import torch

from soundctm.metrics.pretrained.weights import set_offline_env
from soundctm.paths import MissingAssetsError

set_offline_env()  # before anything imports Hugging Face code

torch.set_num_threads(1)


def test_flan_t5_missing_directory_message(tmp_path, monkeypatch):
    from soundctm.metrics.pretrained.text import FlanT5Text

    monkeypatch.setenv("SOUNDCTM_WEIGHTS", str(tmp_path))
    monkeypatch.delenv("SOUNDCTM_FLAN_T5_DIR", raising=False)
    with pytest.raises(MissingAssetsError) as ei:
        FlanT5Text()
    assert "flan-t5-large" in str(ei.value) and "SOUNDCTM_FLAN_T5_DIR" in str(ei.value)


def _tiny_t5_dir(d):
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    words = ["<pad>", "</s>", "<unk>", "a", "dog", "barks", "rain", "on", "roof"]
    tk = tokenizers.Tokenizer(
        tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>")
    )
    tk.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tk.post_processor = tokenizers.processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    cfg = transformers.T5Config(
        vocab_size=len(words),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=1,
        num_heads=4,
        decoder_start_token_id=0,
    )
    torch.manual_seed(0)
    model = transformers.T5EncoderModel(cfg).eval()
    model.save_pretrained(str(d))
    fast.save_pretrained(str(d))
    return model


def test_flan_t5_local_directory(tmp_path):
    model = _tiny_t5_dir(tmp_path / "t5")
    from soundctm.metrics.pretrained.text import FlanT5Text

    enc = FlanT5Text(tmp_path / "t5", max_len=8)
    tokens, mask, pooled = enc.encode(["a dog barks", "rain"])
    assert tokens.shape == (2, 8, 32) and mask.shape == (2, 8) and pooled.shape == (2, 32)
    assert mask.dtype == torch.bool and mask.sum(1).tolist() == [4, 2]
    ids = torch.tensor([[3, 4, 5, 1]])
    with torch.no_grad():
        ref = model(input_ids=ids).last_hidden_state
    torch.testing.assert_close(tokens[0, :4], ref[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(pooled[0], ref[0].mean(0), rtol=1e-4, atol=1e-5)
    t2, m2, p2 = enc.uncond(3)
    assert t2.shape == (3, 8, 32) and m2.sum(1).tolist() == [1, 1, 1]


def test_laion_clap_text_single_token(tmp_path):
    from soundctm.metrics.pretrained import clap as C

    if not C.clap_available():  # never `import laion_clap`: it fetches tokenizers at import time
        pytest.skip("laion-clap is not installed (metrics environment)")
    from test_pretrained_clap import TINY_ROBERTA, write_byte_level_tokenizer

    from soundctm.metrics.pretrained import clap as C
    from soundctm.metrics.pretrained.text import LaionClapText

    torch.manual_seed(0)
    model = C.build_clap_model(roberta_overrides=TINY_ROBERTA)
    tok = C.load_roberta_tokenizer(write_byte_level_tokenizer(tmp_path / "tok"))
    enc = LaionClapText(model=model, tokenizer=tok)
    tokens, mask, pooled = enc.encode(["a dog barks", "rain"])
    assert tokens.shape == (2, 1, 512) and mask.shape == (2, 1) and mask.all() and pooled.shape == (2, 512)
    torch.testing.assert_close(pooled.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(tokens[:, 0], pooled)
    ref = C.ClapEmbedder(model, tok).embed_text(["a dog barks"])
    torch.testing.assert_close(pooled[:1], torch.from_numpy(ref))
    with pytest.raises(C.EmptyTokenizerError):
        LaionClapText(model=model, tokenizer=__import__("transformers").RobertaTokenizer())
