"""Ctrl-C inside a training loop waits for the batch to end, but never more than the grace period."""

from __future__ import annotations

import signal
import time

import pytest

from atalaia import interrupt
from atalaia.interrupt import check_interrupt, defer_sigint, interruptible


def test_first_ctrl_c_waits_for_the_batch_boundary():
    before = signal.getsignal(signal.SIGINT)
    batches = 0
    with pytest.raises(KeyboardInterrupt):
        with defer_sigint():
            signal.raise_signal(signal.SIGINT)
            batches += 1  # the rest of the batch still runs
            check_interrupt()
            batches += 1
    assert batches == 1
    assert signal.getsignal(signal.SIGINT) is before


def test_grace_period_then_as_python_would(monkeypatch):
    monkeypatch.setattr(interrupt, "GRACE_SECONDS", 0.2)
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        with defer_sigint():
            signal.raise_signal(signal.SIGINT)
            while time.perf_counter() - t0 < 5:  # a batch that never ends (a graph compiling)
                time.sleep(0.01)
    assert time.perf_counter() - t0 < 2


def test_second_ctrl_c_is_immediate_and_loops_check():
    seen = []
    with pytest.raises(KeyboardInterrupt):
        for ep in interruptible(range(3)):
            seen.append(ep)
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)  # raises here, mid-batch
            seen.append("after")
    assert seen == [0]


def test_a_ctrl_c_after_the_last_batch_is_not_lost():
    with pytest.raises(KeyboardInterrupt):
        with defer_sigint():
            signal.raise_signal(signal.SIGINT)
    with defer_sigint():
        pass  # and the flag does not leak into the next loop


def test_ignored_sigint_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with defer_sigint():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
