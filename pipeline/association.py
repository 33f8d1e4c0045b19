"""Cross-camera association: tracklet embeddings -> global identities.

Online (``OnlineAssociator.assign``, callable as tracklets mature): a tracklet that continues a local
track keeps that track's identity; the others are matched by the Hungarian algorithm to identities on
the distance to each identity's bounded gallery, under hard constraints (an identity is never in one
camera twice at overlapping times; with a camera topology, transitions outside the allowed travel-time
windows are forbidden). The distance is the cosine in the scene metric (pipeline/scene_metric.py) learned
from the last ``metric_window`` tracklets once they give enough constraints (``online_metric``), before that
the centred cosine of the tracklet embeddings. A match needs a distance under the threshold (per distance),
otherwise the tracklet opens a new identity. State stays bounded for runs of any length: an identity
unseen for ``forget_after_s`` (on the tracklets' clock) is dropped from matching, its id never reused,
a local track leaves the track -> identity map with its last tracklet, and the metric learns from a window.

Offline (``refine_identities``): a final agglomerative pass (average linkage) over all local tracks,
under the same constraints, enforced on whole clusters; distances come from the scene-adaptive metric
(pipeline/scene_metric.py) when the run gives enough constraints to learn it, else from the cosine of
the tracklet embeddings; with ``overlap`` on, cameras found to share a view add foot-point geometry
(pipeline/overlap.py). Its clusters are renumbered to keep the online ids where they agree.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.config import AssociationConfig, TransitionWindow
from pipeline.overlap import overlap_errors
from pipeline.scene_metric import CropGroup, SceneMetric

INFEASIBLE = 1e6
METRIC_REFIT_EVERY = 16  # new tracklets between refits of the online scene metric


@dataclass
class Observation:
    """What the associator knows of one finished tracklet."""

    uid: int
    camera_id: str
    track_id: int
    start_time: float
    end_time: float
    embedding: np.ndarray | None  # L2-normalised; None when the tracklet had no usable crop
    continues: bool = False  # the local track goes on in a later tracklet (cut at max_length)
    crop_features: np.ndarray | None = None  # (C, D) per-crop features for the scene metric, if computed
    feet: np.ndarray | None = None  # (N, 4) time, foot x, foot y, box height (overlap.foot_points), if kept


@dataclass
class Assignment:
    uid: int
    global_id: int
    distance: float  # to the identity's gallery at assignment; nan for new or inherited identities
    how: str  # matched | new | continued
    space: str = ""  # of the distance: "scene metric" (at metric_threshold) or "cosine" (at threshold)


@dataclass
class Identity:
    global_id: int
    gallery: deque = field(default_factory=deque)
    crop_means: deque = field(default_factory=deque)  # per gallery entry (appended together, same maxlen):
    # the tracklet's mean per-crop feature for the online scene metric, or None
    spans: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # camera -> merged time spans
    # local tracks still running (camera, track id) -> end time so far: the identity is busy there from then on
    open_tracks: dict[tuple[str, int], float] = field(default_factory=dict)
    last_seen: float = float("-inf")  # latest end time of its tracklets

    def add(self, observation: Observation) -> None:
        self.last_seen = max(self.last_seen, observation.end_time)
        if observation.embedding is not None:
            self.gallery.append(observation.embedding)
            self.crop_means.append(_crop_mean(observation))
        add_span(self.spans.setdefault(observation.camera_id, []), observation.start_time, observation.end_time)
        key = (observation.camera_id, observation.track_id)
        if observation.continues:
            self.open_tracks[key] = observation.end_time
        else:
            self.open_tracks.pop(key, None)

    def busy(self, observation: Observation) -> bool:
        """Seen in the observation's camera at an overlapping time, or held there by a running track."""
        if overlaps(self.spans.get(observation.camera_id, []), observation.start_time, observation.end_time):
            return True
        return any(camera == observation.camera_id and track != observation.track_id and observation.end_time >= since
                   for (camera, track), since in self.open_tracks.items())

    def drop_spans_before(self, time: float) -> None:
        """Forget appearances that ended before ``time`` (they can no longer overlap a new tracklet)."""
        for camera in list(self.spans):
            self.spans[camera] = [span for span in self.spans[camera] if span[1] >= time]
            if not self.spans[camera]:
                del self.spans[camera]


