"""Hard constraints of association: one person is never in one camera twice at once, and with a camera
topology only travels between cameras within the allowed time windows. Spans are sorted, disjoint
(start, end) times per camera."""

from __future__ import annotations

from typing import Sequence

from pipeline.config import TransitionWindow


def add_span(spans: list[tuple[float, float]], start: float, end: float) -> None:
    """Insert [start, end] into a sorted list of disjoint spans, merging the ones it touches."""
    merged_start, merged_end, kept = start, end, []
    for span in spans:
        if span[1] < start or span[0] > end:
            kept.append(span)
        else:
            merged_start, merged_end = min(merged_start, span[0]), max(merged_end, span[1])
    kept.append((merged_start, merged_end))
    spans[:] = sorted(kept)


def overlaps(spans: Sequence[tuple[float, float]], start: float, end: float) -> bool:
    return any(s <= end and start <= e for s, e in spans)


def transition_allowed(spans: dict[str, list[tuple[float, float]]], camera: str, start: float, end: float,
                       windows: Sequence[TransitionWindow]) -> bool:
    """With a topology, every hop between this tracklet and the identity's nearest appearance in each other
    camera must fall in a configured window (gap = entry time - exit time, negative when overlapping)."""
    if not windows:
        return True
    for other, other_spans in spans.items():
        if other == camera:
            continue
        for span_start, span_end in other_spans:
            src, dst, gap = (other, camera, start - span_end) if span_start <= start else (camera, other, span_start - end)
            if not any(w.src == src and w.dst == dst and w.min_s <= gap <= w.max_s for w in windows):
                return False
    return True
