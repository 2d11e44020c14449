"""The rules qualifier for many threads at once: concurrent requests are read in one vectorised pass.

One call of the rules qualifier costs about the same for one conversation as for fifty (some
hundred small polars queries; measured ~55 ms for one, ~1 ms each for fifty), so a process whose
threads each qualify one conversation — the lead agent answering hundreds of contacts — would spend
its cores on fixed costs and top out at a few dozen conversations a second. Here the threads hand
their conversation to one reader thread and wait; it takes everything waiting, qualifies it with
``qualify_frame`` and wakes each caller with its own answer. Nothing waits for a batch to fill: a
lone request is read at once, and requests that arrive while a batch is being read form the next
one, so batches grow exactly as fast as the load does.

``in_worker_process()`` moves the passes into a process of their own (the lead agent does so). A pass
hands the GIL back and forth at each of its ~120 polars queries, and in a process whose hundreds of
threads are waiting on the network, each hand-back waited its turn: under the agent bench a pass of
~30 conversations took 157 ms at the median and 681 ms at p95, against ~50 ms alone. In a worker the
pass keeps its own interpreter; the agent only pickles the turns over and the answers back. A worker
that dies is replaced, and the pass it was reading is redone in the agent's process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from leadflow.qualification.rules import messages_frame, qualifications, qualify, qualify_frame
from leadflow.qualification.schema import Qualification
from leadflow.qualification.turns import Turn

log = logging.getLogger(__name__)

Request = tuple[tuple[Turn, ...], str | None]


class QualifyBatcher:
    """``qualify(turns, country)`` from any thread; concurrent calls are read together."""

    def __init__(self, max_batch: int = 256) -> None:
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[Request, Future[Qualification]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._worker: ProcessPoolExecutor | None = None
        self.batches = 0
        self.requests = 0
        self.worker_restarts = 0

    def in_worker_process(self) -> None:
        """Read every later pass in a worker process (started now, and warmed: it imports polars and the
        rules before the first conversation waits on them)."""
        with self._lock:
            if self._worker is None:
                self._worker = _new_worker()
                self._worker.submit(read_many, [((Turn("lead", "hola"),), None)]).result()

    def close(self) -> None:
        """Stop the worker process, if any (passes then run in this process again)."""
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.shutdown(wait=True, cancel_futures=True)

    def qualify(self, turns: Sequence[Turn], country: str | None = None) -> Qualification:
        future: Future[Qualification] = Future()
        self._queue.put(((tuple(turns), country), future))
        self._ensure_reader()
        return future.result()

    def _ensure_reader(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._read, name="rules-qualifier", daemon=True)
                self._thread.start()

    def _read(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._answer(batch)

    def _answer(self, batch: list[tuple[Request, Future[Qualification]]]) -> None:
        self.batches += 1
        self.requests += len(batch)
        distinct = list(dict.fromkeys(request for request, _ in batch))  # the same conversation read once
        try:
            answers = self._read_together(distinct)
        except Exception:  # one conversation that breaks the pass must not fail the others: read them alone
            log.exception("batched rules qualification failed; qualifying %d conversations one by one", len(distinct))
            for request, future in batch:
                try:
                    future.set_result(qualify(*request))
                except Exception as exc:
                    future.set_exception(exc)
            return
        for request, future in batch:
            # Each caller gets its own copy: a Qualification is mutable and callers adjust theirs.
            future.set_result(answers[request].model_copy(deep=True))

    def _read_together(self, distinct: list[Request]) -> dict[Request, Qualification]:
        worker = self._worker
        if worker is None:
            return dict(zip(distinct, read_many(distinct), strict=True))
        try:
            answers = worker.submit(read_many, distinct).result()
        except BrokenProcessPool:
            # Killed (out of memory, a signal): a new worker for the next pass; this one is read here.
            log.warning("the rules qualifier's worker process died; starting another")
            with self._lock:
                if self._worker is worker:
                    self._worker = _new_worker()
                    self.worker_restarts += 1
            worker.shutdown(wait=False)
            answers = read_many(distinct)
        return dict(zip(distinct, answers, strict=True))


def read_many(distinct: Sequence[Request]) -> list[Qualification]:
    """One vectorised pass: each conversation's qualification, in order (module level: a worker runs it)."""
    rows = qualify_frame(messages_frame([(i, turns, country) for i, (turns, country) in enumerate(distinct)]))
    found = dict(zip(rows["conversation"].to_list(), qualifications(rows), strict=True))
    return [found[i] for i in range(len(distinct))]


def _new_worker() -> ProcessPoolExecutor:
    # spawn, not fork: the caller has threads (a forked child would inherit their locks mid-use)
    return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_follow_parent,
                               initargs=(os.getpid(),))


def _follow_parent(parent: int) -> None:
    """In the worker: exit when the process that started it is gone. A killed agent (SIGKILL, the OOM
    killer) cannot stop its worker, which would otherwise wait for passes forever."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="follow-parent", daemon=True).start()


_shared = QualifyBatcher()


def shared() -> QualifyBatcher:
    """The process's batcher, which ``qualify_batched`` uses."""
    return _shared


def qualify_batched(turns: Sequence[Turn], country: str | None = None) -> Qualification:
    """The process's shared batcher: the same answer as ``rules.qualify``, cheaper under concurrency."""
    return _shared.qualify(turns, country)