def _fit_or_none(groups: list[CropGroup], config: AssociationConfig) -> SceneMetric | None:
    """SceneMetric.fit, with a numerically failed fit (e.g. singular scatter without shrinkage) as no fit."""
    try:
        return SceneMetric.fit(groups, config)
    except np.linalg.LinAlgError:
        return None


def has_crop_features(observation: Observation) -> bool:
    """Embedded, with per-crop features for the scene metric."""
    return (observation.embedding is not None and observation.crop_features is not None
            and len(observation.crop_features) > 0)


def _crop_mean(observation: Observation) -> np.ndarray | None:
    return np.asarray(observation.crop_features, np.float32).mean(0) if has_crop_features(observation) else None


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


def normalise(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.clip(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12, None)


class EmbeddingCentre:
    """Running mean of all embeddings: generic (ImageNet) features share a large common component that
    makes every pair of people look alike under the cosine; subtracting the mean spreads them apart."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.total: np.ndarray | None = None
        self.count = 0

    def observe(self, embeddings: np.ndarray) -> None:
        if len(embeddings):
            self.total = embeddings.sum(0) if self.total is None else self.total + embeddings.sum(0)
            self.count += len(embeddings)

    def apply(self, embeddings: np.ndarray) -> np.ndarray:
        if not self.enabled or self.count < 2:
            return embeddings
        return normalise(embeddings - self.total / self.count)


class OnlineAssociator:
    """``background_refit``: refit the online scene metric on a worker thread and take it up when ready (live
    mode: the main loop must not stall); otherwise refit in place, which keeps runs reproducible."""

    def __init__(self, config: AssociationConfig, background_refit: bool = False):
        self.config = config
        self.identities: dict[int, Identity] = {}
        self.by_track: dict[tuple[str, int], int] = {}  # (camera, local track id) -> global id
        self.centre = EmbeddingCentre(config.center)
        self.metric: SceneMetric | None = None  # online scene metric, once learnable (config.online_metric)
        self._metric_groups: deque[CropGroup] = deque(maxlen=config.metric_window)
        self._unfitted = 0  # tracklets added to _metric_groups since the last fit
        self._refit_worker = ThreadPoolExecutor(1, "metric-refit") if background_refit else None
        self._refit: Future | None = None
        self._next_id = 1
        self.now = float("-inf")  # latest tracklet end time seen: the clock for forgetting

    @property
    def identities_issued(self) -> int:
        return self._next_id - 1

    def state_size(self) -> dict[str, int]:
        """What the associator holds, for checking that it stays bounded over long runs."""
        return {"identities": len(self.identities), "tracks": len(self.by_track),
                "spans": sum(len(spans) for i in self.identities.values() for spans in i.spans.values()),
                "open_tracks": sum(len(i.open_tracks) for i in self.identities.values()),
                "metric_tracklets": len(self._metric_groups)}

    def assign(self, observations: Sequence[Observation]) -> list[Assignment]:
        """Assign a batch of finished tracklets; identities are updated before the next batch."""
        self.centre.observe(np.asarray([o.embedding for o in observations if o.embedding is not None]))
        self._update_metric(observations)
        assignments, pending = [], []
        for observation in sorted(observations, key=lambda o: o.start_time):
            known = self.by_track.get((observation.camera_id, observation.track_id))
            if known is not None and not self.identities[known].busy(observation):
                assignments.append(self._continue(observation, self.identities[known]))
            else:  # new track, or a continuation that would put its identity twice in one frame
                pending.append(observation)
        while pending:
            matched = self._match(pending)
            assignments.extend(matched)
            done = {a.uid for a in matched}
            pending = [o for o in pending if o.uid not in done]
            if pending:  # open one identity, then let the rest of the batch match against it too
                assignments.append(self._open(pending.pop(0)))
        self._forget(max((o.end_time for o in observations), default=self.now))
        return assignments

    def _forget(self, now: float) -> None:
        """Drop identities not seen for forget_after_s, with their tracks; trim old spans of the others."""
        self.now = max(self.now, now)
        if self.config.forget_after_s <= 0:
            return
        horizon = self.now - self.config.forget_after_s
        stale = {gid for gid, identity in self.identities.items() if identity.last_seen < horizon}
        for gid in stale:
            del self.identities[gid]
        if stale:
            self.by_track = {key: gid for key, gid in self.by_track.items() if gid not in stale}
        for identity in self.identities.values():
            identity.drop_spans_before(horizon)

    def _update_metric(self, observations: Sequence[Observation]) -> None:
        """Refit the online scene metric on the last metric_window tracklets: at once while there is none yet,
        then every METRIC_REFIT_EVERY new tracklets. A failed refit (too few constraints) keeps the old one."""
        if not (self.config.online_metric and self.config.scene_metric):
            return
        if self._refit is not None and self._refit.done():
            self.metric, self._refit = self._refit.result() or self.metric, None
        groups = [CropGroup(o.camera_id, o.track_id, o.start_time, o.end_time, o.crop_features)
                  for o in observations if has_crop_features(o)]
        self._metric_groups.extend(groups)
        self._unfitted += len(groups)
        due = self.metric is None or self._unfitted >= METRIC_REFIT_EVERY
        if not self._unfitted or not due or self._refit is not None:
            return
        self._unfitted = 0
        if self._refit_worker is None:
            self.metric = _fit_or_none(list(self._metric_groups), self.config) or self.metric
        else:
            self._refit = self._refit_worker.submit(_fit_or_none, list(self._metric_groups), self.config)

    def distance_matrix(self, observations: Sequence[Observation], identities: Sequence[Identity]
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Distance of each observation to each identity's gallery (min or mean per gallery_metric) and whether
        it is in the scene metric: there when both have per-crop features and the online metric exists, else
        the centred cosine of the embeddings. INFEASIBLE where forbidden."""
        costs = np.full((len(observations), len(identities)), INFEASIBLE)
        in_metric = np.zeros(costs.shape, dtype=bool)
        if not identities or not observations:
            return costs, in_metric
        reduce = np.min if self.config.gallery_metric == "min" else np.mean
        queries = self.centre.apply(np.asarray([o.embedding for o in observations]))
        metric_queries = self._metric_queries(observations)
        for column, identity in enumerate(identities):
            if not identity.gallery:
                continue
            distance = reduce(1.0 - queries @ self.centre.apply(np.asarray(identity.gallery)).T, axis=1)
            means = [m for m in identity.crop_means if m is not None]
            if metric_queries is not None and means:
                in_metric[:, column] = ~np.isnan(metric_queries[:, 0])
                metric_distance = reduce(1.0 - metric_queries @ self.metric.embed_each(np.asarray(means)).T, axis=1)
                distance = np.where(in_metric[:, column], metric_distance, distance)
            for row, observation in enumerate(observations):
                if self._feasible(identity, observation):
                    costs[row, column] = distance[row]
        return costs, in_metric

    def _metric_queries(self, observations: Sequence[Observation]) -> np.ndarray | None:
        """Unit vectors of the observations in the online scene metric (nan rows: no per-crop features)."""
        if self.metric is None:
            return None
        queries = np.full((len(observations), self.metric.projection.shape[1]), np.nan)
        rows = [r for r, o in enumerate(observations) if has_crop_features(o)]
        if rows:
            queries[rows] = self.metric.embed_each(np.asarray([_crop_mean(observations[r]) for r in rows]))
        return queries

    def _feasible(self, identity: Identity, observation: Observation) -> bool:
        if identity.busy(observation):
            return False
        return transition_allowed(identity.spans, observation.camera_id, observation.start_time, observation.end_time,
                                  self.config.transitions)

    def _match(self, pending: list[Observation]) -> list[Assignment]:
        """Hungarian assignment on distances relative to their threshold (scene metric or cosine), so that the
        two scales compare; a pair matches under 1."""
        candidates = [o for o in pending if o.embedding is not None]
        identities = list(self.identities.values())
        distance, in_metric = self.distance_matrix(candidates, identities)
        if distance.size == 0:
            return []
        threshold = np.where(in_metric, self.config.metric_threshold, self.config.threshold)
        relative = np.where(distance < INFEASIBLE, distance / threshold, INFEASIBLE)
        rows, cols = linear_sum_assignment(relative)
        matched = []
        for row, col in zip(rows, cols):
            if relative[row, col] < 1.0:
                space = "scene metric" if in_metric[row, col] else "cosine"
                matched.append(self._join(candidates[row], identities[col], float(distance[row, col]), space))
        return matched

    def _join(self, observation: Observation, identity: Identity, distance: float, space: str) -> Assignment:
        self._record(observation, identity)
        return Assignment(observation.uid, identity.global_id, distance, "matched", space)

    def _continue(self, observation: Observation, identity: Identity) -> Assignment:
        self._record(observation, identity)
        return Assignment(observation.uid, identity.global_id, float("nan"), "continued")

    def _open(self, observation: Observation) -> Assignment:
        size = self.config.gallery_size
        identity = self.identities[self._next_id] = Identity(self._next_id, deque(maxlen=size), deque(maxlen=size))
        self._next_id += 1
        self._record(observation, identity)
        return Assignment(observation.uid, identity.global_id, float("nan"), "new")

    def _record(self, observation: Observation, identity: Identity) -> None:
        identity.add(observation)
        key = (observation.camera_id, observation.track_id)
        if observation.continues:
            self.by_track[key] = identity.global_id
        else:  # the track's last tracklet: nothing will continue it
            self.by_track.pop(key, None)


@dataclass
class _Cluster:
    members: list[int]  # indices of local tracks
    spans: dict[str, list[tuple[float, float]]]


def refine_identities(observations: Sequence[Observation], online: dict[int, int], config: AssociationConfig,
                      info: dict | None = None, metric: SceneMetric | None = None) -> dict[int, int]:
    """Offline pass: cluster local tracks (average linkage, constrained) and return uid -> global id.

    ``online`` (uid -> online global id) decides the numbering: each cluster takes the online id most of
    its tracklets had, so ids change only where the global pass disagrees with the online one.
    ``info``, when given, gets "metric": which distance the pass used, "overlaps": the camera pairs found to
    overlap (see ``apply_overlap_evidence``), and "unlinked_cameras": the camera pairs the pass held to
    confident merges for want of evidence (see ``separate_unlinked_cameras``).
    ``metric``, when given, is used instead of one learned from this run (e.g. one fitted on another run).
    """
    members = _group_by_track(observations)
    clusters = [_Cluster([i], _track_spans(positions, observations)) for i, positions in enumerate(members)]
    metric = metric if metric is not None else _fit_metric(observations, config)
    if metric is not None:
        distance, threshold = _metric_distances(metric, members, observations, config), config.metric_threshold
    else:
        distance = _track_distances(members, observations, config)
        threshold = config.refine_threshold if config.refine_threshold >= 0 else config.threshold
    cameras = [observations[positions[0]].camera_id for positions in members]
    overlapping = apply_overlap_evidence(distance, members, observations, cameras, threshold, config)
    unlinked = separate_unlinked_cameras(distance, cameras, threshold, config)
    if info is not None:
        info["overlaps"] = overlapping
        info["metric"] = (f"scene metric from {metric.pairs} 'different' pairs" if metric is not None
                          else "cosine on tracklet embeddings")
        info["unlinked_cameras"] = unlinked
    _agglomerate(clusters, distance, threshold, config.transitions)
    return _renumber(clusters, members, observations, online)


def apply_overlap_evidence(distance: np.ndarray | None, members: list[list[int]], observations: Sequence[Observation],
                           cameras: Sequence[str], threshold: float, config: AssociationConfig) -> list:
    """Where two cameras' views overlap (pipeline/overlap.py), simultaneous tracks at one place become much
    closer and tracks at different places a cannot-link. Returns the overlapping pairs; edits ``distance``."""
    if distance is None or not config.overlap:
        return []
    feet = [_track_feet(positions, observations) for positions in members]
    errors, fits = overlap_errors(feet, cameras, distance, threshold, config)
    distance[errors <= config.overlap_same_error] *= config.overlap_same_scale
    distance[errors >= config.overlap_different_error] = np.inf
    return fits


def _track_feet(positions: list[int], observations: Sequence[Observation]) -> np.ndarray | None:
    parts = [observations[p].feet for p in positions if observations[p].feet is not None]
    return np.concatenate(parts) if parts else None


def separate_unlinked_cameras(distance: np.ndarray | None, cameras: Sequence[str], threshold: float,
                              config: AssociationConfig) -> list[tuple[str, str]]:
    """Between two cameras with too little evidence of sharing people, allow only confident merges.

    A confident link is a pair of their local tracks that are each other's nearest neighbour in the other
    camera at under ``camera_link_ratio * threshold``. With at least ``camera_link_min_pairs`` of them the two
    cameras evidently see the same people and merge at the usual threshold; with fewer, a merge across them
    must itself be confident (distances at or above the limit become inf). Cameras that see the same people
    give many confident links; a camera of another place gives none, yet one look-alike track of it can
    otherwise be absorbed by a cluster at the merge threshold (average linkage weighs one merge at a time,
    never the camera pair as a whole). Returns the pairs held to the confident limit; edits ``distance``."""
    if distance is None or config.camera_link_min_pairs <= 0:
        return []
    cameras = np.asarray(cameras)
    names = sorted(set(cameras.tolist()))
    limit = config.camera_link_ratio * threshold
    unlinked = []
    for a, first in enumerate(names):
        for second in names[a + 1:]:
            rows, cols = np.flatnonzero(cameras == first), np.flatnonzero(cameras == second)
            block = distance[np.ix_(rows, cols)]
            if _confident_links(block, limit) < config.camera_link_min_pairs:
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


def _metric_distances(metric: SceneMetric, members: list[list[int]], observations: Sequence[Observation],
                      config: AssociationConfig) -> np.ndarray | None:
    """Distances between local tracks (min or mean over tracklet pairs) in the learned metric."""
    projected = [replace(o, embedding=metric.embed(o.crop_features), crop_features=None) if has_crop_features(o)
                 else replace(o, embedding=None) for o in observations]
    return _track_distances(members, projected, replace(config, center=False))


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


def _track_distances(members: list[list[int]], observations: Sequence[Observation], config: AssociationConfig
                     ) -> np.ndarray | None:
    """Distance between local tracks: min (or mean, per gallery_metric) over their tracklet pairs; inf when
    either has no embedding."""
    present = [p for p, o in enumerate(observations) if o.embedding is not None]
    if not present:
        return None
    centre = EmbeddingCentre(config.center)
    vectors = np.asarray([observations[p].embedding for p in present])
    centre.observe(vectors)
    vectors = centre.apply(vectors)
    pair = 1.0 - vectors @ vectors.T
    row_of = {p: r for r, p in enumerate(present)}
    rows = [[row_of[p] for p in positions if p in row_of] for positions in members]
    reduce = np.min if config.gallery_metric == "min" else np.mean
    distance = np.full((len(members), len(members)), np.inf)
    for i, rows_i in enumerate(rows):
        for j in range(i + 1, len(rows)):
            if rows_i and rows[j]:
                distance[i, j] = distance[j, i] = reduce(pair[np.ix_(rows_i, rows[j])])
    return distance


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
