"""A bounded HTTP/1.1 load generator on raw asyncio streams (loopback only).

httpx spends more CPU per request than the endpoints it measures, and on a two-core machine
that inflates every latency; this client only writes a request and reads the response
(Content-Length framing, keep-alive), so the server is what gets measured.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from leadflow.services.ports import wait_for_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    status_codes: dict[int, int]
    p95_ms: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def _encode(method: str, host: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


def run_load(base_url: str, make_request: Callable[[int], tuple[str, dict[str, str], bytes]], total: int,
             concurrency: int, method: str = "POST") -> LoadResult:
    """Send ``total`` requests (POST by default) over ``concurrency`` keep-alive connections.

    Requests are encoded before timing starts."""
    prefix = "http://127.0.0.1:"
    assert base_url.startswith(prefix), "load is only ever sent to loopback"
    port = int(base_url[len(prefix):])
    payloads = [_encode(method, f"127.0.0.1:{port}", *make_request(i)) for i in range(total)]

    async def main() -> LoadResult:
        latencies: list[float] = []
        codes: dict[int, int] = {}
        queue = iter(payloads)

        async def worker() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                for payload in queue:
                    started = time.perf_counter()
                    writer.write(payload)
                    status = await _read_response(reader)
                    latencies.append((time.perf_counter() - started) * 1000)
                    codes[status] = codes.get(status, 0) + 1
            finally:
                writer.close()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        latencies.sort()
        return LoadResult(total, seconds, latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99) - 1],
                          codes, latencies[int(len(latencies) * 0.95) - 1])

    return asyncio.run(main())


def start_server(cmd: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """Start a server under test from the repository root; returns once it listens on ``port``."""
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if not wait_for_port("127.0.0.1", port, timeout=60):
        proc.kill()
        raise RuntimeError(f"{cmd} did not listen: {proc.stderr.read().decode() if proc.stderr else ''}")
    return proc
