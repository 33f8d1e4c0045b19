"""Online association: finished tracklets -> global identities, as they come.

A tracklet that continues a local track keeps that track's identity while it still matches it
(``rematch_continuations``: one that no longer does goes to another identity it matches, so a tracker that
went on with someone else costs one tracklet, not the rest of the track); the others are matched by the
Hungarian algorithm to identities on the distance to each identity's bounded gallery, under hard
constraints (pipeline/association/constraints.py). The distance is the cosine in the scene metric
(pipeline/association/scene_metric.py) learned from the last ``metric_window`` tracklets once there are
``online_metric_min_tracklets`` of them with enough constraints (``online_metric``), before that the centred
cosine of the tracklet embeddings. A match needs a distance under the threshold (per distance), otherwise
the tracklet opens a new identity. State stays bounded for runs of any length: an identity unseen for
``forget_after_s`` (on the tracklets' clock) is dropped from matching, its id never reused, a local track
leaves the track -> identity map with its last tracklet, and the metric learns from a window.
"""

from __future__ import annotations

from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.association.constraints import add_span, overlaps, transition_allowed
from pipeline.association.overlap import common_points, reprojection_error
from pipeline.association.records import Assignment, Observation, has_crop_features
from pipeline.association.scene_metric import CropGroup, SceneMetric
from pipeline.config import AssociationConfig
from pipeline.geometry import CameraCalibration

INFEASIBLE = 1e6
FEET_KEPT = 300  # foot points kept per identity and camera (12 s at 25 fps): enough to overlap a new tracklet
METRIC_REFIT_EVERY = 16  # new tracklets between refits of the online scene metric


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
    # camera -> its latest foot points (geometry.foot_points rows), for geometry with simultaneous tracklets
    recent_feet: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, observation: Observation) -> None:
        self.last_seen = max(self.last_seen, observation.end_time)
        if observation.feet is not None and len(observation.feet):
            kept = self.recent_feet.get(observation.camera_id)
            feet = observation.feet if kept is None else np.concatenate([kept, observation.feet])
            self.recent_feet[observation.camera_id] = feet[-FEET_KEPT:]
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


def _in_one_camera_at_once(first: Identity, second: Identity) -> bool:
    """Whether two identities were seen in one camera at overlapping times, or one of them there while the other
    holds it with a running track (two people)."""
    for one, other in ((first, second), (second, first)):
        for camera, spans in one.spans.items():
            held_since = [since for (held, track), since in other.open_tracks.items()
                          if held == camera and (held, track) not in one.open_tracks]
            if any(overlaps(other.spans.get(camera, []), *span) or any(end >= since for since in held_since)
                   for span in spans for end in span[1:]):
                return True
    return False


def _fit_or_none(groups: list[CropGroup], config: AssociationConfig) -> SceneMetric | None:
    """SceneMetric.fit, with a numerically failed fit (e.g. singular scatter without shrinkage) as no fit."""
    try:
        return SceneMetric.fit(groups, config)
    except np.linalg.LinAlgError:
        return None


def _crop_mean(observation: Observation) -> np.ndarray | None:
    return np.asarray(observation.crop_features, np.float32).mean(0) if has_crop_features(observation) else None


