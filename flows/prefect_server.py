"""Find or start the Prefect API: `kiln server` runs this and prints where the UI is.

Order: a `PREFECT_API_URL` that answers is used as it is (a shared server, the user's own);
otherwise a real `prefect server` process is started on the configured port, detached so the UI
stays up after the run. Its database is SQLite under `.kiln/prefect`, or the PostgreSQL database
of `KILN_PREFECT_DATABASE_URL` (`kiln server --database-url`), e.g.
`postgresql+asyncpg://kiln:secret@db-host:5432/prefect`: the choice for several workers and a
shared server (docs/workers.md). The in-process "ephemeral" server is
never used: on 2-core machines it logs `database is locked` errors.

This module must not import prefect: Prefect reads its settings when it is imported, so the API
URL has to be in the environment first.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("kiln.server")

DEFAULT_PORT = 4200
# Measured: a fresh server (new SQLite database, migrations) answers /api/health after ~9 s on
# 2 cores; 120 s leaves room for a loaded CI machine.
START_TIMEOUT_S = 120.0
PID_FILE = "server.pid"
DATABASE_URL_ENV = "KILN_PREFECT_DATABASE_URL"
URL_FILE = "server.url"  # the API URL of the server PID_FILE names (`kiln server --stop` asks it)
# Every flow run of a project carries these tags (`kiln run`, `kiln schedule`), so that one
# server can hold several projects: the UI filters runs by tag, and `kiln server --stop` finds
# another project's run in progress before it stops the server under it.
PROJECT_TAG = "kiln-project:"
PROJECT_DIR_TAG = "kiln-dir:"
ACTIVE_STATES = ("PENDING", "RUNNING")


@dataclass(frozen=True)
class PrefectServer:
    api_url: str
    ui_url: str
    pid: int | None  # None when the server was already running (not ours to stop)

    def stop(self) -> None:
        """Stop a server this module started (its whole process group)."""
        if self.pid is None:
            return
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                # Reap it if it is our child: an exited child stays a zombie (and "alive" to
                # killpg) until its parent waits for it.
                if os.waitpid(self.pid, os.WNOHANG)[0] == self.pid:
                    return
            except ChildProcessError:
                pass  # started by another process (`kiln server --stop`): nothing to reap
            try:
                os.killpg(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        os.killpg(self.pid, signal.SIGKILL)


def api_answers(api_url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout_s) as resp:  # noqa: S310 (http URL we built)
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redacted(database_url: str) -> str:
    """The URL without its password: `postgresql+asyncpg://kiln:***@host:5432/prefect`."""
    parts = urllib.parse.urlsplit(database_url)
    if parts.password is None:
        return database_url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def start_server(home: Path, port: int, host: str = "127.0.0.1",
                 database_url: str | None = None) -> PrefectServer:
    """Start `prefect server start` detached, with its own home and log; wait until healthy.

    `database_url` (default: `KILN_PREFECT_DATABASE_URL`): a PostgreSQL database for the server
    (Prefect's `PREFECT_SERVER_DATABASE_CONNECTION_URL`), instead of SQLite under `home`."""
    home.mkdir(parents=True, exist_ok=True)
    database_url = database_url or os.environ.get(DATABASE_URL_ENV) or None
    api_url = f"http://{host}:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_API_URL": api_url,  # so the UI finds its API on a non-default port
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
    }
    env.pop("PREFECT_API_URL", None)
    if database_url:
        if not database_url.startswith("postgresql+asyncpg://"):
            raise ValueError(f"{DATABASE_URL_ENV} must be a postgresql+asyncpg:// URL (Prefect's "
                             f"PostgreSQL driver), not {redacted(database_url)}")
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    log_path = home / "server.log"
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", host,
             "--port", str(port), "--analytics-off"],
            env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # detached: survives the CLI, stopped by PrefectServer.stop
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if api_answers(api_url, timeout_s=1.0):
            log.info("Prefect server started at %s (pid %d, log %s, database %s)", api_url,
                     proc.pid, log_path, redacted(database_url) if database_url else "SQLite")
            (home / PID_FILE).write_text(str(proc.pid))
            (home / URL_FILE).write_text(api_url)
            return PrefectServer(api_url, f"http://{host}:{port}", proc.pid)
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"prefect server exited with {proc.returncode}; log tail:\n{tail}")
        time.sleep(0.5)
    PrefectServer(api_url, "", proc.pid).stop()
    raise TimeoutError(f"prefect server did not answer {api_url}/health in {START_TIMEOUT_S} s")


def ensure_server(home: Path, port: int = DEFAULT_PORT) -> PrefectServer:
    """Use the configured API if it answers, else start a local server; export its URL."""
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        if api_answers(configured):
            ui_url = configured.removesuffix("/api")
            return PrefectServer(configured, ui_url, None)
        log.warning("PREFECT_API_URL=%s does not answer; starting a local server", configured)
    local = f"http://127.0.0.1:{port}/api"
    if api_answers(local):
        server = PrefectServer(local, f"http://127.0.0.1:{port}", None)
    else:
        server = start_server(home, port)
    os.environ["PREFECT_API_URL"] = server.api_url
    return server


def read_pid_file(home: Path) -> int | None:
    """The pid of the server `start_server` left running under `home`, if it still runs."""
    try:
        pid = int((home / PID_FILE).read_text().strip())
        os.killpg(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None
    return pid


def read_url_file(home: Path) -> str | None:
    """The API URL of the server `start_server` left running under `home` (None if unknown)."""
    try:
        return (home / URL_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def project_tags(name: str, project: Path) -> list[str]:
    """The tags of a project's flow runs: its name and its directory."""
    return [f"{PROJECT_TAG}{name}", f"{PROJECT_DIR_TAG}{project.resolve()}"]


@dataclass(frozen=True)
class ActiveRun:
    name: str
    id: str
    state: str
    project_dir: str | None  # from its `kiln-dir:` tag; None for a run that has none


def active_runs(api_url: str, timeout_s: float = 10.0) -> list[ActiveRun]:
    """The PENDING and RUNNING flow runs of the server (its REST API, no Prefect import)."""
    body = {"flow_runs": {"state": {"type": {"any_": list(ACTIVE_STATES)}}}, "limit": 200}
    request = urllib.request.Request(f"{api_url}/flow_runs/filter",  # noqa: S310 (http URL)
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as resp:  # noqa: S310
        runs = json.loads(resp.read())
    found = []
    for run in runs:
        dirs = [t.removeprefix(PROJECT_DIR_TAG) for t in run.get("tags") or []
                if t.startswith(PROJECT_DIR_TAG)]
        found.append(ActiveRun(run["name"], run["id"], run.get("state_type") or "",
                               dirs[0] if dirs else None))
    return found


def other_projects_runs(api_url: str, project: Path) -> list[ActiveRun]:
    """Runs in progress on the server that another Kiln project started (tagged with another
    directory). Untagged runs are not counted: they are no Kiln project's."""
    here = str(project.resolve())
    return [r for r in active_runs(api_url) if r.project_dir not in (None, here)]
