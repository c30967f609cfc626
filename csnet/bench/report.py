"""Plain-text tables of benchmark rows (the CLI prints them; the rows themselves are the data)."""
from __future__ import annotations

from typing import Any, Optional, Sequence

__all__ = ["format_rows", "format_end_to_end"]


def _num(value: Optional[float], fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_rows(rows: Sequence[dict[str, Any]]) -> str:
    """One line per (runtime, batch size): latency min/median/max, throughput, GFLOP/s, peak memory, check."""
    header = (f"{'runtime':<12} {'batch':>5} {'min ms':>9} {'median ms':>10} {'max ms':>9} {'img/s':>9} "
              f"{'GFLOP/s':>8} {'peak MB':>8} {'max|diff|':>9}  notes")
    lines = [header, "-" * len(header)]
    for row in rows:
        if row.get("median_ms") is None:
            lines.append(f"{row['runtime']:<12} {'-':>5}  {row.get('notes', '')}")
            continue
        notes = row.get("notes") or ""
        if row.get("first_call_s") and row["first_call_s"] > 5:
            notes = (notes + f"; first call {row['first_call_s']:.0f} s").lstrip("; ")
        lines.append(
            f"{row['runtime']:<12} {row['batch_size']:>5} {row['min_ms']:>9.2f} {row['median_ms']:>10.2f} "
            f"{row['max_ms']:>9.2f} {row['images_per_s']:>9.1f} {row['gflops_per_s']:>8.2f} "
            f"{_num(row.get('peak_mem_mb'), '.0f'):>8} {_num(row.get('max_abs_diff'), '.1e'):>9}  {notes}"
        )
    return "\n".join(lines)


def format_end_to_end(rows: Sequence[dict[str, Any]]) -> str:
    """Images/s per mode and where the time goes (ms per image per stage; thread-summed in parallel mode)."""
    lines = []
    for row in rows:
        stages = ", ".join(f"{k} {v:.2f}" for k, v in row["stage_ms_per_image"].items())
        workers = f", {row['workers']} workers" if row["workers"] else ""
        lines.append(f"{row['mode']:<10} {row['images']} images in {row['seconds']:.2f} s = "
                     f"{row['images_per_s']:.1f} images/s (batch {row['batch_size']}{workers})")
        lines.append(f"{'':<10} ms/image: {stages}")
    return "\n".join(lines)
