"""The shipped corpus: size, split-by-work, boilerplate removal, integrity check."""

import hashlib
import shutil

import pytest

from repro.data import DataError, load_corpus_splits
from repro.data.build_corpus import TEST_WORKS, VAL_WORKS, strip_gutenberg
from repro.data.corpus import ARCHIVE_PATH, ARCHIVE_SHA256, CORPUS_DIR, load_corpus_records


@pytest.fixture(scope="module")
def records():
    return load_corpus_records()


def test_corpus_loads_and_is_big_enough(records):
    splits = load_corpus_splits()
    nbytes = {s: sum(len(d.encode("utf-8")) for d in docs) for s, docs in splits.items()}
    assert sum(nbytes.values()) >= 4 * 2**20
    assert all(nbytes[s] > 0 for s in ("train", "val", "test"))
    assert nbytes["train"] / sum(nbytes.values()) > 0.85  # ~90/5/5 by bytes
    assert ARCHIVE_PATH.stat().st_size < 2 * 2**20


def test_splits_are_disjoint_by_work(records):
    works = [r["work"] for r in records]
    assert len(works) == len(set(works)) == 42
    by_split = {s: {r["work"] for r in records if r["split"] == s}
                for s in ("train", "val", "test")}
    assert by_split["val"] == set(VAL_WORKS) and by_split["test"] == set(TEST_WORKS)
    assert not (by_split["train"] & by_split["val"]) and not (by_split["train"] & by_split["test"])
    texts = {s: {r["text"] for r in records if r["split"] == s} for s in by_split}
    assert not (texts["train"] & texts["val"]) and not (texts["train"] & texts["test"])


def test_no_gutenberg_boilerplate_shipped(records):
    for r in records:
        assert "gutenberg" not in r["text"].lower(), r["work"]
        assert r["text"] == r["text"].strip()


def test_provenance_names_the_archive_hash():
    prov = (CORPUS_DIR / "PROVENANCE.md").read_text()
    assert ARCHIVE_SHA256 in prov and "public domain" in prov
    assert hashlib.sha256(ARCHIVE_PATH.read_bytes()).hexdigest() == ARCHIVE_SHA256


def test_corrupt_archive_is_refused(tmp_path):
    bad = tmp_path / ARCHIVE_PATH.name
    shutil.copy(ARCHIVE_PATH, bad)
    blob = bytearray(bad.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    bad.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="corrupt") as e:
        load_corpus_splits(bad)
    assert str(bad) in str(e.value) and "reinstall" in str(e.value) and "\n" not in str(e.value)


def test_missing_archive_is_refused(tmp_path):
    with pytest.raises(DataError, match="missing") as e:
        load_corpus_splits(tmp_path / "nope.jsonl.xz")
    assert "reinstall" in str(e.value)


def test_strip_gutenberg_rule():
    raw = ("The Project Gutenberg EBook of Hamlet\r\nlicence blah\r\n"
           "*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\r\n\r\nHAMLET\r\nTo be.\r\n\r\n"
           "*** END OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\r\nmore licence\r\n")
    assert strip_gutenberg(raw) == "HAMLET\nTo be."
    with pytest.raises(RuntimeError, match="survived"):
        strip_gutenberg("HAMLET\nThis file is from Project Gutenberg.\n")
