"""Local text/json sources via HF datasets (never the network), carving by document, token cache."""

import json

import numpy as np
import pytest

from repro.data import DataConfig, DataError, build_token_splits, load_text_splits

WORDS = "the king queen lord lady sword crown night day love death honour".split()


def _doc(i: int, n: int = 400) -> str:
    rng = np.random.default_rng(i)
    return f"DOC{i}\n" + " ".join(rng.choice(WORDS, n)) + "\n\n" + " ".join(rng.choice(WORDS, n))


@pytest.fixture
def text_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_RUNS_DIR", str(tmp_path / "runs"))
    d = tmp_path / "texts"
    d.mkdir()
    for i in range(20):
        (d / f"doc{i:02d}.txt").write_text(_doc(i))
    return d


def test_text_glob_splits_by_document(text_dir):
    cfg = DataConfig(source=f"text:{text_dir}/*.txt", vocab_size=300)
    s = load_text_splits(cfg)
    assert [len(s[k]) for k in ("train", "val", "test")] == [18, 1, 1]  # 5% of 20, at least 1
    all_docs = s["train"] + s["val"] + s["test"]
    assert sorted(all_docs) == sorted(_doc(i) for i in range(20))  # whole files, none split
    assert load_text_splits(cfg) == s  # deterministic
    other = load_text_splits(DataConfig(source=f"text:{text_dir}", vocab_size=300, data_seed=1))
    assert other["val"] != s["val"] or other["test"] != s["test"]  # carving follows data_seed


def test_single_text_file_needs_paragraphs(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_RUNS_DIR", str(tmp_path / "runs"))
    f = tmp_path / "one.txt"
    f.write_text("\n\n".join(_doc(i, 50) for i in range(10)))
    with pytest.raises(DataError, match="text_sample_by=paragraph"):
        load_text_splits(DataConfig(source=f"text:{f}"))
    s = load_text_splits(DataConfig(source=f"text:{f}", text_sample_by="paragraph"))
    assert len(s["train"]) + len(s["val"]) + len(s["test"]) == 20


def test_missing_files_are_named(tmp_path):
    with pytest.raises(DataError, match="no files match"):
        load_text_splits(DataConfig(source=f"text:{tmp_path}/none*.txt"))


def test_json_source_and_column(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_RUNS_DIR", str(tmp_path / "runs"))
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps({"body": _doc(i, 30), "id": i}) + "\n" for i in range(40)))
    s = load_text_splits(DataConfig(source=f"json:{f}", text_column="body"))
    assert [len(s[k]) for k in ("train", "val", "test")] == [36, 2, 2]
    with pytest.raises(DataError, match="no key 'text'.*body.*data.text_column"):
        load_text_splits(DataConfig(source=f"json:{f}"))


def test_token_cache_for_text_source(text_dir, monkeypatch):
    import repro.data.tokenizer as tokmod
    import repro.data.tokens as tokens_mod

    cfg = DataConfig(source=f"text:{text_dir}/*.txt", vocab_size=300)
    a = build_token_splits(cfg)
    assert a.vocab_size <= 300 and a.tokenizer.token_to_id("<|endoftext|>") == 0
    for s in ("train", "val", "test"):
        assert a.tokens[s].dtype == np.uint16 and a.tokens[s][-1] == 0  # every doc ends in EOT
    assert int((a.tokens["train"] == 0).sum()) == 18
    # second build: no training, no encoding, not even loading the text
    boom = lambda *a, **k: pytest.fail("cache miss")  # noqa: E731
    monkeypatch.setattr(tokmod, "_train_bpe", boom)
    monkeypatch.setattr(tokens_mod, "load_text_splits", boom)
    b = build_token_splits(cfg)
    assert (b.source_fingerprint, b.tokenizer_hash) == (a.source_fingerprint, a.tokenizer_hash)
    assert np.array_equal(a.tokens["val"], b.tokens["val"])
    # editing a file changes the content fingerprint
    (text_dir / "doc00.txt").write_text("changed")
    monkeypatch.undo()
    assert build_token_splits(cfg).source_fingerprint != a.source_fingerprint


def test_parquet_source_in_the_gpu_datasets_layout(tmp_path, monkeypatch):
    # small local files shaped like the gpu scale's WikiText-103 on the hub: Parquet shards
    # named train-0000N-of-0000M.parquet with one string column "text" of paragraphs, headings
    # and blank rows
    import pyarrow as pa
    import pyarrow.parquet as pq

    from repro.data.sources import cheap_fingerprint
    from repro.experiments.scales import PRESETS

    monkeypatch.setenv("REPRO_RUNS_DIR", str(tmp_path / "runs"))
    d = tmp_path / "wikitext-103-raw-v1"
    d.mkdir()
    rows = []
    for i in range(60):
        rows += [f" = Article {i} = \n", "", _doc(i, 40)]
    for shard in range(2):
        part = rows[shard * 90:(shard + 1) * 90]
        pq.write_table(pa.table({"text": part}), d / f"train-0000{shard}-of-00002.parquet")
    cfg = DataConfig(source=f"parquet:{d}/train-*.parquet", vocab_size=300)
    s = load_text_splits(cfg)
    n = sum(len(s[k]) for k in ("train", "val", "test"))
    assert n == 120  # blank rows dropped, headings and paragraphs kept, carved by document
    assert len(s["val"]) == 6 and len(s["test"]) == 6
    assert cheap_fingerprint(cfg) == cheap_fingerprint(cfg)
    # the gpu preset names the hub dataset of this format, pinned
    gpu = PRESETS["gpu"].data
    assert gpu.source.startswith("hf:Salesforce/wikitext") and gpu.hf_revision
    # a file without the text column: one line naming the column and the fix
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="no column 'text'.*body.*data.text_column"):
        load_text_splits(DataConfig(source=f"parquet:{tmp_path}/bad.parquet"))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        load_text_splits(DataConfig(source=f"parquet:{tmp_path}/junk.parquet"))
