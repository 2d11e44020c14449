"""The tests' fake LLM (OpenAI's chat completions) in a process of its own, for the agent bench.

In the bench's own process it shared one GIL with the load generator's hundreds of threads, so a
scripted 800 ms answer came back later than 800 ms under load and the bench charged the delay to the
agent. Run as ``python -m bench.fake_llm_process DELAY_MS CALLS``: prints its URL, serves until its
standard input closes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start(delay_ms: int, calls: int) -> tuple[subprocess.Popen[str], str]:
    """The process and its base URL (for ``LEADFLOW_OPENAI_BASE_URL``, add ``/v1``)."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.fake_llm_process", str(delay_ms), str(calls)], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        raise RuntimeError(f"the fake LLM did not start: {url!r}")
    return proc, url


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.stdin is not None:
        proc.stdin.close()
    proc.wait(30)


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from tests.fake_llm import FakeLLM, ok

    delay_ms, calls = int(sys.argv[1]), int(sys.argv[2])
    fake = FakeLLM(keep_alive=True).start()
    answer = ok(reply="Perfecto, ¿cuántos dormitorios necesitas?", action="ask", asks="bedrooms")
    answer.delay_s = delay_ms / 1000
    fake.script("openai", *[answer] * calls)
    print(fake.url, flush=True)
    sys.stdin.read()
    fake.stop()


if __name__ == "__main__":
    main()
