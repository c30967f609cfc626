"""What the fuzz targets share: their settings and a byte-level mutator of valid seed files.

The targets are Hypothesis property tests: each draws inputs (valid files, then mutated; or inputs built
field by field), runs one loader and asserts it either returns what it promises or raises its one
documented error. Any other exception, a wrong shape or a hang is a finding.

Run length: ``CSNET_FUZZ_EXAMPLES`` examples per target (default 150, derandomized: the same inputs on
every CI run, a few seconds per target). The long run (SECURITY.md) sets it high and randomizes:
``CSNET_FUZZ_EXAMPLES=20000 CSNET_FUZZ_RANDOM=1 python -m pytest tests/fuzz -q``. A finding is kept as a
file in ``tests/fuzz/corpus/<target>/`` and replayed by ``test_corpus.py`` forever after.
"""
from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

CORPUS = Path(__file__).resolve().parent / "corpus"
EXAMPLES = int(os.environ.get("CSNET_FUZZ_EXAMPLES", "150"))
RANDOM = os.environ.get("CSNET_FUZZ_RANDOM", "") not in ("", "0")

def fuzz_settings(share: float = 1.0) -> settings:
    """The settings of a fuzz target: ``share`` of ``EXAMPLES`` (targets whose every valid input builds a
    network take a third), no deadline (the CPU is shared), no database (findings go to the corpus,
    reviewed, not to a hidden cache)."""
    return settings(max_examples=max(10, int(EXAMPLES * share)), derandomize=not RANDOM, deadline=None,
                    database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                          HealthCheck.function_scoped_fixture])


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """One of ``seeds`` with a few random edits: byte overwrites, insertions, deletions, a truncation,
    a duplicated span (the edits a coverage-guided fuzzer's mutator makes most often)."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 8))):
        if not data:
            break
        op = draw(st.sampled_from(("set", "insert", "delete", "truncate", "duplicate", "interesting")))
        at = draw(st.integers(0, len(data) - 1))
        if op == "set":
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[at:]
        elif op == "duplicate":
            span = data[at:at + draw(st.integers(1, 64))]
            data[at:at] = span * draw(st.integers(1, 4))
        else:  # boundary values where a length or size field may be
            value = draw(st.sampled_from((0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)))
            data[at:at + 4] = value.to_bytes(4, draw(st.sampled_from(("big", "little"))))
    return bytes(data)


def corpus_files(target: str) -> list[Path]:
    folder = CORPUS / target
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
