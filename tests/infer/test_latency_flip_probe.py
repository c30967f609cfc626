"""benchmarks/latency_flip.py's core-to-core probe builds and measures a round trip (its figures: RESULTS run X)."""
import os
import shutil

import pytest

from tests.scripts import load_script


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="bounces a cache line between CPU 0 and CPU 1")
def test_core_to_core_probe_builds_and_measures(tmp_path):
    flip = load_script("benchmarks/latency_flip.py")
    binary = flip.build_probe(tmp_path)
    round_trip = flip.round_trip_ns(binary, reps=3)
    # a real round trip between two cores takes tens to thousands of nanoseconds; 0 would mean no bounce happened
    assert 10 < round_trip < 1e6
