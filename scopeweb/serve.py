"""Start the web server, a Celery worker and Celery beat together (``make run``).

Ctrl-C (or SIGTERM) stops all three; if one of them dies, the others are stopped too, so the
product never runs half-started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from scopeweb.env import env_int, env_str

STOP_GRACE_S = 10


def _commands(host: str, port: int) -> dict[str, list[str]]:
    python = sys.executable
    return {
        "web": [python, "manage.py", "runserver", f"{host}:{port}", "--noreload"],
        "worker": [
            python, "-m", "celery", "-A", "scopeweb", "worker",
            "--queues", "default,analysis,ingest", "--concurrency", "1", "--loglevel", "INFO",
            "--hostname", "embedded@%h",
        ],
        "beat": [python, "-m", "celery", "-A", "scopeweb", "beat", "--loglevel", "INFO"],
    }  # fmt: skip


def main() -> int:
    host = env_str("SCOPEWEB_HOST", "127.0.0.1")
    port = env_int("SCOPEWEB_PORT", 8000, minimum=1, maximum=65535)
    children = {
        name: subprocess.Popen(command, start_new_session=True)
        for name, command in _commands(host, port).items()
    }
    shown = "localhost" if host in ("0.0.0.0", "::") else host  # noqa: S104
    print(f"\n  Scope Web is starting at http://{shown}:{port}/  (Ctrl-C stops it)\n", flush=True)

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                print(f"{name} exited with code {child.returncode}; stopping the rest.", flush=True)
                exit_code = child.returncode or 1
                stopping = True
                break
        time.sleep(0.5)
    print("Stopping web, worker and beat…", flush=True)
    for child in children.values():
        if child.poll() is None:
            # The leader only: Celery's main process shuts its pool down warmly itself.
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
    print("Scope Web stopped.", flush=True)
    return exit_code


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scopeweb.settings")
    sys.exit(main())
