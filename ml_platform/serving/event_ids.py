"""The derived event id of one request, on the request path, without a DataFrame.

A schema may derive its event id (``event_id.derive_from``): validation gives every lake row
``derive_event_ids`` — 63 bits of pandas' row hash of those columns in their declared dtypes.
The service must give a request the very same id (the prediction log joins the lake's labels
on it), but building and parsing a one-row DataFrame costs about 3 ms a request. A request's
values are already typed by its pydantic model (str, int, naive-UTC datetime), so each is
hashed as a one-element array of the dtype validation gives the column, and the column
hashes are combined as ``hash_pandas_object`` combines a frame's (a test proves both equal).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from pandas.core.util.hashing import combine_hash_arrays
from pandas.util import hash_array

if TYPE_CHECKING:
    from ml_platform.use_cases.loader import UseCase

#: numpy dtype of a derive_from column's one-element array, by declared type
_ARRAY_DTYPES = {"int": np.int64, "float": np.float64, "datetime": "datetime64[ns]"}


def _array(value: Any, kind: str) -> np.ndarray:
    if kind == "string":
        return np.array([str(value)], dtype=object)
    return np.array([value], dtype=_ARRAY_DTYPES[kind])


def event_id_function(use_case: UseCase) -> Callable[[Mapping[str, Any]], int | str] | None:
    """``record -> event id`` for a schema that derives its id, else None (the request
    carries it). Equal to ``validation.derive_event_ids`` of the same valid values."""
    event_id = use_case.spec.event_schema.event_id
    columns = tuple(event_id.derive_from or ())
    if not columns:
        return None
    kinds = tuple(use_case.columns[c] for c in columns)
    as_text = event_id.type == "string"
    shift = np.uint64(1)

    def derive(record: Mapping[str, Any]) -> int | str:
        hashes = (
            hash_array(_array(record[c], k), categorize=False)
            for c, k in zip(columns, kinds, strict=True)
        )
        h = int(combine_hash_arrays(hashes, len(columns))[0] >> shift)
        return f"{h:016x}" if as_text else h

    return derive