def _joined_gallery(older: list, newer: list, size: int | None) -> list:
    """Two galleries' entries as one of ``size``: the newest of each, half each where both are longer, so a
    merged identity keeps the looks of both its views (appending one full gallery would drop all the other's)."""
    if size is None or len(older) + len(newer) <= size:
        return older + newer
    from_older = min(len(older), max(size - len(newer), size // 2))
    return older[len(older) - from_older:] + newer[len(newer) - (size - from_older):]


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

    def __init__(self, config: AssociationConfig, background_refit: bool = False,
                 calibration: CameraCalibration | None = None):
        self.config = config
        self.calibration = calibration
        # image -> image mappings of uncalibrated camera pairs found to share a view (live mode learns them)
        self.learned_views: dict[tuple[str, str], np.ndarray] = {}
        self.identities: dict[int, Identity] = {}
        self.by_track: dict[tuple[str, int], int] = {}  # (camera, local track id) -> global id
        self.centre = EmbeddingCentre(config.center)
        self.metric: SceneMetric | None = None  # online scene metric, once learnable (config.online_metric)
        self._metric_groups: deque[CropGroup] = deque(maxlen=config.metric_window)
        self._unfitted = 0  # tracklets added to _metric_groups since the last fit
        # one worker thread for the associator's background work (metric refits, the stage's view learning):
        # one at a time on a 2-core box, and one malloc arena (a second thread's arena held up to 40 MB more)
        self.background = ThreadPoolExecutor(1, "association-background") if background_refit else None
        self._refit: Future | None = None
        self._next_id = 1
        self.running: dict[tuple[str, int], np.ndarray] = {}  # see assign
        self.merged: list[tuple[int, int]] = []  # (newer id, older id) merged by _merge_same_place
        self._merged_for: set[tuple[str, str]] = set()  # learned views whose identities were merged (once each)
        self.now = float("-inf")  # latest tracklet end time seen: the clock for forgetting

    @property
    def identities_issued(self) -> int:
        return self._next_id - 1

    def adopt(self, identities: Sequence[Identity], next_id: int, metric_groups: Sequence[CropGroup] = (),
              centre: tuple[np.ndarray | None, int] = (None, 0)) -> None:
        """Go on from a stored state (pipeline/store.py): its identities, id sequence (never reused), embedding
        centre, and the crop groups the online scene metric learns from (refitted on the next batch)."""
        self.identities.update({identity.global_id: identity for identity in identities})
        self._next_id = max(self._next_id, next_id)
        if centre[0] is not None:
            self.centre.total, self.centre.count = centre
        self._metric_groups.extend(metric_groups)
        self._unfitted += len(metric_groups)

    def state_size(self) -> dict[str, int]:
        """What the associator holds, for checking that it stays bounded over long runs."""
        return {"identities": len(self.identities), "tracks": len(self.by_track),
                "spans": sum(len(spans) for i in self.identities.values() for spans in i.spans.values()),
                "open_tracks": sum(len(i.open_tracks) for i in self.identities.values()),
                "metric_tracklets": len(self._metric_groups)}

    def assign(self, observations: Sequence[Observation],
               running: dict[tuple[str, int], np.ndarray] | None = None) -> list[Assignment]:
        """Assign a batch of finished tracklets; identities are updated before the next batch. ``running``:
        (camera, local track) -> recent foot points of the tracks still running, so calibrated cameras can
        compare a new tracklet with where an identity's open tracks are now."""
        self.running = running or {}
        self.centre.observe(np.asarray([o.embedding for o in observations if o.embedding is not None]))
        self._update_metric(observations)
        newly_learned = set(self.learned_views) - self._merged_for
        if self.config.merge_same_place and newly_learned:
            self._merge_same_place({frozenset(pair) for pair in newly_learned})
            self._merged_for |= newly_learned
        assignments, pending = [], []
        rematched: dict[int, Identity] = {}  # uid -> the identity of a continuation matched afresh
        tracklets_of = Counter((o.camera_id, o.track_id) for o in observations)
        for observation in sorted(observations, key=lambda o: o.start_time):
            known = self.by_track.get((observation.camera_id, observation.track_id))
            identity = None if known is None else self.identities[known]
            if identity is None or identity.busy(observation):
                pending.append(observation)  # new track, or a continuation that would put its identity twice in one frame
            elif (self.config.rematch_continuations and tracklets_of[observation.camera_id, observation.track_id] == 1
                  and not self._still_matches(observation, identity)):  # one per track: its tracklets stay in order
                rematched[observation.uid] = identity
                pending.append(observation)
            else:
                older = self._older_identity_here(observation, identity)
                assignments.append(self._continue(observation, identity) if older is None
                                   else self._relink(observation, older))
        while pending:
            matched = self._match(pending)
            assignments.extend(matched)
            done = {a.uid for a in matched}
            # a continuation matched afresh that matches no one else stays with its identity
            assignments.extend(self._continue(o, rematched[o.uid]) for o in pending
                               if o.uid not in done and o.uid in rematched)
            pending = [o for o in pending if o.uid not in done and o.uid not in rematched]
            if pending:  # open one identity, then let the rest of the batch match against it too
                assignments.append(self._open(pending.pop(0)))
        self._forget(max((o.end_time for o in observations), default=self.now))
        return assignments

    def _still_matches(self, observation: Observation, identity: Identity) -> bool:
        """Whether a continuation would match its track's identity on its own (under the threshold, geometry
        included): when it does not, the tracker may have gone on with someone else."""
        return observation.embedding is None or self._relative_distance(observation, identity) < 1.0

    def _relative_distance(self, observation: Observation, identity: Identity) -> float:
        """The observation's distance to the identity over the threshold of its space: a match under 1."""
        distance, in_metric = self.distance_matrix([observation], [identity])
        return distance[0, 0] / (self.config.metric_threshold if in_metric[0, 0] else self.config.threshold)

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
        enough = self.metric is not None or (  # the window only grows: once enough, always enough
            sum(1 for g in self._metric_groups if len(g.crops) >= 2) >= self.config.online_metric_min_tracklets)
        if not self._unfitted or not due or not enough or self._refit is not None:
            return
        self._unfitted = 0
        if self.background is None:
            self.metric = _fit_or_none(list(self._metric_groups), self.config) or self.metric
        else:
            self._refit = self.background.submit(_fit_or_none, list(self._metric_groups), self.config)

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
            feet = self._feet_of(identity) if self._has_views else {}
            for row, observation in enumerate(observations):
                scale = self._geometry_scale(feet, observation) if self._feasible(identity, observation) else None
                if scale is not None:
                    costs[row, column] = distance[row] * scale
        return costs, in_metric

    def _feet_of(self, identity: Identity) -> dict[str, np.ndarray]:
        """The identity's recent foot points per camera, with those of its tracks still running."""
        feet = dict(identity.recent_feet)
        for (camera, track), since in identity.open_tracks.items():
            now = self.running.get((camera, track))
            if now is not None and len(now):
                feet[camera] = np.concatenate([feet[camera], now]) if camera in feet else now
        return feet

    @property
    def _has_views(self) -> bool:
        return bool(self.learned_views) or self.calibration is not None and len(self.calibration.to_plane) >= 2

    def view_mapping(self, first: str, second: str) -> np.ndarray | None:
        """Foot points of camera ``first`` -> image of ``second``: from the calibration, else learned; None if
        the two views are not known to overlap."""
        known = self.calibration.between(first, second) if self.calibration is not None else None
        if known is not None:
            return known
        if (first, second) in self.learned_views:
            return self.learned_views[first, second]
        reverse = self.learned_views.get((second, first))
        return None if reverse is None else np.linalg.inv(reverse)

    def _geometry_scale(self, feet_by_camera: dict[str, np.ndarray], observation: Observation) -> float | None:
        """Cameras sharing a view (calibrated or learned) that see the observation and the identity at the same
        times: 1 without evidence, overlap_same_scale where their feet meet on the ground, None (forbidden) where
        they are apart."""
        if not self._has_views or observation.feet is None:
            return 1.0
        for camera, feet in feet_by_camera.items():
            homography = self.view_mapping(observation.camera_id, camera) if camera != observation.camera_id else None
            if homography is None:
                continue
            mine, theirs = common_points(observation.feet, feet)
            if len(mine) >= min(self.config.overlap_min_common, len(observation.feet)):
                error = reprojection_error(homography, mine, theirs)
                if error >= self.config.overlap_tracklet_different_error:
                    return None
                if error <= self.config.overlap_same_error:
                    return self.config.overlap_same_scale
        return 1.0

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

    def _older_identity_here(self, observation: Observation, identity: Identity) -> Identity | None:
        """An identity issued before the track's own that another camera sees at the same place on the ground at
        the same times (a learned view) and that matches it, while the track's identity is not seen in that
        camera then: one person given two ids before the views were learned (live mode learns them as it runs
        and has no offline pass to merge them). None when there is none. Calibrated views are known from the
        start: they need no relinking (on EPFL Terrace live with YOLOX-Nano it cost 3 points of MTMC IDF1)."""
        learned = {camera for pair in self.learned_views if observation.camera_id in pair
                   for camera in pair if camera != observation.camera_id}  # never calibrated pairs
        if not learned or observation.feet is None:
            return None
        best, best_cost = None, 1.0
        for candidate in self.identities.values():
            if candidate.global_id >= identity.global_id or not candidate.open_tracks:
                continue
            feet = {camera: points for camera, points in self._feet_of(candidate).items()
                    if camera in learned and not identity.busy(replace(observation, camera_id=camera))}
            if not feet or self._geometry_scale(feet, observation) != self.config.overlap_same_scale:
                continue
            cost = self._relative_distance(observation, candidate)
            if cost < best_cost:
                best, best_cost = candidate, cost
        return best

    def _merge_same_place(self, pairs: set[frozenset]) -> None:
        """Run when views are first learned to overlap: identities they saw at one place on the ground at the same
        times, that look alike and were never in one camera at once, are one person given two ids before the views
        were known. The newer one's tracks go on under the older id and its gallery joins the older one's (left
        as two, the newer kept matching the person in its own camera: one id per camera). Relinking moves only
        running tracks, and only their next tracklet. Once at first learning, not at every batch: merged galleries
        match more widely, and merging as people come cascaded (EPFL Terrace live YOLOX-Nano 52.3 -> 45.4); so
        only the camera ``pairs`` just learned count, not those merged for before."""
        recent = sorted((i for i in self.identities.values() if i.recent_feet), key=lambda i: i.global_id)
        for newer in reversed(recent):
            older = next((i for i in recent if i.global_id < newer.global_id and i.global_id in self.identities
                          and self._same_person(i, newer, pairs)), None)
            if older is not None:
                self._merge(newer, into=older)
                self.merged.append((newer.global_id, older.global_id))

    def _same_person(self, first: Identity, second: Identity, pairs: set[frozenset]) -> bool:
        """Feet together (overlap_same_error) at the common times of a newly learned view (camera ``pairs``),
        apart in none learned, in no camera at once, and alike: the gallery distance within what geometry allows a match
        (x overlap_same_scale)."""
        if _in_one_camera_at_once(first, second):
            return False
        learned = self._learned_mapping
        met = False
        for camera, feet in self._feet_of(first).items():
            for other, theirs in self._feet_of(second).items():
                homography = learned(camera, other)
                if homography is None:
                    continue
                mine, their = common_points(feet, theirs)
                if len(mine) < self.config.overlap_min_common:
                    continue
                error = reprojection_error(homography, mine, their)
                if error > self.config.overlap_same_error:  # apart in any learned view: two people
                    return False
                met = met or frozenset((camera, other)) in pairs
        return met and self._gallery_distance(first, second) * self.config.overlap_same_scale < 1.0

    def _learned_mapping(self, first: str, second: str) -> np.ndarray | None:
        """A learned (never calibrated) mapping between two cameras' views, either way round."""
        if first == second or self.calibration is not None and self.calibration.between(first, second) is not None:
            return None
        return self.view_mapping(first, second)

    def _gallery_distance(self, first: Identity, second: Identity) -> float:
        """Median over ``second``'s gallery of its distance to ``first``'s, over the threshold of its space."""
        if not first.gallery or not second.gallery:  # tracklets without an embedding leave feet, no gallery
            return float("inf")
        reduce = np.min if self.config.gallery_metric == "min" else np.mean
        means_first = [m for m in first.crop_means if m is not None]
        means_second = [m for m in second.crop_means if m is not None]
        if self.metric is not None and means_first and means_second:
            queries, gallery = self.metric.embed_each(np.asarray(means_second)), self.metric.embed_each(np.asarray(means_first))
            threshold = self.config.metric_threshold
        else:
            queries, gallery = self.centre.apply(np.asarray(second.gallery)), self.centre.apply(np.asarray(first.gallery))
            threshold = self.config.threshold
        return float(np.median(reduce(1.0 - queries @ gallery.T, axis=1))) / threshold

    def _merge(self, identity: Identity, into: Identity) -> None:
        """``identity`` becomes part of ``into``: gallery, spans, running tracks, feet; its id is not given again."""
        kept = _joined_gallery(list(zip(into.gallery, into.crop_means)), list(zip(identity.gallery, identity.crop_means)),
                               into.gallery.maxlen)
        into.gallery = deque((e for e, _ in kept), maxlen=into.gallery.maxlen)
        into.crop_means = deque((m for _, m in kept), maxlen=into.crop_means.maxlen)
        for camera, spans in identity.spans.items():
            for span in spans:
                add_span(into.spans.setdefault(camera, []), *span)
        into.open_tracks.update(identity.open_tracks)
        for camera, feet in identity.recent_feet.items():
            kept = into.recent_feet.get(camera)
            joined = feet if kept is None else np.concatenate([kept, feet])
            into.recent_feet[camera] = joined[np.argsort(joined[:, 0], kind="stable")][-FEET_KEPT:]
        into.last_seen = max(into.last_seen, identity.last_seen)
        self.by_track = {key: into.global_id if gid == identity.global_id else gid for key, gid in self.by_track.items()}
        del self.identities[identity.global_id]

    def _relink(self, observation: Observation, identity: Identity) -> Assignment:
        """The track goes on under ``identity`` (its tracklets from now on); its previous identity keeps its past
        and is no longer held in that camera by the track (``_record``)."""
        self._record(observation, identity)
        return Assignment(observation.uid, identity.global_id, float("nan"), "relinked")

    def _open(self, observation: Observation) -> Assignment:
        size = self.config.gallery_size
        identity = self.identities[self._next_id] = Identity(self._next_id, deque(maxlen=size), deque(maxlen=size))
        self._next_id += 1
        self._record(observation, identity)
        return Assignment(observation.uid, identity.global_id, float("nan"), "new")

    def _record(self, observation: Observation, identity: Identity) -> None:
        key = (observation.camera_id, observation.track_id)
        previous = self.identities.get(self.by_track.get(key, -1))
        if previous is not None and previous is not identity:  # the track goes on under another identity:
            previous.open_tracks.pop(key, None)  # which no longer holds the old one in that camera
        identity.add(observation)
        if observation.continues:
            self.by_track[key] = identity.global_id
        else:  # the track's last tracklet: nothing will continue it
            self.by_track.pop(key, None)
