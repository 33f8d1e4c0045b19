"""The identity stage: finished tracklets -> observations -> global ids, as one object.

    stage = IdentityStage(config)                     # a PipelineConfig: tracklets, reid and association keys
    for batch in stage.batches(finished): ...         # when to embed: reid.batch_size tracklets at a time
    embedded = stage.embed(embedder, batch)           # any thread: vectors and per-crop features
    assignments = stage.assign(batch, embedded)       # in batch order: online global ids
    final_ids, mode = stage.finish()                  # offline pass (files) or None (online / live)
    stage.open_store(config, embedder, sources, live) # optional: resume from and write to pipeline/store.py
    stage.close_store(colour_stats)

With a store, ``assign`` commits the batch (sightings and the identities they touched) before it returns, so
the events the caller writes next are always in the store; ``finish`` writes the offline pass's ids to it.
Observation times are on the store clock: the tracklet's time + ``clock_offset`` (0 without a store).

The runner, live mode and tools/association_lab.py all go through this object, so the figures that chose
the association defaults come from the code the pipeline runs.
"""

from __future__ import annotations

from collections import Counter, deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.association.offline import learn_view_overlaps, refine_identities
from pipeline.association.online import Identity, OnlineAssociator
from pipeline.association.records import Assignment, Observation, has_crop_features
from pipeline.association.scene_metric import SceneMetric
from pipeline.config import AssociationConfig, PipelineConfig, config_to_dict
from pipeline import store as identity_store  # a module: pipeline.store imports pipeline.association
from pipeline.geometry import CameraCalibration
from pipeline.tracklets import CONTINUED_REASONS, Tracklet


@dataclass
class Embedded:
    """What the embedder made of one batch: uid -> unit vector, and uid -> per-crop features (float16)."""

    vectors: dict[int, np.ndarray] = field(default_factory=dict)
    crop_features: dict[int, np.ndarray] = field(default_factory=dict)


def clip_mode(config: AssociationConfig) -> str:
    """Embedder test mode: 'all' (every kept crop, consecutive clips) when the offline pass or the online
    matching learns a scene metric, whose per-crop features come from those clips; with only the N crops of
    one 'even' clip it loses 2-3 points of MTMC IDF1 (PETS demo and held-out scenes)."""
    return "all" if config.scene_metric and (config.refine or config.online_metric) else "even"


VIEWS_RELEARN_EVERY = 32  # live mode: tracklets between two learnings of the overlapping views
VIEWS_EAGER = 128  # live mode: until this many tracklets, learn the views at every batch while none are known
STORED_ID_SHARE = 1 / 3  # of a cluster's tracklets matched to a stored identity for it to take that id back:
# a lone wrong online match does not hand a new person an old id
RESTART_WINDOW_S = 5.0  # store clock: seen this close to the end of the last run / the start of this one
RESTART_MATCH_RATIO = 2.0  # x the threshold: how far a person in view across a restart may look from their gallery


