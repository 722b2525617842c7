"""One guard for every per-record step: a record that raises, hangs or exhausts memory is
refused with a reason naming the failure, and the night goes on for every other record.

Steps over values already in memory (hashing a file the store has checked, encoding a batch)
run under :func:`guarded`: any exception becomes a reason. Steps that parse a hostile file
(reading, decoding, conditioning, measuring intervals) run in decoder processes (``pebble``)
under a :class:`Budget`: a record that runs past its time is stopped by killing its process,
which is replaced; a record that allocates past its memory fails its allocation there
(``RLIMIT_AS``), and a codec that crashes takes only its own process down. A header claiming
10^10 samples, a decompression bomb or a read that never ends costs one record, never a night.

Reasons name the step and the error type, never the error's message: messages quote paths and
values, which can carry a patient's name or MRN.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import sys
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import numpy as np
from pebble import ProcessExpired, ProcessPool

from pipeline.embed.records import RecordError

IN_FLIGHT_PER_WORKER = 16  # records queued ahead of each decoder process


@dataclass(frozen=True)
class Budget:
    """What one record may cost a decoder process: wall-clock seconds and memory growth (MB)."""

    seconds: float = 60.0
    memory_mb: int = 2048

    @classmethod
    def from_settings(cls, settings) -> Budget:
        return cls(seconds=settings.record_seconds, memory_mb=settings.record_memory_mb)


def failure_reason(step: str, error: BaseException, budget: Budget | None = None) -> str:
    """The quarantine reason of a step that raised ``error``.

    >>> failure_reason("ECG decoding", ZeroDivisionError("float division by zero /p/DOE_JOHN.hea"))
    'ECG decoding failed (ZeroDivisionError)'
    """
    if isinstance(error, RecordError):
        return error.reason
    if isinstance(error, MemoryError):
        limit = f" {budget.memory_mb:,} MB" if budget else ""
        return f"{step} exceeded its{limit} memory budget"
    return f"{step} failed ({type(error).__name__})"


def guarded(step: str, function: Callable, *args) -> tuple[Any, str | None]:
    """``(function(*args), None)``, or ``(None, reason)`` whatever it raised."""
    try:
        return function(*args), None
    except Exception as error:  # noqa: BLE001 - the guard: any failure is the record's, not the night's
        return None, failure_reason(step, error)


def _run(step: str, function: Callable, item, budget: Budget) -> tuple[Any, str | None]:
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # a hostile file's overflow warnings are not the log's business
            return function(item), None
    except Exception as error:  # noqa: BLE001 - as in guarded, inside the decoder process
        return None, failure_reason(step, error, budget)


def _decoder_process(memory_mb: int) -> None:
    """Start of a decoder process: one thread for torch (a forked OpenMP pool would hang) and an
    address-space limit of what the process holds now plus the budget."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    try:
        with open("/proc/self/status") as status:
            size_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
        limit = size_kb * 1024 + memory_mb * 2**20
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    except (OSError, StopIteration, ValueError):  # not Linux: the time budget still holds
        pass


def _ended(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            pass
    return f"exit code {code}"


class Isolated:
    """Decoder processes that run one function per record under a :class:`Budget`.

    >>> with Isolated(Budget(seconds=5), workers=1) as isolated:
    ...     list(isolated.results("parsing", int, ["7", "x"]))
    [(0, 7, None), (1, None, 'parsing failed (ValueError)')]
    """

    def __init__(self, budget: Budget = Budget(), workers: int = 1):
        self.budget, self.workers = budget, max(1, int(workers))
        self._pool: ProcessPool | None = None

    def __enter__(self) -> Isolated:
        context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        # A Celery worker runs each Airflow task in a daemonic process, which multiprocessing
        # forbids to start children; the decoders are stopped in __exit__, so they never outlive it.
        self._daemonic = multiprocessing.current_process().daemon
        multiprocessing.current_process().daemon = False
        self._pool = ProcessPool(max_workers=self.workers, initializer=_decoder_process,
                                 initargs=(self.budget.memory_mb,), context=context)
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._pool.stop()
            self._pool.join()
        finally:
            multiprocessing.current_process().daemon = self._daemonic

    def results(self, step: str, function: Callable, items: Iterable) -> Iterator[tuple[int, Any, str | None]]:
        """``(index, value, reason)`` per item, in order; ``function`` must be picklable (a
        module-level function or a ``functools.partial`` of one)."""
        pending: deque = deque()
        queue = iter(enumerate(items))
        window = self.workers * IN_FLIGHT_PER_WORKER

        def refill() -> None:
            while len(pending) < window:
                entry = next(queue, None)
                if entry is None:
                    return
                index, item = entry
                pending.append((index, self._pool.schedule(_run, args=(step, function, item, self.budget),
                                                           timeout=self.budget.seconds)))

        refill()
        while pending:
            index, future = pending.popleft()
            try:
                value, reason = future.result()
            except FutureTimeout:
                value, reason = None, f"{step} exceeded its {self.budget.seconds:g} s time budget"
            except ProcessExpired as error:
                value, reason = None, f"{step} stopped its decoder process ({_ended(error.exitcode)})"
            except Exception as error:  # noqa: BLE001 - e.g. a result that cannot be sent back
                value, reason = None, failure_reason(step, error, self.budget)
            yield index, value, reason
            refill()
