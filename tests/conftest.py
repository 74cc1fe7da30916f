"""Shared fixtures: one real Prefect server per test session, on a free loopback port."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from flows.prefect_server import PrefectServer, start_server
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
