"""LightGBM's single-row fast path for the real-time API.

``Booster.predict`` on one row spends most of its ~80 µs building a predictor and
parsing parameters, not walking the trees. LightGBM's C API keeps that set-up in a
``FastConfig`` handle (``LGBM_BoosterPredictForMatSingleRowFastInit``) so one row costs
the tree walk plus one ctypes call. Same trees, same iteration range, same output
transform: the scores are bit-identical to ``Booster.predict`` (asserted in the tests).

The handle is freed by :meth:`SingleRowPredictor.close` or when the predictor is garbage
collected (after a model swap), never before its booster.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import weakref
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_C_API_PREDICT_NORMAL = 0  # LightGBM's C_API_PREDICT_NORMAL (transformed score)
_C_API_DTYPE_FLOAT64 = 1  # LightGBM's C_API_DTYPE_FLOAT64


def _free(lib: Any, handle: ctypes.c_void_p, booster: Any) -> None:
    """Finalizer: ``booster`` is held here so it outlives the handle that points into it."""
    if handle.value:
        lib.LGBM_FastConfigFree(handle)
        handle.value = None
    del booster


class SingleRowPredictor:
    """One booster's single-row predictor; thread-safe (calls are serialised by a lock)."""

    def __init__(self, booster: Any) -> None:
        from lightgbm.basic import _LIB, _c_str, _safe_call

        self._lib = _LIB
        self._check = _safe_call
        self.n_features = int(booster.num_feature())
        # Booster.predict with num_iteration=None and start_iteration=0 uses best_iteration
        num_iteration = int(getattr(booster, "best_iteration", 0) or 0)
        n_preds = ctypes.c_int64(0)
        _safe_call(
            _LIB.LGBM_BoosterCalcNumPredict(
                booster._handle,
                ctypes.c_int(1),
                ctypes.c_int(_C_API_PREDICT_NORMAL),
                ctypes.c_int(0),
                ctypes.c_int(num_iteration),
                ctypes.byref(n_preds),
            )
        )
        if n_preds.value != 1:
            raise ValueError(f"model: {n_preds.value} outputs per row, the fast path needs 1")
        self._handle = ctypes.c_void_p()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(_C_API_PREDICT_NORMAL),
                ctypes.c_int(0),
                ctypes.c_int(num_iteration),
                ctypes.c_int(_C_API_DTYPE_FLOAT64),
                ctypes.c_int32(self.n_features),
                _c_str("num_threads=1"),  # what Booster.predict gets for small inputs
                ctypes.byref(self._handle),
            )
        )
        self._finalizer = weakref.finalize(self, _free, _LIB, self._handle, booster)
        self._out = np.empty(1, dtype=np.float64)
        self._out_ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._out_len = ctypes.c_int64(0)
        self._lock = threading.Lock()

    @classmethod
    def create(cls, booster: Any) -> SingleRowPredictor | None:
        """The fast predictor, or None (logged as a WARNING) when this booster cannot use it.

        Only the refusals LightGBM or the output check give are a fallback (``Booster.predict``
        still scores, ten times slower per row); anything else is a bug and propagates.
        """
        from lightgbm.basic import LightGBMError

        try:
            return cls(booster)
        except (LightGBMError, ValueError) as exc:
            log.warning(
                "model: LightGBM single-row fast path unavailable (%s: %s); "
                "one-row requests use Booster.predict",
                type(exc).__name__,
                exc,
            )
            return None

    def applies(self, x: np.ndarray) -> bool:
        """True for exactly one C-contiguous float64 row of the right width."""
        return (
            x.shape == (1, self.n_features)
            and x.dtype == np.float64
            and x.flags.c_contiguous
            and bool(self._finalizer.alive)
        )

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Score of the single row in ``x`` (check :meth:`applies` first), as a 1-array."""
        with self._lock:
            self._check(
                self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                    self._handle,
                    x.ctypes.data_as(ctypes.c_void_p),
                    ctypes.byref(self._out_len),
                    self._out_ptr,
                )
            )
            return self._out.copy()

    def close(self) -> None:
        """Free the LightGBM handle now (idempotent)."""
        with self._lock:
            self._finalizer()
