"""Tests of csnet.metrics (and, until tests/infer exists, csnet.infer.protocol)."""
