"""The agent bench's fake WhatsApp Cloud API in a process of its own.

It stamps each reply the moment its request arrives (``time.monotonic()``, one clock for every process on
Linux) and reports ``<recipient> <stamp>`` on its standard output. In the bench's process it shared one GIL
with the load generator's hundreds of threads, so a reply that had arrived waited there to be read and
stamped, and the bench charged the wait to the agent (the same reason ``fake_llm_process`` exists). Run as
``python -m bench.fake_whatsapp_process``: prints its URL, serves until its standard input closes.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from itertools import count
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from tests.local_http import LoopbackServer

    ids = count(1)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: with Nagle on, the body waits for the client's delayed
        # ACK (40 ms) on a kept-alive connection, which a dispatcher sending one at a time sees per send.
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            at = time.monotonic()
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            with lock:
                sys.stdout.write(f"{body.get('to')} {at!r}\n")
                sys.stdout.flush()
                message_id = next(ids)
            data = json.dumps({"messaging_product": "whatsapp", "messages": [{"id": f"wamid.b{message_id}"}]})
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data.encode())

    server = LoopbackServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    sys.stdin.read()
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
