"""BPE tokenizer: cached by (corpus hash, vocab), reloaded instead of retrained."""

import pytest

import repro.data.tokenizer as tokmod
from repro.data import DataError, load_corpus_splits
from repro.data.tokenizer import EOT, get_tokenizer, tokenizer_path


@pytest.fixture(scope="module")
def docs():
    return load_corpus_splits()["train"][:4]  # a few plays: enough for a 512 vocab, fast


def test_tokenizer_is_cached_and_reused(docs, tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_RUNS_DIR", str(tmp_path))
    calls = []
    real = tokmod._train_bpe
    monkeypatch.setattr(tokmod, "_train_bpe", lambda d, v: calls.append(v) or real(d, v))
    tok, h = get_tokenizer(docs, 512, "abc123")
    path = tokenizer_path("abc123", 512)
    assert path.name == "abc123-v512.json" and path.parent == tmp_path / "cache" / "tokenizers"
    assert path.exists() and calls == [512]
    tok2, h2 = get_tokenizer(docs, 512, "abc123")
    assert calls == [512] and h2 == h  # second call loaded the cache, no retraining
    tok3, h3 = get_tokenizer(docs, 300, "abc123")  # another vocab is another key
    assert calls == [512, 300] and h3 != h
    # without docs a cache hit still works, and a miss says what to do
    assert get_tokenizer(None, 512, "abc123")[1] == h
    with pytest.raises(DataError, match="prepare_data"):
        get_tokenizer(None, 512, "other")


def test_tokenizer_properties(docs, tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_RUNS_DIR", str(tmp_path))
    tok, _ = get_tokenizer(docs, 512, "abc123")
    assert tok.get_vocab_size() == 512 and tok.token_to_id(EOT) == 0
    text = "To be, or not to be: that is the question.\n  Ünïcödé ✓ 123"
    ids = tok.encode(text, add_special_tokens=False).ids
    assert tok.decode(ids, skip_special_tokens=False) == text  # byte-level: lossless
    assert len(ids) < len(text.encode())  # merges actually compress
