"""A warehouse writer for the race test, in a module light enough for ``spawn`` children
(importing the test module itself would pull in Dagster and pandas in every child)."""

from __future__ import annotations

from pathlib import Path

ROWS = 20_000


def writer(path: str, worker: int, rounds: int, use_lock: bool, barrier, errors) -> None:
    """Like a dbt build: open read-write, replace this worker's rows, commit, close."""
    import duckdb

    from ml_platform.data.locks import warehouse_lock

    barrier.wait()
    for i in range(rounds):
        try:
            if use_lock:
                with warehouse_lock(Path(path), timeout=60):
                    _write_once(duckdb, path, worker, i)
            else:
                _write_once(duckdb, path, worker, i)
        except Exception as exc:  # noqa: BLE001 - report any failure to the parent
            errors.put(f"worker {worker} round {i}: {type(exc).__name__}: {exc}")


def _write_once(duckdb, path: str, worker: int, i: int) -> None:
    con = duckdb.connect(path)
    try:
        con.execute("CREATE TABLE IF NOT EXISTS facts (worker INT, round INT, n INT)")
        con.execute("BEGIN")
        con.execute("DELETE FROM facts WHERE worker = ? AND round = ?", [worker, i])
        con.execute("INSERT INTO facts SELECT ?, ?, range FROM range(?)", [worker, i, ROWS])
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    finally:
        con.close()
