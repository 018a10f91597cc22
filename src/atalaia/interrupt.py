"""Ctrl-C that stops a training within a batch, at a clean point.

Python raises KeyboardInterrupt wherever the main thread happens to be, which inside TensorFlow can be in the
middle of a tf.data iterator or an optimizer step. Inside `defer_sigint()` (the training loops) the first
Ctrl-C only sets a flag; the loop calls `check_interrupt()` after every batch, which raises KeyboardInterrupt
there. If no batch ends within GRACE_SECONDS (the first batch compiles the graph), or on a second Ctrl-C, it
is raised at once, as Python would. Outside training, Ctrl-C behaves as usual.

The CLI turns the KeyboardInterrupt into "interrupted; finished stages are kept, run again to resume" and exit
status 130: a stage's DONE.json is only written when the stage finished, so nothing half-done is trusted.
"""

from __future__ import annotations

import _thread
import contextlib
import signal
import threading
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_state: dict[str, Any] = {"depth": 0, "pending": False, "previous": None}


#: How long the first Ctrl-C waits for a batch to end before interrupting anyway (a first batch can spend
#: many seconds compiling its graph).
GRACE_SECONDS = 1.0


def _handler(signum: int, frame: Any) -> None:
    if _state["pending"]:  # second Ctrl-C, or the grace period is over: do not wait for the batch to end
        raise KeyboardInterrupt
    _state["pending"] = True
    timer = threading.Timer(GRACE_SECONDS, _grace_over)
    timer.daemon = True
    timer.start()


def _grace_over() -> None:
    if _state["pending"]:
        _thread.interrupt_main(signal.SIGINT)  # runs _handler again in the main thread, which raises


def check_interrupt() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed since the training loop started (call between batches)."""
    if _state["pending"]:
        _state["pending"] = False
        raise KeyboardInterrupt


@contextlib.contextmanager
def defer_sigint() -> Iterator[None]:
    """Within the block, Ctrl-C waits for the next `check_interrupt()` (or the block's end). Re-entrant; a
    no-op outside the main thread or when SIGINT is ignored (a background job started by a shell)."""
    if threading.current_thread() is not threading.main_thread() or (
            _state["depth"] == 0 and signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, None)):
        yield
        return
    if _state["depth"] == 0:
        _state["previous"] = signal.signal(signal.SIGINT, _handler)
        _state["pending"] = False
    _state["depth"] += 1
    try:
        yield
    except BaseException:
        _leave()
        raise
    _leave()
    check_interrupt()  # a Ctrl-C after the last batch is not lost


def _leave() -> None:
    _state["depth"] -= 1
    if _state["depth"] == 0:
        signal.signal(signal.SIGINT, _state["previous"])


def interruptible(items: Iterable[T]) -> Iterator[T]:
    """`for epoch in interruptible(range(epochs))`: the loop body runs with Ctrl-C deferred to
    `check_interrupt()` (one line per batch in a hand-written training loop)."""
    with defer_sigint():
        yield from items


def keras_callback() -> Any:
    """A Keras callback that calls `check_interrupt()` after every training batch and epoch; use it with
    `fit` inside `defer_sigint()`."""
    import keras

    class StopOnInterrupt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            check_interrupt()

        def on_epoch_end(self, epoch, logs=None):
            check_interrupt()

    return StopOnInterrupt()


__all__ = ["check_interrupt", "defer_sigint", "interruptible", "keras_callback"]
