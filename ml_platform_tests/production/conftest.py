"""Fixtures for tests against the real PostgreSQL (127.0.0.1:5432) and Redis (:6379).

Each test gets its own databases (``mlp_test_<random>``, dropped after) or Redis key prefix
(deleted after). With ``CI=true`` an unreachable service FAILS the test; elsewhere it skips
with the reason, so a laptop without the services still runs the rest of the suite.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REDIS_URL = "redis://127.0.0.1:6379/0"


def unavailable(service: str, exc: BaseException) -> None:
    """Fail under CI (the service is part of the contract), skip elsewhere."""
    message = f"{service} unreachable: {type(exc).__name__}: {str(exc).strip()}"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _pg_admin():
    import psycopg2

    try:
        con = psycopg2.connect(dbname="postgres", connect_timeout=3, **PG)
    except psycopg2.OperationalError as exc:
        unavailable(f"PostgreSQL at {PG['host']}:{PG['port']}", exc)
    con.autocommit = True
    return con


def drop_database(name: str) -> None:
    con = _pg_admin()
    try:
        with con.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        con.close()


@dataclass
class PgDatabases:
    """Unique database names for one test; created by the code under test or the fixture."""

    dagster: str
    mlflow: str

    def exists(self, name: str) -> bool:
        con = _pg_admin()
        try:
            with con.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                return cur.fetchone() is not None
        finally:
            con.close()


@pytest.fixture
def pg_databases() -> Iterator[PgDatabases]:
    """Two fresh database names (not created yet); both dropped after the test."""
    _pg_admin().close()  # reachability first: skip/fail before anything else
    tag = secrets.token_hex(4)
    dbs = PgDatabases(dagster=f"mlp_test_{tag}_dagster", mlflow=f"mlp_test_{tag}_mlflow")
    yield dbs
    for name in (dbs.dagster, dbs.mlflow):
        drop_database(name)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A unique key prefix on the machine's Redis; every key under it is deleted after."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3, socket_timeout=5)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        unavailable(f"Redis at {REDIS_URL}", exc)
    prefix = f"mlp_test_{secrets.token_hex(4)}"
    yield prefix
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def production_settings(settings_env, pg_databases: PgDatabases, redis_prefix: str, tmp_path):
    """profile=production on this test's own databases, Redis prefix and DAGSTER_HOME."""

    def apply(**overrides: object):
        os.environ["DAGSTER_HOME"] = str(tmp_path / "dagster_home")
        return settings_env(
            profile="production",
            pg_host=PG["host"],
            pg_port=PG["port"],
            pg_user=PG["user"],
            pg_dagster_db=pg_databases.dagster,
            pg_mlflow_db=pg_databases.mlflow,
            redis_prefix=redis_prefix,
            dagster_home=tmp_path / "dagster_home",
            **overrides,
        )

    saved = os.environ.get("DAGSTER_HOME")
    yield apply
    if saved is None:
        os.environ.pop("DAGSTER_HOME", None)
    else:
        os.environ["DAGSTER_HOME"] = saved


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OwnRedis:
    """A private ``redis-server`` on a free loopback port that a test may stop and restart,
    so the machine's shared Redis is never disturbed."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.exceptions.ConnectionError as exc:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(
                        f"own redis-server on port {self.port} did not start"
                    ) from exc
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def own_redis(tmp_path) -> Iterator[OwnRedis]:
    import shutil

    if shutil.which("redis-server") is None:
        unavailable("redis-server binary", FileNotFoundError("redis-server not on PATH"))
    server = OwnRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def platform(session_dir: Path):
    """The serving tests' small real platform (lake, features, two trained candidates).

    Same root as ml_platform_tests/service uses, so one session builds it once (cached).
    """
    from ml_platform_tests.service.support import build_platform

    return build_platform(session_dir / "serving_platform")
