"""The batched rules qualifier: the same answers as one-by-one, read together under concurrency."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

from leadflow.qualification.batcher import QualifyBatcher, Request
from leadflow.qualification.rules import qualify
from leadflow.qualification.schema import Qualification
from leadflow.qualification.turns import Turn

CONVERSATIONS: list[tuple[tuple[Turn, ...], str | None]] = [
    ((Turn("lead", "hola, busco depto en ñuñoa para comprar"), Turn("lead", "3 dormitorios, hasta 5.000 UF")), "CL"),
    ((Turn("lead", "busco departamento en renta en la condesa, 2 recámaras, 25 mil pesos al mes"),), "MX"),
    ((Turn("lead", "quiero invertir en palermo, tengo 120 mil dólares"), Turn("agent", "¿Cuántos ambientes?"),
      Turn("lead", "dos")), "AR"),
    ((Turn("lead", "I'm looking to buy a 3 bedroom house in Austin, budget $450k, pre-approved"),), "US"),
    ((Turn("lead", "vendo mi piso en chamberí"),), "ES"),
    ((Turn("lead", "tengo dicom, igual puedo comprar? busco casa en maipú"),), "CL"),
    ((), "CL"),
]


def test_concurrent_callers_get_what_the_rules_give_each_alone() -> None:
    batcher = QualifyBatcher()
    alone = [qualify(turns, country) for turns, country in CONVERSATIONS]
    jobs = CONVERSATIONS * 12
    with ThreadPoolExecutor(32) as pool:
        got = list(pool.map(lambda job: batcher.qualify(*job), jobs))
    assert got == alone * 12
    assert batcher.requests == len(jobs)
    assert alone[0].locations == ["ñuñoa"] and alone[0].bedrooms_min == 3


def test_requests_waiting_together_are_read_in_one_pass_and_each_caller_owns_its_answer() -> None:
    batcher = QualifyBatcher()
    futures: list[Future[Qualification]] = []
    for turns, country in CONVERSATIONS * 3:  # queued before the reader starts: all waiting at once
        future: Future[Qualification] = Future()
        batcher._queue.put(((turns, country), future))
        futures.append(future)
    batcher._ensure_reader()
    answers = [f.result(timeout=60) for f in futures]
    assert batcher.batches == 1 and batcher.requests == len(futures)
    assert answers[0] == answers[len(CONVERSATIONS)] and answers[0] is not answers[len(CONVERSATIONS)]
    answers[0].locations.append("providencia")  # callers adjust their copy (the agent does)
    assert answers[len(CONVERSATIONS)].locations == ["ñuñoa"]


class _PassThatBreaks(QualifyBatcher):
    def _read_together(self, distinct: list[Request]) -> dict[Request, Qualification]:
        raise RuntimeError("a conversation broke the vectorised pass")


def test_a_pass_that_fails_is_redone_one_conversation_at_a_time() -> None:
    batcher = _PassThatBreaks()
    barrier = threading.Barrier(len(CONVERSATIONS))

    def ask(job: tuple[tuple[Turn, ...], str | None]) -> Qualification:
        barrier.wait(10)
        return batcher.qualify(*job)

    with ThreadPoolExecutor(len(CONVERSATIONS)) as pool:
        got = list(pool.map(ask, CONVERSATIONS))
    assert got == [qualify(turns, country) for turns, country in CONVERSATIONS]


def test_a_worker_process_reads_the_passes_and_gives_what_the_rules_give() -> None:
    batcher = QualifyBatcher()
    batcher.in_worker_process()
    try:
        alone = [qualify(turns, country) for turns, country in CONVERSATIONS]
        with ThreadPoolExecutor(32) as pool:
            got = list(pool.map(lambda job: batcher.qualify(*job), CONVERSATIONS * 6))
        assert got == alone * 6
        assert batcher.worker_restarts == 0
    finally:
        batcher.close()


def test_a_worker_process_that_dies_is_replaced_and_its_pass_is_read_in_the_callers_process() -> None:
    import os
    import signal

    batcher = QualifyBatcher()
    batcher.in_worker_process()
    try:
        worker = batcher._worker
        assert worker is not None
        [pid] = list(worker._processes)
        os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would
        turns, country = CONVERSATIONS[0]
        assert batcher.qualify(turns, country) == qualify(turns, country)
        assert batcher.worker_restarts == 1 and batcher._worker is not worker
        turns, country = CONVERSATIONS[1]
        assert batcher.qualify(turns, country) == qualify(turns, country)  # through the new worker
        assert batcher.worker_restarts == 1
    finally:
        batcher.close()


def test_the_worker_process_exits_when_its_agent_is_killed() -> None:
    import os
    import subprocess
    import sys
    import time

    script = ("import os, signal\n"
              "from leadflow.qualification.batcher import QualifyBatcher\n"
              "b = QualifyBatcher()\n"
              "b.in_worker_process()\n"
              "print(*b._worker._processes, flush=True)\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    parent = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert parent.returncode == -9, parent.stderr
    worker = int(parent.stdout.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{worker}"):
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{worker}"), "the worker outlived its killed agent"