class IdentityStage:
    """``background_refit``: refit the online scene metric and relearn the overlapping views on worker threads
    (live mode must not stall); otherwise in place, which keeps file runs reproducible."""

    def __init__(self, config: PipelineConfig, background_refit: bool = False):
        self.association = config.association
        self.min_length = config.tracklets.min_length
        self.crops_per_tracklet = config.tracklets.crops_per_tracklet
        self.batch_size = config.reid.batch_size
        self.calibration = CameraCalibration.from_config(config.cameras)
        self.associator = OnlineAssociator(config.association, background_refit=background_refit,
                                           calibration=self.calibration)
        self.observations: list[Observation] = []  # kept for the offline pass only
        self.recent: deque[Observation] = deque(maxlen=config.association.metric_window)  # live: views learnt from
        self._unlearned = 0  # tracklets since the views were last learned
        self._views: Future | None = None  # a learning on the associator's worker, taken up by a later batch
        self.online_ids: dict[int, int] = {}  # uid -> online id, for the offline pass's numbering
        self.waiting: list[Tracklet] = []
        self.info: dict[str, Any] = {}  # the offline pass's report (refine_identities' info)
        self.counts = {"tracklets": 0, "crops_embedded": 0, "crop_features": 0, "refine_changes": 0,
                       "geometry_cuts": 0}
        self.assigned_ids: set[int] = set()  # global ids given in this run
        self.store: "identity_store.IdentityStore | None" = None
        self.clock_offset = 0.0  # store clock at this run's time 0
        self.resumed: dict[int, tuple[list, list, float]] = {}  # offline runs: stored galleries as resumed
        self.next_id = 1  # after finish: the next unused global id
        self.store_info: dict[str, Any] = {}  # for the run's summary: path, run, resumed identities, clock offset
        self._merges_saved = 0  # of associator.merged, written to the store

    @property
    def offline(self) -> bool:
        return self.association.refine

    @property
    def learns_views(self) -> bool:
        """Live mode (no offline pass) learns which views overlap from its recent tracklets as it runs."""
        return not self.offline and self.association.overlap

    @property
    def uses_running_feet(self) -> bool:
        """Online assignment compares with running tracks' feet: between calibrated cameras, or live mode's
        learned views."""
        return len(self.calibration.to_plane) >= 2 or self.learns_views

    @property
    def wants_crop_features(self) -> bool:
        return clip_mode(self.association) == "all"

    # ---- batching and embedding (what to embed, when) ---------------------------------------------------
    def batches(self, finished: Sequence[Tracklet], flush: bool = False) -> list[list[Tracklet]]:
        """Batches to embed now: the waiting tracklets once there are ``reid.batch_size`` of them, or all of
        them with ``flush`` (a source ended, or live mode, which embeds every tracklet as it finishes)."""
        self.waiting += finished
        if not self.waiting or (len(self.waiting) < self.batch_size and not flush):
            return []
        batch, self.waiting = self.waiting, []
        return [batch]

    def embed(self, embedder: Any, tracklets: Sequence[Tracklet]) -> Embedded:
        """Embed the tracklets long enough to match; thread-safe (touches no state of the stage). Per-crop
        features, when a scene metric is learned, are the one-frame embeddings of the crops the clips used,
        read from the same backbone pass (Embedder.embed_with_frames)."""
        usable = [t for t in tracklets if t.crops and len(t) >= self.min_length]
        if not usable:
            return Embedded()
        uids, crop_lists = [t.uid for t in usable], [t.crops for t in usable]
        if not self.wants_crop_features:
            return Embedded(dict(zip(uids, embedder.embed(crop_lists))))
        vectors, crops = embedder.embed_with_frames(crop_lists, clip_mode(self.association))
        return Embedded(dict(zip(uids, vectors)), {uid: c.astype(np.float16) for uid, c in zip(uids, crops)})

    # ---- assignment ------------------------------------------------------------------------------------
    def observations_of(self, tracklets: Sequence[Tracklet], embedded: Embedded) -> list[Observation]:
        return [Observation(t.uid, t.camera_id, t.track_id, t.start_time, t.end_time, embedded.vectors.get(t.uid),
                            continues=t.end_reason in CONTINUED_REASONS,
                            crop_features=embedded.crop_features.get(t.uid), feet=t.feet)
                for t in tracklets]

    def assign(self, tracklets: Sequence[Tracklet], embedded: Embedded, crops_per_embed: int | None = None,
               running: dict[tuple[str, int], np.ndarray] | None = None) -> list[Assignment]:
        """Online global ids for one embedded batch (call in batch order); ``crops_per_embed``: crops the
        embedder ran per tracklet, for the counts (default: every kept crop); ``running``: recent feet of the
        tracks still running (TrackletBuffer.running_feet), used with calibrated cameras."""
        observations = self.observations_of(tracklets, embedded)
        for observation in observations:  # the store's clock (pipeline/store.py)
            observation.start_time += self.clock_offset
            observation.end_time += self.clock_offset
        per_embed = crops_per_embed or self.crops_per_tracklet
        self.counts["tracklets"] += len(tracklets)
        self.counts["crops_embedded"] += sum(min(len(t.crops), per_embed) for t in tracklets
                                             if t.uid in embedded.vectors)
        self.counts["crop_features"] += sum(len(c) for c in embedded.crop_features.values())
        if self.learns_views:
            self._learn_views(observations)
        assignments = self.associator.assign(observations, running)
        self.assigned_ids.update(a.global_id for a in assignments)
        if self.store is not None:
            self._persist(tracklets, observations, assignments)
        if self.offline:  # online ids are final when written: nothing to keep
            self.observations += observations
            self.online_ids.update({a.uid: a.global_id for a in assignments})
        return assignments

    def _learn_views(self, observations: Sequence[Observation]) -> None:
        """Learn the overlapping views from the recent window with this batch, before it is assigned: at every
        batch while none are found in the first VIEWS_EAGER tracklets (an identity split across the views early
        stays split), otherwise every VIEWS_RELEARN_EVERY tracklets (cameras that share no view must not pay
        at every batch; the offline pass learns the views once, from the whole run)."""
        if self._views is not None and self._views.done():
            self._take_up_views(self._views.result())
            self._views = None
        self.recent.extend(o for o in observations if o.feet is not None)
        self._unlearned += len(observations)
        eager = not self.associator.learned_views and len(self.recent) < VIEWS_EAGER
        if (not eager and self._unlearned < VIEWS_RELEARN_EVERY) or self._views is not None:
            return
        self._unlearned = 0
        window, metric = list(self.recent), self.associator.metric
        if self.associator.background is None:
            self._take_up_views(learn_view_overlaps(window, self.association, metric, self.calibration))
        else:
            self._views = self.associator.background.submit(learn_view_overlaps, window, self.association, metric,
                                                            self.calibration)

    def _take_up_views(self, fits: list) -> None:
        """A pair's new mapping replaces its old one; a pair the window no longer verifies keeps its mapping
        (cameras do not move, but a window of few walkers may give too little evidence). New learned mappings
        go to the identity store, when there is one."""
        known = {(f.first, f.second): f for f in self.info.get("overlaps", [])}
        known.update({(f.first, f.second): f for f in fits})
        self.associator.learned_views = {pair: f.homography for pair, f in known.items()}
        self.info["overlaps"] = list(known.values())
        if self.store is not None and any(f.source == "learned" for f in fits):
            self.store.save_views(fits)

    def finish(self, metric: SceneMetric | None = None) -> tuple[dict[int, int] | None, str]:
        """(uid -> final global id, mode) after the offline pass; (None, "online") without one. ``metric``: a
        scene metric fitted elsewhere instead of the one the pass learns from this run (experiments)."""
        if not self.offline:
            return None, "online"
        final = refine_identities(self.observations, self.online_ids, self.association, self.info, metric,
                                  self.calibration)
        final = self._continue_numbering(final)
        self.counts["refine_changes"] = sum(final[u] != self.online_ids[u] for u in final)
        self.counts["geometry_cuts"] = self.info["geometry_cuts"]
        if self.store is not None:
            self.store.save_final(final, self._final_identities(final), self._associator_state())
            self.store.save_views(self.info["overlaps"])
        return final, f"offline (online assignment + global refinement pass, {self.info['metric']})"

    @property
    def overlapping_views(self) -> list[dict[str, Any]]:
        """Camera pairs the offline pass found to share a view: calibrated, or learned from the run with the
        number of simultaneous pairs of tracks the learned mapping explains."""
        return [{"cameras": [f.first, f.second], "source": f.source, "pairs": f.inliers}
                for f in self.info.get("overlaps", [])]

    @property
    def merged_identities(self) -> list[list[int]]:
        """[newer id, older id] of identities live mode merged when it learned views (online._merge_same_place)."""
        return [list(pair) for pair in self.associator.merged]

    @property
    def merged_into(self) -> dict[int, int]:
        """Each id live mode merged away -> the id it lives on as (through later merges of that one too)."""
        into = dict(self.associator.merged)
        resolved = {}
        for gone in into:
            kept = into[gone]
            while kept in into:
                kept = into[kept]
            resolved[gone] = kept
        return resolved

    @property
    def identities(self) -> int:
        """Ids given in this run, less those merged into another (one person, one id)."""
        return len(self.assigned_ids - {gone for gone, _ in self.associator.merged})

    # ---- the identity store ----------------------------------------------------------------------------
    def open_store(self, config: PipelineConfig, embedder: Any, sources: Sequence[str], live: bool) -> None:
        """Open ``store.path`` (pipeline/store.py; live runs default to <out>/identities.sqlite) and resume:
        the stored identities join the associator, their ids and the id sequence go on."""
        path = identity_store.store_path(config, live)
        if path is None:
            return
        store = identity_store.IdentityStore(path)
        try:
            resume = store.begin_run(config_to_dict(config), identity_store.describe_model(embedder), sources,
                                     self.association.forget_after_s, self.association.gallery_size,
                                     self.association.metric_window, config.store.retention_days,
                                     config.store.on_model_mismatch, embedder.embed)
        except BaseException:
            store.close()
            raise
        self.store, self.clock_offset = store, resume.clock_offset
        self.store_info = {"path": str(path), "run": resume.run_id, "resumed_identities": len(resume.identities),
                           "next_id": resume.state.next_id, "clock_offset": resume.clock_offset}
        self.thumbnail = (config.store.thumbnail_height, config.store.thumbnail_quality)
        if self.offline:
            self.resumed = {i.global_id: (list(i.gallery), list(i.crop_means), i.last_seen) for i in resume.identities}
        state = resume.state
        self.associator.adopt(resume.identities, state.next_id, resume.metric_groups,
                              (state.centre_total, state.centre_count))
        # live: match with the views earlier runs learned from the start, but for pairs this run calibrates
        stored = [v for v in resume.views if self.calibration.between(v.first, v.second) is None]
        if self.learns_views and stored:
            self._take_up_views(stored)

    def close_store(self, colour_stats: dict | None = None) -> None:
        if self.store is None:
            return
        try:
            self.store.end_run(colour_stats)
        finally:
            self.store.close()
            self.store = None

    def _associator_state(self) -> identity_store.AssociatorState:
        centre = self.associator.centre
        next_id = max(self.next_id, self.associator.identities_issued + 1)
        return identity_store.AssociatorState(next_id, centre.total, centre.count)

    def _persist(self, tracklets: Sequence[Tracklet], observations: Sequence[Observation],
                 assignments: Sequence[Assignment]) -> None:
        """The batch's sightings and the identities they touched, in one transaction."""
        by_uid = {a.uid: a for a in assignments}
        sightings = [self._sighting(t, o, by_uid[t.uid]) for t, o in zip(tracklets, observations)]
        known = self.associator.identities
        merged = self.associator.merged[self._merges_saved:]  # the kept one changed, the other is no more
        self._merges_saved += len(merged)
        touched = {a.global_id for a in assignments} | {kept for _, kept in merged}
        self.store.save_batch(sightings, [known[g] for g in touched if g in known], self._associator_state(),
                              merged=merged)

    def _sighting(self, tracklet: Tracklet, observation: Observation, assignment: Assignment
                  ) -> identity_store.Sighting:
        crops = tracklet.crops
        thumbnail = identity_store.thumbnail_jpeg(crops[len(crops) // 2], *self.thumbnail) if crops else None
        return identity_store.Sighting(
            tracklet.uid, tracklet.camera_id, tracklet.track_id, tracklet.part, observation.start_time,
            observation.end_time, tracklet.first_frame + 1, tracklet.last_frame + 1, len(tracklet),
            assignment.global_id, assignment.how, assignment.distance, assignment.space, thumbnail,
            observation.crop_features if has_crop_features(observation) else None)

    def _continue_numbering(self, final: dict[int, int]) -> dict[int, int]:
        """Clusters the offline pass numbered anew (from the largest online id + 1) take the next ids of the
        associator's sequence instead, so that no id of an earlier run on the store is given again."""
        final = self._carry_over_restart(self._prefer_stored_ids(final))
        online = set(self.online_ids.values())
        fresh = sorted({g for g in final.values() if g not in online and g not in self.resumed})
        first = self.associator.identities_issued + 1
        renumber = {old: first + k for k, old in enumerate(fresh)}
        self.next_id = first + len(fresh)
        return {uid: renumber.get(g, g) for uid, g in final.items()}

    def _prefer_stored_ids(self, final: dict[int, int]) -> dict[int, int]:
        """A cluster the offline pass numbered with an id of this run takes instead the stored id (resumed from
        an earlier run) that at least STORED_ID_SHARE of its tracklets were matched to online: the id the
        person had before the restart. Clusters already under a stored id keep it; each id goes to one cluster."""
        clusters: dict[int, list[int]] = {}
        for uid, global_id in final.items():
            clusters.setdefault(global_id, []).append(uid)
        used = {global_id for global_id in clusters if global_id in self.resumed}
        renamed = {}
        for global_id, uids in sorted(clusters.items(), key=lambda item: -len(item[1])):
            if global_id in used:
                continue
            votes = Counter(self.online_ids[u] for u in uids if self.online_ids[u] in self.resumed)
            chosen = next((stored for stored, count in votes.most_common()
                           if count >= STORED_ID_SHARE * len(uids) and stored not in used), None)
            if chosen is not None:
                renamed[global_id] = chosen
                used.add(chosen)
        return {uid: renamed.get(global_id, global_id) for uid, global_id in final.items()}

    def _carry_over_restart(self, final: dict[int, int]) -> dict[int, int]:
        """People in view across the restart: a cluster of this run with no stored id, seen from the run's first
        RESTART_WINDOW_S, takes a stored id left unclaimed whose identity was seen in the last RESTART_WINDOW_S
        of the previous run, when it looks like that identity's gallery within RESTART_MATCH_RATIO x the
        threshold (median over the cluster's tracklets; one to one, Hungarian). A glimpse at the end of a run
        (a person entering) is too little gallery for the usual threshold, the timing says who it was."""
        previous_end = self.clock_offset - identity_store.RUN_GAP_S
        used = set(final.values())
        stored = [self.associator.identities[g] for g, (_, _, last_seen) in self.resumed.items()
                  if g not in used and g in self.associator.identities and last_seen >= previous_end - RESTART_WINDOW_S]
        clusters: dict[int, list[Observation]] = {}
        for observation in self.observations:
            clusters.setdefault(final[observation.uid], []).append(observation)
        fresh = [g for g, members in clusters.items() if g not in self.resumed
                 and min(o.start_time for o in members) <= self.clock_offset + RESTART_WINDOW_S]
        if not stored or not fresh:
            return final
        cost = np.full((len(fresh), len(stored)), np.inf)
        for row, global_id in enumerate(fresh):
            distance, in_metric = self.associator.distance_matrix(clusters[global_id], stored)
            threshold = np.where(in_metric, self.association.metric_threshold, self.association.threshold)
            cost[row] = np.median(distance / threshold, axis=0)
        rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e9))
        renamed = {fresh[r]: stored[c].global_id for r, c in zip(rows, cols) if cost[r, c] < RESTART_MATCH_RATIO}
        return {uid: renamed.get(global_id, global_id) for uid, global_id in final.items()}

    def _final_identities(self, final: dict[int, int]) -> list[Identity]:
        """Each final identity as the store keeps it: its gallery as resumed, then this run's tracklets with
        that final id in time order (Identity.add, as online)."""
        size = self.association.gallery_size
        rebuilt = {}
        for global_id in set(final.values()) | set(self.online_ids.values()):
            gallery, means, last_seen = self.resumed.get(global_id, ((), (), float("-inf")))
            rebuilt[global_id] = Identity(global_id, deque(gallery, maxlen=size), deque(means, maxlen=size),
                                          last_seen=last_seen)
        for observation in sorted(self.observations, key=lambda o: o.end_time):
            rebuilt[final[observation.uid]].add(observation)
        return list(rebuilt.values())
