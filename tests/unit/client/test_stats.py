"""Latency percentiles and the run summary."""

from __future__ import annotations

import math

import pytest

from pipeline_client.stats import CameraSummary, format_summary, percentiles_ms, summarize


def test_percentiles_of_known_values() -> None:
    latencies = [i / 1000.0 for i in range(1, 101)]  # 1 .. 100 ms
    p50, p99 = percentiles_ms(latencies)
    assert p50 == pytest.approx(50.5)
    assert p99 == pytest.approx(99.01)


def test_percentiles_single_and_unsorted() -> None:
    assert percentiles_ms([0.004]) == pytest.approx((4.0, 4.0))
    assert percentiles_ms([0.030, 0.010, 0.020], (0, 50, 100)) == pytest.approx((10.0, 20.0, 30.0))


def test_percentiles_empty_is_nan() -> None:
    assert all(math.isnan(v) for v in percentiles_ms([]))


def test_summarize_totals() -> None:
    cams = [CameraSummary(1, 10, 1, 0, 4), CameraSummary(2, 10, 0, 2, 5)]
    summary = summarize([0.01] * 20, 4.0, cams)
    assert summary.frames == 20
    assert summary.fps == pytest.approx(5.0)
    assert summary.errors == 1
    assert summary.p50_ms == pytest.approx(10.0)
    text = format_summary(summary)
    assert "frames: 20" in text and "frames/s: 5.0" in text
    assert "camera 2: frames 10  distinct IDs 5  errors 0  sequence restarts 2" in text
