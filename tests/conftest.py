"""Shared fixtures: one real Prefect server per test session, on a free loopback port."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from flows.prefect_server import PrefectServer, start_server
from tests.postgres import PostgresCluster, find_bindir, remove_cluster, start_cluster
from tests.project import GIT_IDENTITY, free_port

os.environ.update(GIT_IDENTITY)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A real `prefect server` process (SQLite in a temp home), stopped after the session."""
    home = tmp_path_factory.mktemp("prefect-home")
    server = start_server(home, free_port())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres() -> Iterator[PostgresCluster]:
    """A private PostgreSQL cluster (tests/postgres.py) on a free loopback port, removed after."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: "
                    "`apt-get install postgresql` (.ci/run does)")
    cluster = start_cluster(bindir)
    try:
        yield cluster
    finally:
        remove_cluster(cluster)
