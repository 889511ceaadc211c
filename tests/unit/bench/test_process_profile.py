"""The benchmarks' CPU accounting of a server's processes and py-spy's summary."""

from __future__ import annotations

import os
from pathlib import Path

from bench.process_profile import (
    cpu_shares,
    cpu_snapshot,
    format_shares,
    process_cpu_seconds,
    py_spy_report,
    start_py_spy,
    top_frames,
)
from bench.triton_stats import model_stats


def test_process_cpu_seconds_reads_utime_and_stime(tmp_path: Path) -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    (tmp_path / "7").mkdir()
    # pid (comm with ") " in it) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    (tmp_path / "7" / "stat").write_text(f"7 (a) b) S 1 7 7 0 -1 0 0 0 0 0 {3 * ticks} {ticks} 0 0 20 0 1 0\n")
    assert process_cpu_seconds(7, tmp_path) == 4.0
    assert process_cpu_seconds(8, tmp_path) == 0.0, "a process that is gone used nothing"
    assert cpu_snapshot({"tracker_0_0": 7, "gone": 8}, tmp_path) == {"tracker_0_0": 4.0, "gone": 0.0}


def test_cpu_shares_are_cores_over_the_interval() -> None:
    shares = cpu_shares({"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 2.5, "new": 1.0}, seconds=2.0)
    assert shares == {"a": 1.0, "b": 0.25, "new": 0.5}
    assert format_shares(shares) == "a 1.00, new 0.50, b 0.25"
    assert cpu_shares({"a": 1.0}, {"a": 2.0}, seconds=0) == {}


def test_top_frames_counts_the_innermost_frame() -> None:
    raw = "\n".join([
        "execute (model.py:10);assign (identity_step.py:20);match (identities.py:5) 30",
        "execute (model.py:10);assign (identity_step.py:20) 10",
        "execute (model.py:10);match (identities.py:5) 20",
        "garbage line",
    ])  # fmt: skip
    assert top_frames(raw, 2) == [("match (identities.py:5)", 50 / 60), ("assign (identity_step.py:20)", 10 / 60)]
    # As shares of the wall time's samples: 200 samples, 50 in match.
    assert top_frames(raw, 1, samples=200) == [("match (identities.py:5)", 0.25)]


FAKE_PY_SPY = """#!/bin/sh
# py-spy record --pid PID ... --output FILE: samples for pid 1, a refusal for any other
while [ $# -gt 0 ]; do
    case "$1" in --pid) pid=$2; shift ;; --output) out=$2; shift ;; esac
    shift
done
if [ "$pid" = 1 ]; then echo "run (model.py:1) 50" > "$out"; echo "Wrote raw traces to $out"; exit 0; fi
echo "Error: Permission Denied: Try running again with elevated permissions" >&2
exit 1
"""


def test_a_stub_py_spy_cannot_record_is_reported_with_what_py_spy_said(tmp_path: Path, monkeypatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "py-spy").write_text(FAKE_PY_SPY)
    (bin_dir / "py-spy").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    spies = start_py_spy({"tritonserver": 9, "tracker_0_0": 1, "reid_0_0": 2}, 1, tmp_path / "spy")
    assert len(spies) == 2 and [spy.wait(timeout=10) for spy in spies] == [0, 1]
    report = py_spy_report(tmp_path / "spy", seconds=1)
    assert report.splitlines() == [
        "    reid_0_0: py-spy recorded nothing: Error: Permission Denied: Try running again with elevated permissions",
        "    tracker_0_0: 50% run (model.py:1)",
    ]


def test_without_py_spy_on_path_nothing_is_started(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert start_py_spy({"tracker_0_0": 1}, 1, tmp_path / "spy") == []


class _Client:
    def get_inference_statistics(self, as_json: bool) -> dict:
        batch = {"compute_input": {"ns": "1"}, "compute_infer": {"ns": "10"}, "compute_output": {"ns": "2"}}
        return {"model_stats": [{
            "name": "identities", "execution_count": "2",
            "inference_stats": {"success": {"count": "3"}, "compute_infer": {"ns": "30"}},
            "batch_stats": [{"batch_size": "1", **batch}, {"batch_size": "2", **batch}],
        }]}  # fmt: skip


def test_busy_time_sums_the_executions_not_the_requests() -> None:
    stats = model_stats(_Client())["identities"]  # type: ignore[arg-type]
    assert (stats.requests, stats.executions, stats.compute_infer_ns, stats.busy_ns) == (3, 2, 30, 26)


def test_metric_total_sums_every_label_set_of_that_metric_only(tmp_path: Path) -> None:
    import http.server
    import threading

    from bench.triton_stats import metric_total

    body = (
        "# TYPE pipeline_identities_created_total counter\n"
        'pipeline_identities_created_total{model="identities",version="1"} 12\n'
        "pipeline_identities_created_total 3\n"
        "pipeline_identities_created_total_other 100\n"
    ).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert metric_total(f"http://127.0.0.1:{server.server_port}/metrics", "pipeline_identities_created_total") == 15
    finally:
        server.shutdown()
