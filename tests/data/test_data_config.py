"""DataConfig validation: one-line errors that name the field."""

import pytest

from repro.config import ConfigError, apply_overrides
from repro.data import DataConfig


def test_defaults_are_valid():
    cfg = DataConfig()
    assert cfg.source == "shakespeare" and cfg.vocab_size == 8192 and cfg.seq_len == 128


@pytest.mark.parametrize("source", ["shakespeare", "synthetic", "hf:wikitext:wikitext-2-raw-v1",
                                    "hf:roneneldan/TinyStories", "text:/tmp/*.txt", "json:a.jsonl"])
def test_allowed_sources(source):
    assert DataConfig(source=source).source == source


@pytest.mark.parametrize("source", ["shakspeare", "hf:", "txt:/a", ""])
def test_unknown_source_lists_allowed_forms(source):
    with pytest.raises(ConfigError) as e:
        DataConfig(source=source)
    assert e.value.path == "source" and "text:PATH_OR_GLOB" in str(e.value)


@pytest.mark.parametrize("kwargs,field", [
    ({"vocab_size": 256}, "vocab_size"),
    ({"seq_len": 1}, "seq_len"),
    ({"val_windows": 0}, "val_windows"),
    ({"val_fraction": 0.0}, "val_fraction"),
    ({"text_sample_by": "page"}, "text_sample_by"),
    ({"source": "synthetic", "vocab_size": 1}, "vocab_size"),
    ({"source": "synthetic", "synthetic_tokens": 10}, "synthetic_tokens"),
    ({"data_seed": -1}, "data_seed"),
])
def test_invalid_fields_are_named(kwargs, field):
    with pytest.raises(ConfigError) as e:
        DataConfig(**kwargs)
    assert e.value.path == field and "\n" not in str(e.value)


def test_small_vocab_is_fine_for_synthetic():
    assert DataConfig(source="synthetic", vocab_size=64).vocab_size == 64
    assert DataConfig(vocab_size=257).vocab_size == 257  # 256 bytes + <|endoftext|>


def test_overrides_coerce_and_revalidate():
    cfg = apply_overrides(DataConfig(), ["seq_len=64", "source=synthetic", "vocab_size=100"])
    assert cfg.seq_len == 64 and cfg.source == "synthetic" and cfg.vocab_size == 100
    with pytest.raises(ConfigError):
        apply_overrides(DataConfig(), ["vocab_size=100"])
