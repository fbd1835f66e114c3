"""Read access to the DuckDB warehouse, which only dbt writes.

DuckDB allows one writer process per file, and while a writer is open every other open
fails, read-only included. Python therefore opens short-lived read-only connections, and
only when no dbt run is active (Dagster's "warehouse" pool serialises the dbt assets).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb
    import pandas as pd


@contextmanager
def read_only(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection, closed on exit; a clear error when the file does not exist."""
    import duckdb

    from ml_platform.data.locks import warehouse_lock

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"warehouse: {path} does not exist yet (run the warehouse assets)")
    with warehouse_lock(path, shared=True):  # wait for a running dbt build, never fail on it
        con = duckdb.connect(str(path), read_only=True)
        try:
            yield con
        finally:
            con.close()


def query(path: Path, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
    """Run one read-only query and return the result as a DataFrame."""
    with read_only(path) as con:
        return con.execute(sql, params or []).df()


def existing_tables(path: Path) -> set[str]:
    with read_only(path) as con:
        rows = con.execute("select table_name from information_schema.tables").fetchall()
    return {r[0] for r in rows}


def row_counts(path: Path, tables: Iterable[str]) -> dict[str, int]:
    """Rows per table, in one connection; tables that do not exist are left out."""
    wanted = list(tables)
    with read_only(path) as con:
        present = {
            r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()
        }
        return {
            t: int(con.execute(f'select count(*) from "{t}"').fetchone()[0])
            for t in wanted
            if t in present
        }
