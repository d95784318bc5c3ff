"""Citations resolve inside the repository (docs/references.md).

* every citation key (``[P-SW]``, ``[P-EC Eq. 2]``, ``[P-SW, P-ST]``) used in the code, the tests,
  the README and docs/ is defined in the key table of docs/references.md;
* every pointer ``references.md §<Name>`` / ``references.md#<anchor>`` names a heading there;
* nothing refers to files outside the repository (the old brief, notes in ../shared).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCES = ROOT / "docs" / "references.md"
SCANNED = ("repro", "experiments", "tests", "docs", "README.md", "pyproject.toml", "tox.ini")
OUTSIDE = ("papers.md", "../shared", "/work/shared", "perf-notes.md", "peers.md",
           "calibration-notes.md")

KEY_ONLY = re.compile(r"\[([PSC]-[A-Za-z]+)\]")  # [P-SW]
BRACKETS = re.compile(r"\[([^\[\]\n]{1,200})\]")  # any bracketed text on one line
KEY = re.compile(r"(?<![\w-])([PSC]-[A-Z][A-Za-z]*)(?![\w-])")  # a key inside brackets
POINTER = re.compile(r"references\.md ?§([A-Za-z][\w-]*)")  # references.md §Switch
ANCHOR = re.compile(r"references\.md#([a-z0-9-]+)")  # docs/references.md#switch


def _texts() -> dict[Path, str]:
    out = {}
    for name in SCANNED:
        base = ROOT / name
        if not base.exists():
            continue
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for f in files:
            if "__pycache__" in f.parts:
                continue
            try:
                out[f] = f.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue  # binary (e.g. the compressed corpus)
    return out


def _section(text: str, heading: str) -> str:
    m = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"docs/references.md has no '## {heading}' section"
    return m.group(1)


def _defined_keys() -> set[str]:
    table = _section(REFERENCES.read_text(encoding="utf-8"), "Keys")
    return set(re.findall(r"^\|\s*`\[([PSC]-[A-Za-z]+)\]`\s*\|", table, re.M))


def _headings() -> set[str]:
    return set(re.findall(r"^## (\S.*?)\s*$", REFERENCES.read_text(encoding="utf-8"), re.M))


def _where(path: Path, text: str, pos: int) -> str:
    return f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, pos) + 1}"


@pytest.fixture(scope="module")
def texts():
    return _texts()


def test_key_table_parses():
    keys = _defined_keys()
    # the sources the code is built on; a key dropped from the table must fail loudly
    assert {"P-SHZ", "P-SW", "P-ST", "P-EC", "P-DSM", "S-MoNE", "S-FD", "C-GS"} <= keys


def test_every_citation_key_is_defined(texts):
    defined = _defined_keys()
    used: dict[str, list[str]] = {}
    for path, text in texts.items():
        for m in KEY_ONLY.finditer(text):
            used.setdefault(m.group(1), []).append(_where(path, text, m.start()))
        for m in BRACKETS.finditer(text):  # keys with a locator: [P-EC Eq. 2], [P-SW, P-ST]
            for k in KEY.findall(m.group(1)):
                used.setdefault(k, []).append(_where(path, text, m.start()))
    assert used, "no citation keys found: the scan is broken"
    missing = {k: v[:3] for k, v in used.items() if k not in defined}
    assert not missing, f"citation keys not in docs/references.md's key table: {missing}"


def test_every_pointer_names_a_section(texts):
    headings = _headings()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
    bad = []
    for path, text in texts.items():
        for m in POINTER.finditer(text):
            if m.group(1) not in headings:
                bad.append(f"{_where(path, text, m.start())}: §{m.group(1)}")
        for m in ANCHOR.finditer(text):
            if m.group(1) not in anchors:
                bad.append(f"{_where(path, text, m.start())}: #{m.group(1)}")
    assert not bad, f"pointers to missing sections of docs/references.md: {bad}"


def test_nothing_refers_outside_the_repository(texts):
    me = Path(__file__).resolve()
    bad = []
    for path, text in texts.items():
        if path.resolve() == me:
            continue
        for needle in OUTSIDE:
            i = text.find(needle)
            if i >= 0:
                bad.append(f"{_where(path, text, i)}: {needle}")
    assert not bad, f"references to files outside the repository: {bad}"
