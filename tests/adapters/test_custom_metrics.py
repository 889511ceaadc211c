"""Metric calls off the request path: in order, on one thread, never failing the step that made them."""

from __future__ import annotations

import threading

from pipeline_models.triton.custom_metrics import DEFERRED, _Deferred
from tests.adapters.fake_pb_utils import Logger


def test_deferred_calls_run_in_order_on_one_other_thread_and_flush_waits_for_them():
    deferred = _Deferred()
    seen: list[tuple[float, str]] = []
    gate = threading.Event()

    def slow(value: float) -> None:
        gate.wait(5)
        seen.append((value, threading.current_thread().name))

    deferred.call(slow, 1.0)
    deferred.call(lambda v: seen.append((v, threading.current_thread().name)), 2.0)
    assert seen == [], "the caller does not wait"
    gate.set()
    deferred.flush()
    assert seen == [(1.0, "metrics"), (2.0, "metrics")]


def test_a_failing_call_is_logged_and_the_next_still_runs():
    deferred = _Deferred()
    seen: list[float] = []

    def broken(value: float) -> None:
        raise RuntimeError("server gone")

    deferred.call(broken, 1.0)
    deferred.call(seen.append, 2.0)
    deferred.flush()
    assert seen == [2.0] and ("warn", "metrics: server gone") in Logger.messages


def test_the_models_share_one_thread():
    names = []
    for _ in range(3):
        DEFERRED.call(lambda v: names.append(threading.current_thread().ident), 0.0)
    DEFERRED.flush()
    assert len(set(names)) == 1 and names[0] != threading.get_ident()
