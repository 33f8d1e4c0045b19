"""Offline association: a final agglomerative pass (average linkage) over all local tracks of a run.

Constraints as online (pipeline/association/constraints.py), enforced on whole clusters; distances come from
the scene-adaptive metric (pipeline/association/scene_metric.py) when the run gives enough constraints to
learn it, else from the cosine of the tracklet embeddings; with ``overlap`` on, cameras found to share a
view add foot-point geometry (pipeline/association/overlap.py), which also cuts a track the tracker handed from
one person to another where the other view shows two people. Its clusters are renumbered to keep the
online ids where they agree.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from pipeline.association.constraints import add_span, overlaps, transition_allowed
from pipeline.association.online import EmbeddingCentre
from pipeline.association.overlap import errors_under, overlap_errors, stands_with_another
from pipeline.association.records import Observation, has_crop_features
from pipeline.association.scene_metric import CropGroup, SceneMetric
from pipeline.config import AssociationConfig, TransitionWindow
from pipeline.geometry import CameraCalibration


@dataclass
class _Cluster:
    members: list[int]  # indices of local tracks
    spans: dict[str, list[tuple[float, float]]]


def refine_identities(observations: Sequence[Observation], online: dict[int, int], config: AssociationConfig,
                      info: dict | None = None, metric: SceneMetric | None = None,
                      calibration: CameraCalibration | None = None) -> dict[int, int]:
    """Offline pass: cluster local tracks (average linkage, constrained) and return uid -> global id.

    ``online`` (uid -> online global id) decides the numbering: each cluster takes the online id most of
    its tracklets had, so ids change only where the global pass disagrees with the online one.
    ``info``, when given, gets "metric": which distance the pass used, "overlaps": the camera pairs found to
    overlap (see ``apply_overlap_evidence``), "geometry_cuts": the local tracks cut where those views showed
    two people (see ``split_where_views_show_two``), and "unlinked_cameras": the camera pairs the pass held to
    confident merges for want of evidence (see ``separate_unlinked_cameras``).
    ``metric``, when given, is used instead of one learned from this run (e.g. one fitted on another run).
    """
    metric = metric if metric is not None else _fit_metric(observations, config)
    pair, threshold = _distances(observations, config, metric)
    members = _group_by_track(observations)
    if pair is not None and config.split_ratio > 0:
        members = split_at_switches(members, pair, config.split_ratio * threshold)
    distance = None if pair is None else _group_distances(members, pair, config.gallery_metric)
    overlapping = apply_overlap_evidence(distance, members, observations, _cameras_of(members, observations),
                                         threshold, config, calibration)
    members, distance, cuts = _cut_where_views_show_two(members, distance, observations, pair, threshold,
                                                        overlapping, config, calibration)
    cameras = _cameras_of(members, observations)
    clusters = [_Cluster([i], _track_spans(positions, observations)) for i, positions in enumerate(members)]
    unlinked = separate_unlinked_cameras(distance, cameras, threshold, config, overlapping)
    if info is not None:
        info["overlaps"] = overlapping
        info["geometry_cuts"] = cuts
        info["metric"] = (f"scene metric from {metric.pairs} 'different' pairs" if metric is not None
                          else "cosine on tracklet embeddings")
        info["unlinked_cameras"] = unlinked
    _agglomerate(clusters, distance, threshold, config.transitions)
    return _renumber(clusters, members, observations, online)


def _cut_where_views_show_two(members: list[list[int]], distance: np.ndarray, observations: Sequence[Observation],
                              pair: np.ndarray, threshold: float, fits: list, config: AssociationConfig,
                              calibration: CameraCalibration | None) -> tuple[list[list[int]], np.ndarray, int]:
    """(pieces, their distances with the views' evidence, cuts made) after ``split_where_views_show_two``."""
    if not fits or config.overlap_split_ratio <= 0:
        return members, distance, 0
    pieces = split_where_views_show_two(members, observations, pair, config.overlap_split_ratio * threshold, fits,
                                        config)
    if len(pieces) == len(members):
        return members, distance, 0
    distance = _group_distances(pieces, pair, config.gallery_metric)
    apply_overlap_evidence(distance, pieces, observations, _cameras_of(pieces, observations), threshold, config,
                           calibration, fits)
    return pieces, distance, len(pieces) - len(members)


def _cameras_of(members: list[list[int]], observations: Sequence[Observation]) -> list[str]:
    return [observations[positions[0]].camera_id for positions in members]


def learn_view_overlaps(observations: Sequence[Observation], config: AssociationConfig,
                        metric: SceneMetric | None = None, calibration: CameraCalibration | None = None) -> list:
    """The camera pairs whose views overlap, learned from these observations as the offline pass learns them
    (pipeline/association/overlap.py), for live mode, which has no offline pass: its recent tracklets, the
    online scene metric. Calibrated pairs are left out (their calibration is known)."""
    pair, threshold = _distances(observations, config, metric)
    if pair is None or not config.overlap:
        return []
    members = _group_by_track(observations)
    distance = _group_distances(members, pair, config.gallery_metric)
    fits = apply_overlap_evidence(distance, members, observations, _cameras_of(members, observations), threshold,
                                  config, calibration)
    return [fit for fit in fits if fit.source == "learned"]


def _distances(observations: Sequence[Observation], config: AssociationConfig, metric: SceneMetric | None
               ) -> tuple[np.ndarray | None, float]:
    """Tracklet pair distances and the merge threshold: in the scene metric when there is one, else cosine."""
    if metric is not None:
        return _metric_pair_distances(metric, observations), config.metric_threshold
    return (_pair_distances(observations, config.center),
            config.refine_threshold if config.refine_threshold >= 0 else config.threshold)


def apply_overlap_evidence(distance: np.ndarray | None, members: list[list[int]], observations: Sequence[Observation],
                           cameras: Sequence[str], threshold: float, config: AssociationConfig,
                           calibration: CameraCalibration | None = None, fits: list | None = None) -> list:
    """Where two cameras' views overlap (calibrated, or learned: pipeline/association/overlap.py), simultaneous
    tracks at one place become much closer and tracks at different places a cannot-link. Returns the
    overlapping pairs (``fits`` when given: found before, on other pieces of the same tracks); edits ``distance``."""
    if distance is None or not (config.overlap or calibration is not None and calibration.to_plane):
        return []
    feet = [_track_feet(positions, observations) for positions in members]
    if fits is None:
        errors, fits = overlap_errors(feet, cameras, distance, threshold, config, calibration)
    else:
        errors = errors_under(fits, feet, cameras, config)
    distance[errors <= config.overlap_same_error] *= config.overlap_same_scale
    distance[errors >= config.overlap_different_error] = np.inf
    return fits


def _track_feet(positions: list[int], observations: Sequence[Observation]) -> np.ndarray | None:
    parts = [observations[p].feet for p in positions if observations[p].feet is not None]
    return np.concatenate(parts) if parts else None


def separate_unlinked_cameras(distance: np.ndarray | None, cameras: Sequence[str], threshold: float,
                              config: AssociationConfig, overlapping: Sequence = ()) -> list[tuple[str, str]]:
    """Between cameras with too little evidence of sharing people, allow only confident merges.

    A confident link is a pair of two cameras' local tracks that are each other's nearest neighbour in the other
    camera at under ``camera_link_ratio * threshold``. Two cameras with at least ``camera_link_min_pairs`` of
    them, or whose views overlap (``overlapping``: calibrated or learned), evidently see the same people, and so
    do cameras joined through others (cam2 and cam3 both linked to cam1): all of these merge at the usual
    threshold. Across cameras that no chain of evidence joins, a merge must itself be confident (distances at or
    above the limit become inf). A camera of another place gives no links, yet one look-alike track of it can
    otherwise be absorbed by a cluster at the merge threshold (average linkage weighs one merge at a time,
    never the camera pair as a whole). Returns the pairs held to the confident limit; edits ``distance``."""
    if distance is None or config.camera_link_min_pairs <= 0:
        return []
    cameras = np.asarray(cameras)
    names = sorted(set(cameras.tolist()))
    limit = config.camera_link_ratio * threshold
    group = {name: name for name in names}  # union-find over the cameras that evidently share people

    def root(name: str) -> str:
        while group[name] != name:
            name = group[name]
        return name

    for pair in overlapping:
        group[root(pair.first)] = root(pair.second)
    for a, first in enumerate(names):
        for second in names[a + 1:]:
            block = distance[np.ix_(np.flatnonzero(cameras == first), np.flatnonzero(cameras == second))]
            if _confident_links(block, limit) >= config.camera_link_min_pairs:
                group[root(first)] = root(second)
    unlinked = []
    for a, first in enumerate(names):
        for second in names[a + 1:]:
            if root(first) != root(second):
                rows, cols = np.flatnonzero(cameras == first), np.flatnonzero(cameras == second)
                block = distance[np.ix_(rows, cols)]
                block[block >= limit] = np.inf
                distance[np.ix_(rows, cols)] = block
                distance[np.ix_(cols, rows)] = block.T
                unlinked.append((first, second))
    return unlinked


def _confident_links(block: np.ndarray, limit: float) -> int:
    """Mutual nearest neighbours (row's best column is that column's best row) closer than ``limit``."""
    if block.size == 0:
        return 0
    best_col, best_row = block.argmin(1), block.argmin(0)
    return sum(1 for row, col in enumerate(best_col) if best_row[col] == row and block[row, col] < limit)


def _fit_metric(observations: Sequence[Observation], config: AssociationConfig) -> SceneMetric | None:
    """The scene metric learned from this run's tracklets; None when off or too few constraints."""
    if not config.scene_metric:
        return None
    return SceneMetric.fit([CropGroup(o.camera_id, o.track_id, o.start_time, o.end_time, o.crop_features)
                            for o in observations if has_crop_features(o)], config)


def _metric_pair_distances(metric: SceneMetric, observations: Sequence[Observation]) -> np.ndarray | None:
    """Cosine distances between tracklets in the learned metric (inf without per-crop features)."""
    projected = [replace(o, embedding=metric.embed(o.crop_features), crop_features=None) if has_crop_features(o)
                 else replace(o, embedding=None) for o in observations]
    return _pair_distances(projected, centre=False)


def _group_by_track(observations: Sequence[Observation]) -> list[list[int]]:
    """Positions of the observations of each local track (camera, track id), in first-seen order."""
    index: dict[tuple[str, int], int] = {}
    members: list[list[int]] = []
    for position, observation in enumerate(observations):
        key = (observation.camera_id, observation.track_id)
        if key not in index:
            index[key] = len(members)
            members.append([])
        members[index[key]].append(position)
    return members


def _pair_distances(observations: Sequence[Observation], centre: bool) -> np.ndarray | None:
    """(O, O) cosine distances between the tracklets' (centred) embeddings; inf where either has none, None when
    no tracklet has one."""
    present = [p for p, o in enumerate(observations) if o.embedding is not None]
    if not present:
        return None
    centring = EmbeddingCentre(centre)
    vectors = np.asarray([observations[p].embedding for p in present])
    centring.observe(vectors)
    vectors = centring.apply(vectors)
    pair = np.full((len(observations), len(observations)), np.inf)
    pair[np.ix_(present, present)] = 1.0 - vectors @ vectors.T
    return pair


def _group_distances(members: list[list[int]], pair: np.ndarray, gallery_metric: str) -> np.ndarray:
    """Distance between groups of tracklets: min (or mean, per gallery_metric) over their tracklet pairs with
    embeddings; inf when either group has none."""
    rows = [[p for p in positions if np.isfinite(pair[p, p])] for positions in members]
    reduce = np.min if gallery_metric == "min" else np.mean
    distance = np.full((len(members), len(members)), np.inf)
    for i, rows_i in enumerate(rows):
        for j in range(i + 1, len(rows)):
            if rows_i and rows[j]:
                distance[i, j] = distance[j, i] = reduce(pair[np.ix_(rows_i, rows[j])])
    return distance


def _track_distances(members: list[list[int]], observations: Sequence[Observation], config: AssociationConfig
                     ) -> np.ndarray | None:
    """Distance between local tracks (see _group_distances) on the cosine of the tracklet embeddings."""
    pair = _pair_distances(observations, config.center)
    return None if pair is None else _group_distances(members, pair, config.gallery_metric)


def split_at_switches(members: list[list[int]], pair: np.ndarray, limit: float) -> list[list[int]]:
    """Cut each local track between consecutive tracklets that look like two people (distance over ``limit``):
    a tracker that swapped identities in a crowd hands one person's track on to another, and the pass would
    otherwise have to give both one id. Tracklets without an embedding never cause a cut."""
    pieces = []
    for positions in members:
        piece = [positions[0]]
        for previous, current in zip(positions, positions[1:]):
            if np.isfinite(pair[previous, current]) and pair[previous, current] > limit:
                pieces.append(piece)
                piece = []
            piece.append(current)
        pieces.append(piece)
    return pieces


def split_where_views_show_two(members: list[list[int]], observations: Sequence[Observation], pair: np.ndarray,
                               limit: float, fits: list, config: AssociationConfig) -> list[list[int]]:
    """Cut each local track between consecutive tracklets that look apart (distance over ``limit``, under the
    appearance-only cut's) where an overlapping view shows two people (``overlap.stands_with_another``): on
    EPFL Terrace YOLOX-Nano hands a track from one person to another at looks too close for appearance alone."""
    tracks: dict[str, list[list[np.ndarray]]] = {}
    for positions in _group_by_track(observations):
        feet = [observations[p].feet for p in positions if observations[p].feet is not None]
        tracks.setdefault(observations[positions[0]].camera_id, []).append(feet)
    pieces = []
    for positions in members:
        piece = [positions[0]]
        for previous, current in zip(positions, positions[1:]):
            if np.isfinite(pair[previous, current]) and pair[previous, current] > limit and _views_show_two(
                    observations[previous], observations[current], tracks, fits, config):
                pieces.append(piece)
                piece = []
            piece.append(current)
        pieces.append(piece)
    return pieces


def _views_show_two(before: Observation, after: Observation, tracks: dict[str, list[list[np.ndarray]]], fits: list,
                    config: AssociationConfig) -> bool:
    if before.feet is None or after.feet is None:
        return False
    camera = before.camera_id
    return any(stands_with_another(fit, camera, before.feet, after.feet,
                                   tracks.get(fit.second if camera == fit.first else fit.first, []), config)
               for fit in fits if camera in (fit.first, fit.second))


def _track_spans(positions: list[int], observations: Sequence[Observation]) -> dict[str, list[tuple[float, float]]]:
    spans: dict[str, list[tuple[float, float]]] = {}
    for p in positions:
        add_span(spans.setdefault(observations[p].camera_id, []), observations[p].start_time, observations[p].end_time)
    return spans


def _compatible(a: _Cluster, b: _Cluster, windows: Sequence[TransitionWindow]) -> bool:
    for camera, spans in b.spans.items():
        for start, end in spans:
            if overlaps(a.spans.get(camera, []), start, end):
                return False
            if not transition_allowed(a.spans, camera, start, end, windows):
                return False
    return True


def _agglomerate(clusters: list[_Cluster], distance: np.ndarray | None, threshold: float,
                 windows: Sequence[TransitionWindow]) -> None:
    """Merge the closest compatible pair until none is under ``threshold`` (average linkage, in place).

    A forbidden pair is set to inf, and inf survives the weighted average, which is right because the
    constraints only tighten as clusters grow."""
    if distance is None or len(clusters) < 2:
        return
    sizes = np.ones(len(clusters))
    while True:
        flat = int(np.argmin(distance))
        i, j = divmod(flat, len(clusters))
        if not np.isfinite(distance[i, j]) or distance[i, j] >= threshold:
            return
        if not _compatible(clusters[i], clusters[j], windows):
            distance[i, j] = distance[j, i] = np.inf
            continue
        merged = (distance[i] * sizes[i] + distance[j] * sizes[j]) / (sizes[i] + sizes[j])
        distance[i], distance[:, i] = merged, merged
        distance[j, :], distance[:, j] = np.inf, np.inf
        distance[i, i] = np.inf
        sizes[i] += sizes[j]
        clusters[i].members += clusters[j].members
        for camera, spans in clusters[j].spans.items():
            for start, end in spans:
                add_span(clusters[i].spans.setdefault(camera, []), start, end)
        clusters[j].members = []


def _renumber(clusters: list[_Cluster], members: list[list[int]], observations: Sequence[Observation],
              online: dict[int, int]) -> dict[int, int]:
    result: dict[int, int] = {}
    used: set[int] = set()
    next_id = max(online.values(), default=0) + 1
    for cluster in sorted((c for c in clusters if c.members), key=lambda c: -sum(len(members[m]) for m in c.members)):
        uids = [observations[p].uid for m in cluster.members for p in members[m]]
        votes: dict[int, int] = {}
        for uid in uids:
            if uid in online:
                votes[online[uid]] = votes.get(online[uid], 0) + 1
        choices = [g for g, _ in sorted(votes.items(), key=lambda kv: -kv[1]) if g not in used]
        global_id = choices[0] if choices else next_id
        next_id += 0 if choices else 1
        used.add(global_id)
        result.update({uid: global_id for uid in uids})
    return result
