"""Minimum-cost assignment with a cost limit, via ``lap.lapjv``."""

from __future__ import annotations

import lap
import numpy as np


def linear_assignment(cost: np.ndarray, max_cost: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Match rows to columns minimising total cost; pairs costing more than ``max_cost`` stay apart.

    Returns ``(matches (K, 2), unmatched_rows, unmatched_cols)``.
    """
    rows, cols = cost.shape
    if rows == 0 or cols == 0:
        return np.zeros((0, 2), dtype=int), np.arange(rows), np.arange(cols)
    _, row_to_col, col_to_row = lap.lapjv(cost, extend_cost=True, cost_limit=max_cost)
    matched_rows = np.flatnonzero(row_to_col >= 0)
    matches = np.stack([matched_rows, row_to_col[matched_rows]], axis=1)
    return matches, np.flatnonzero(row_to_col < 0), np.flatnonzero(col_to_row < 0)
