"""The watchdog's decisions (``pipeline_server.watchdog.decide`` and friends), table-driven, no server."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline_server.watchdog import (
    RESTART_MODEL,
    RESTART_SERVER,
    RESUME,
    Action,
    Snapshot,
    Stub,
    Watchdog,
    decide,
    exit_status,
    expected_instances,
    fatal_signal,
    over_budget,
    parse_stub,
)

EXPECTED = {
    "preprocess_0_0": "preprocess",
    "detector_0_0": "detector",
    "tracker_0_0": "tracker",
    "tracker_0_1": "tracker",
}


def stubs(**states: str) -> tuple[Stub, ...]:
    """Every expected instance in state ``S`` unless named (a state of ``None`` leaves it out)."""
    pids = {name: 100 + i for i, name in enumerate(EXPECTED)}
    out = []
    for instance, model in EXPECTED.items():
        state = states.get(instance, "S")
        if state is not None:
            out.append(Stub(pids[instance], model, instance, state))
    return tuple(out)


PID = {name: 100 + i for i, name in enumerate(EXPECTED)}

CASES = [
    # (case, server state, stub states, blocked since, now, expected actions)
    ("all well", "S", {}, {}, 10.0, []),
    ("all well, one running", "R", {"detector_0_0": "R"}, {}, 10.0, []),
    (
        "stub gone",
        "S",
        {"detector_0_0": None},
        {},
        10.0,
        [Action(RESTART_MODEL, "stub detector_0_0 is gone", "detector")],
    ),
    (
        "stub zombie",
        "S",
        {"preprocess_0_0": "Z"},
        {},
        10.0,
        [
            Action(
                RESTART_MODEL, f"stub preprocess_0_0 (pid {PID['preprocess_0_0']}) is a zombie", "preprocess"
            )
        ],
    ),
    (
        "stub stopped: resumed, not killed",
        "S",
        {"detector_0_0": "T"},
        {},
        10.0,
        [
            Action(
                RESUME,
                f"stub detector_0_0 (pid {PID['detector_0_0']}) is stopped",
                "detector",
                (PID["detector_0_0"],),
            )
        ],
    ),
    (
        "stub traced (debugger): killed first",
        "S",
        {"detector_0_0": "t"},
        {},
        10.0,
        [
            Action(
                RESTART_MODEL,
                f"stub detector_0_0 (pid {PID['detector_0_0']}) is traced",
                "detector",
                (PID["detector_0_0"],),
            )
        ],
    ),
    ("stub in D, just now", "S", {"detector_0_0": "D"}, {}, 10.0, []),
    ("stub in D below hang_s", "S", {"detector_0_0": "D"}, {PID["detector_0_0"]: 6.0}, 10.0, []),
    (
        "stub in D for hang_s",
        "S",
        {"detector_0_0": "D"},
        {PID["detector_0_0"]: 5.0},
        10.0,
        [
            Action(
                RESTART_MODEL,
                f"stub detector_0_0 (pid {PID['detector_0_0']}) hung in uninterruptible sleep for 5.0 s",
                "detector",
                (PID["detector_0_0"],),
            )
        ],
    ),
    ("stub left D: forgotten", "S", {"detector_0_0": "S"}, {PID["detector_0_0"]: 0.0}, 10.0, []),
    (
        "two instances of one model: one restart",
        "S",
        {"tracker_0_0": None, "tracker_0_1": "T"},
        {},
        10.0,
        [
            Action(
                RESTART_MODEL,
                f"stub tracker_0_0 is gone; stub tracker_0_1 (pid {PID['tracker_0_1']}) is stopped",
                "tracker",
                (PID["tracker_0_1"],),
            )
        ],
    ),
    (
        "two models",
        "S",
        {"preprocess_0_0": None, "detector_0_0": None},
        {},
        10.0,
        [
            Action(RESTART_MODEL, "stub detector_0_0 is gone", "detector"),
            Action(RESTART_MODEL, "stub preprocess_0_0 is gone", "preprocess"),
        ],
    ),
    (
        "server exited",
        None,
        {"detector_0_0": None},
        {},
        10.0,
        [Action(RESTART_SERVER, "tritonserver exited")],
    ),
    ("server zombie", "Z", {}, {}, 10.0, [Action(RESTART_SERVER, "tritonserver exited")]),
    (
        "server stopped",
        "T",
        {"detector_0_0": "T"},
        {},
        10.0,
        [Action(RESTART_SERVER, "tritonserver is stopped")],
    ),
]


@pytest.mark.parametrize(
    ("server", "states", "blocked", "now", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_decide(server, states, blocked, now, want) -> None:
    actions, _ = decide(EXPECTED, Snapshot(server, stubs(**states)), blocked, now, hang_s=5.0)
    assert actions == want


def test_a_stub_stopped_again_after_a_resume_is_killed_and_its_model_restarted() -> None:
    pid = PID["detector_0_0"]
    actions, _ = decide(EXPECTED, Snapshot("S", stubs(detector_0_0="T")), {}, 10.0, resumed={pid})
    assert actions == [
        Action(
            RESTART_MODEL,
            f"stub detector_0_0 (pid {pid}) is stopped again after a resume",
            "detector",
            (pid,),
        )
    ]


def test_a_stopped_stub_of_a_model_restarted_anyway_is_killed_not_resumed() -> None:
    actions, _ = decide(EXPECTED, Snapshot("S", stubs(tracker_0_0="Z", tracker_0_1="T")), {}, 10.0)
    assert [a.kind for a in actions] == [RESTART_MODEL] and actions[0].pids == (PID["tracker_0_1"],)


def test_blocked_since_is_kept_while_in_d_and_dropped_after() -> None:
    pid = PID["detector_0_0"]
    _, blocked = decide(EXPECTED, Snapshot("S", stubs(detector_0_0="D")), {}, 1.0)
    assert blocked == {pid: 1.0}
    _, blocked = decide(EXPECTED, Snapshot("S", stubs(detector_0_0="D")), blocked, 2.0)
    assert blocked == {pid: 1.0}, "the first time it was seen in D"
    _, blocked = decide(EXPECTED, Snapshot("S", stubs()), blocked, 3.0)
    assert blocked == {}


def test_an_unexpected_stub_is_ignored() -> None:
    extra = Stub(999, "other", "other_0_0", "T")
    actions, _ = decide(EXPECTED, Snapshot("S", stubs() + (extra,)), {}, 1.0)
    assert actions == []


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        (
            [
                "/x/backends/python/triton_python_backend_stub",
                "/repo/tracker/1/model.py",
                "triton_4652_18100_90e5",
                "16777216",
                "16777216",
                "4654",
                "/x/backends/python",
                "336",
                "tracker_0_0",
                "DEFAULT",
            ],
            Stub(7, "tracker", "tracker_0_0", "S", "triton_4652_18100_90e5"),
        ),
        (["/usr/bin/python3", "-m", "x"], None),
        (["/x/triton_python_backend_stub", "/repo/tracker/1/model.py"], None),
        ([], None),
    ],
)
def test_parse_stub(argv, want) -> None:
    assert parse_stub(7, argv, "S") == want


def test_expected_instances_leave_out_the_dead() -> None:
    snapshot = Snapshot("S", (Stub(1, "a", "a_0_0", "S"), Stub(2, "b", "b_0_0", "Z")))
    assert expected_instances(snapshot) == {"a_0_0": "a"}


@pytest.mark.parametrize(
    ("times", "now", "want"),
    [
        ([], 100.0, False),
        ([90.0, 95.0], 100.0, False),
        ([39.0, 90.0, 95.0], 100.0, False),  # the first is outside the 60 s window
        ([41.0, 90.0, 95.0], 100.0, True),
        ([99.0, 99.5, 99.9, 99.95], 100.0, True),
    ],
)
def test_over_budget(times, now, want) -> None:
    assert over_budget(times, now, limit=3, window_s=60.0) is want


@pytest.mark.parametrize(
    ("code", "said"),
    [(None, ""), (0, " (code 0)"), (1, " (code 1)"), (-6, " (signal SIGABRT)"), (-11, " (signal SIGSEGV)"),
     (-200, " (signal 200)")],
)  # fmt: skip
def test_exit_status_names_the_code_or_the_signal(code: int | None, said: str) -> None:
    assert exit_status(code) == said


def test_fatal_signal_is_read_from_tritonservers_own_handler_line() -> None:
    log = b'I1202 "successfully loaded"\nterminate called after throwing ...\nSignal (6) received.\n 0# 0x55 in x\n'
    assert fatal_signal(log) == 6
    assert fatal_signal(b"I1202 model printed: no Signal (6) received. mid-line\n") is None
    assert fatal_signal(b"") is None
    # a graceful stop logs the same line for SIGINT/SIGTERM: not a crash
    assert fatal_signal(b'I1202 "Started HTTPService"\nSignal (2) received.\nI1202 "Waiting for in-flight"\n') is None
    assert fatal_signal(b"Signal (15) received.\nSignal (11) received.\n") == 11


def fake_server(tmp_path: Path) -> SimpleNamespace:
    return SimpleNamespace(http_url="127.0.0.1:1", log_path=tmp_path / "tritonserver.log", pid=None)


def test_a_crash_logged_in_pieces_is_seen_and_stays_seen_for_the_lifetime(tmp_path: Path) -> None:
    server = fake_server(tmp_path)
    guard = Watchdog(server)  # type: ignore[arg-type]
    assert guard._crash() is None  # no log yet
    server.log_path.write_bytes(b"I1202 ready\n" + b"x" * 100 + b"\nSig")
    assert guard._crash() is None
    with server.log_path.open("ab") as log:
        log.write(b"nal (11) received.\n")  # the line completed after the last look
    assert guard._crash() == "tritonserver crashed (signal SIGSEGV logged)"
    assert guard._crash() == "tritonserver crashed (signal SIGSEGV logged)"


def test_a_repository_call_is_not_waited_for_once_the_server_crashed(tmp_path: Path) -> None:
    server = fake_server(tmp_path)
    server.log_path.write_bytes(b"I1202 ready\n")
    guard = Watchdog(server, poll_s=0.01)  # type: ignore[arg-type]
    release = threading.Event()

    def hung_load() -> None:  # like a load into a server that aborted and hangs in its signal handler
        with server.log_path.open("ab") as log:
            log.write(b"Signal (6) received.\n")
        release.wait(10)

    began = time.monotonic()
    with pytest.raises(RuntimeError, match=r"load tracker: tritonserver crashed \(signal SIGABRT logged\)"):
        guard._unless_crashed(hung_load, "load tracker")
    assert time.monotonic() - began < 2
    release.set()


def test_a_repository_calls_own_error_is_raised(tmp_path: Path) -> None:
    guard = Watchdog(fake_server(tmp_path), poll_s=0.01)  # type: ignore[arg-type]

    def refused() -> None:
        raise RuntimeError("/v2/repository/models/tracker/load: HTTP 400 failed to load")

    with pytest.raises(RuntimeError, match="HTTP 400"):
        guard._unless_crashed(refused, "load tracker")
