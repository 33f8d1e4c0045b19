"""Offline post-processing: fill short gaps in finished tracks by linear interpolation.

Not causal (it needs the frame where a track reappears), so it is never part of online tracking.
"""

from __future__ import annotations

import numpy as np


def interpolate_gaps(rows: np.ndarray, max_gap: int) -> np.ndarray:
    """Fill gaps of at most ``max_gap`` missing frames inside each track.

    ``rows``: (N, >=6) ``frame, id, x, y, w, h, ...``. Filled rows copy the other columns from the
    row before the gap. Returns rows sorted by frame, then id.
    """
    if len(rows) == 0 or max_gap <= 0:
        return rows
    filled = [rows]
    for track_id in np.unique(rows[:, 1]):
        track = rows[rows[:, 1] == track_id]
        track = track[np.argsort(track[:, 0])]
        gaps = np.diff(track[:, 0]) - 1
        for i in np.flatnonzero((gaps > 0) & (gaps <= max_gap)):
            start, end = track[i], track[i + 1]
            steps = np.arange(1, int(gaps[i]) + 1) / (gaps[i] + 1)
            new = np.repeat(start[None], len(steps), axis=0)
            new[:, 0] = start[0] + np.arange(1, len(steps) + 1)
            new[:, 2:6] = start[2:6] + steps[:, None] * (end[2:6] - start[2:6])
            filled.append(new)
    out = np.concatenate(filled)
    return out[np.lexsort((out[:, 1], out[:, 0]))]
