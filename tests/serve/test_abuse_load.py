"""A small, fast run of ``benchmarks/load_test.py --abuse`` against a real loopback ``csnet serve``:
fast clients beside slow uploads. The service must stay up, answer the fast clients (slow uploads hold
connections, never prediction slots) and cut every slow upload off with 408 at its body timeout."""
from __future__ import annotations

import json

import pytest

from tests.scripts import load_script

pytest.importorskip("uvicorn")
pytest.importorskip("httpx")


def test_fast_clients_are_answered_while_slow_uploads_get_408(capsys) -> None:
    load_test = load_script("benchmarks/load_test.py")
    code = load_test.main(["--abuse", "--requests", "12", "--concurrency", "6", "--slow-clients", "4",
                           "--body-timeout", "2", "--deadline", "60", "--size", "64", "--threads", "1", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["healthz_after"] == 200
    assert report["fast_status"] == {"200": 12}  # JSON keys: the status codes as strings
    assert report["slow_status"] == {"408": 4}
    assert 1.5 <= report["slow_answered_after_s"] <= 30
