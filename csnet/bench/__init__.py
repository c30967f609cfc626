"""Benchmark library behind ``csnet benchmark``: timing, runtime runners, model and end-to-end benchmarks.

Speed is measured here and reported in ``benchmarks/RESULTS.md``; it is never asserted in tests.
"""
from csnet.bench.model_bench import ROW_KEYS, BenchConfig, benchmark_model, environment
from csnet.bench.runners import Runner, build_runner
from csnet.bench.timing import PeakMemory, Timing, load_average, measure

__all__ = ["BenchConfig", "PeakMemory", "ROW_KEYS", "Runner", "Timing", "benchmark_model", "build_runner",
           "environment", "load_average", "measure"]
