"""Video ReID retrieval metrics: CMC and mAP under the MARS protocol.

For each query the gallery is ranked by distance; entries with the query's identity AND camera are
ignored (they are the same view, often the query itself), and so are distractors of identity -1.
A query without any remaining true match is left out of both metrics (and counted).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

RANKS = (1, 5, 10, 20)
DISTRACTOR_PID = -1


@dataclass(frozen=True)
class RetrievalResult:
    cmc: np.ndarray  # cmc[r] = share of queries with a true match within the top r+1
    mAP: float
    num_queries: int  # queries that had at least one valid true match
    num_skipped: int

    def rank(self, r: int) -> float:
        return float(self.cmc[min(r, len(self.cmc)) - 1])

    def as_dict(self) -> dict[str, float]:
        scores = {f"rank{r}": self.rank(r) for r in RANKS}
        scores["mAP"] = self.mAP
        return scores


def cosine_distance(query: torch.Tensor, gallery: torch.Tensor) -> np.ndarray:
    """(Q, G) cosine distances 1 - cos between rows."""
    q = torch.nn.functional.normalize(query.float(), dim=1)
    g = torch.nn.functional.normalize(gallery.float(), dim=1)
    return (1.0 - q @ g.T).cpu().numpy()


def evaluate_retrieval(
    distances: np.ndarray,
    query_pids: np.ndarray,
    gallery_pids: np.ndarray,
    query_camids: np.ndarray,
    gallery_camids: np.ndarray,
    max_rank: int = max(RANKS),
) -> RetrievalResult:
    distances = np.asarray(distances)
    if distances.shape != (len(query_pids), len(gallery_pids)):
        raise ValueError(f"distance matrix {distances.shape} does not fit {len(query_pids)} queries x {len(gallery_pids)} gallery")
    gallery_pids, gallery_camids = np.asarray(gallery_pids), np.asarray(gallery_camids)
    cmcs, aps = [], []
    for row, q_pid, q_cam in zip(distances, query_pids, query_camids):
        if q_pid == DISTRACTOR_PID:
            continue
        order = np.argsort(row, kind="stable")
        ignored = (gallery_pids[order] == DISTRACTOR_PID) | (
            (gallery_pids[order] == q_pid) & (gallery_camids[order] == q_cam)
        )
        matches = (gallery_pids[order] == q_pid)[~ignored]
        if not matches.any():
            continue
        cmcs.append(_cmc_row(matches, max_rank))
        aps.append(average_precision(matches))
    if not cmcs:
        raise ValueError("no query has a true match in another camera: CMC and mAP are undefined")
    return RetrievalResult(np.mean(cmcs, axis=0), float(np.mean(aps)), len(cmcs), len(query_pids) - len(cmcs))


def average_precision(matches: np.ndarray) -> float:
    """Mean over the true matches of the precision at each one's rank (ranked boolean list)."""
    hits = np.flatnonzero(matches)
    return float(np.mean(np.arange(1, len(hits) + 1) / (hits + 1)))


def _cmc_row(matches: np.ndarray, max_rank: int) -> np.ndarray:
    first_hit = int(np.argmax(matches))
    row = np.zeros(max_rank)
    row[first_hit:] = 1.0
    return row
