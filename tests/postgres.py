"""A private PostgreSQL cluster for tests: initdb into a temporary directory, `pg_ctl start` on a
free loopback port, one database created with asyncpg, `pg_ctl stop` at the end.

The server binaries are Debian's (`apt-get install postgresql`, which .ci/run does) or any found
by `pg_config --bindir` / on PATH. initdb and postgres refuse to run as root, so as root they run
as `nobody`, in a data directory owned by it (outside pytest's tmp dirs, which are root's 0700).
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.project import free_port

SUPERUSER = "kiln"
PASSWORD = "kiln-test"  # noqa: S105 (a throw-away cluster on loopback)


def find_bindir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, or None when they are not installed."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)  # newest first
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(out.stdout.strip())
    if initdb := shutil.which("initdb"):
        candidates.append(str(Path(initdb).parent))
    for candidate in candidates:
        if candidate and all((Path(candidate) / b).is_file() for b in ("initdb", "pg_ctl")):
            return Path(candidate)
    return None


@dataclass
class PostgresCluster:
    bindir: Path
    data_dir: Path
    port: int
    run_as: tuple[int, int] | None  # (uid, gid) when the server runs as `nobody`

    def url(self, database: str, driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://{SUPERUSER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 120) -> None:
        kw = {"user": self.run_as[0], "group": self.run_as[1], "extra_groups": []} \
            if self.run_as else {}
        proc = subprocess.run([str(self.bindir / args[0]), *args[1:]], capture_output=True,
                              text=True, timeout=timeout, check=False, cwd=self.data_dir.parent,
                              **kw)
        if proc.returncode != 0:
            log = self.data_dir.parent / "postgres.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} exited {proc.returncode}: {proc.stdout}{proc.stderr}"
                               f"\n--- server log\n{tail}")

    def start(self) -> None:
        self._run("pg_ctl", "start", "-w", "-t", "120", "-D", str(self.data_dir),
                  "-l", str(self.data_dir.parent / "postgres.log"),
                  "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 "
                        f"-c unix_socket_directories='{self.data_dir.parent}' -c fsync=off")

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir))

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name`; returns its SQLAlchemy URL for Prefect (asyncpg driver)."""
        asyncio.run(self.execute("postgres", f'CREATE DATABASE "{name}"'))
        return self.url(name)

    async def execute(self, database: str, sql: str, *args: object) -> list:
        import asyncpg  # noqa: PLC0415 (Prefect's PostgreSQL driver)

        conn = await asyncpg.connect(self.url(database, driver="postgresql"))
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    def query(self, database: str, sql: str, *args: object) -> list:
        return asyncio.run(self.execute(database, sql, *args))


def start_cluster(bindir: Path) -> PostgresCluster:
    """initdb a new cluster (password auth on loopback) and start it on a free port."""
    root = Path(tempfile.mkdtemp(prefix="kiln-pg-"))
    run_as = None
    if os.geteuid() == 0:  # initdb: "cannot be run as root"
        nobody = pwd.getpwnam("nobody")
        run_as = (nobody.pw_uid, nobody.pw_gid)
        os.chown(root, *run_as)
    cluster = PostgresCluster(bindir, root / "data", free_port(), run_as)
    password_file = root / "pwfile"
    password_file.write_text(PASSWORD + "\n")
    if run_as:
        os.chown(password_file, *run_as)
    cluster._run("initdb", "-D", str(cluster.data_dir), "-U", SUPERUSER,
                 f"--pwfile={password_file}", "--auth-host=scram-sha-256",
                 "--auth-local=trust", "-E", "UTF8", "--no-sync")
    cluster.start()
    return cluster


def remove_cluster(cluster: PostgresCluster) -> None:
    try:
        cluster.stop()
    finally:
        shutil.rmtree(cluster.data_dir.parent, ignore_errors=True)
