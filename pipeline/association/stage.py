"""The identity stage: finished tracklets -> observations -> global ids, as one object.

    stage = IdentityStage(config)                     # a PipelineConfig: tracklets, reid and association keys
    for batch in stage.batches(finished): ...         # when to embed: reid.batch_size tracklets at a time
    embedded = stage.embed(embedder, batch)           # any thread: vectors and per-crop features
    assignments = stage.assign(batch, embedded)       # in batch order: online global ids
    final_ids, mode = stage.finish()                  # offline pass (files) or None (online / live)

The runner, live mode and tools/association_lab.py all go through this object, so the figures that chose
the association defaults come from the code the pipeline runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from pipeline.association.offline import refine_identities
from pipeline.association.online import OnlineAssociator
from pipeline.association.overlap import foot_points
from pipeline.association.records import Assignment, Observation
from pipeline.association.scene_metric import SceneMetric
from pipeline.config import AssociationConfig, PipelineConfig
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


class IdentityStage:
    """``background_refit``: refit the online scene metric on a worker thread (live mode must not stall);
    otherwise in place, which keeps file runs reproducible."""

    def __init__(self, config: PipelineConfig, background_refit: bool = False):
        self.association = config.association
        self.min_length = config.tracklets.min_length
        self.crops_per_tracklet = config.tracklets.crops_per_tracklet
        self.batch_size = config.reid.batch_size
        self.associator = OnlineAssociator(config.association, background_refit=background_refit)
        self.observations: list[Observation] = []  # kept for the offline pass only
        self.online_ids: dict[int, int] = {}  # uid -> online id, for the offline pass's numbering
        self.waiting: list[Tracklet] = []
        self.info: dict[str, Any] = {}  # the offline pass's report (refine_identities' info)
        self.counts = {"tracklets": 0, "crops_embedded": 0, "crop_features": 0, "refine_changes": 0}

    @property
    def offline(self) -> bool:
        return self.association.refine

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
        keep_feet = self.association.overlap
        return [Observation(t.uid, t.camera_id, t.track_id, t.start_time, t.end_time, embedded.vectors.get(t.uid),
                            continues=t.end_reason in CONTINUED_REASONS,
                            crop_features=embedded.crop_features.get(t.uid),
                            feet=foot_points(t.timestamps, [b[:4] for b in t.boxes]) if keep_feet else None)
                for t in tracklets]

    def assign(self, tracklets: Sequence[Tracklet], embedded: Embedded, crops_per_embed: int | None = None
               ) -> list[Assignment]:
        """Online global ids for one embedded batch (call in batch order); ``crops_per_embed``: crops the
        embedder ran per tracklet, for the counts (default: every kept crop)."""
        observations = self.observations_of(tracklets, embedded)
        per_embed = crops_per_embed or self.crops_per_tracklet
        self.counts["tracklets"] += len(tracklets)
        self.counts["crops_embedded"] += sum(min(len(t.crops), per_embed) for t in tracklets
                                             if t.uid in embedded.vectors)
        self.counts["crop_features"] += sum(len(c) for c in embedded.crop_features.values())
        assignments = self.associator.assign(observations)
        if self.offline:  # online ids are final when written: nothing to keep
            self.observations += observations
            self.online_ids.update({a.uid: a.global_id for a in assignments})
        return assignments

    def finish(self, metric: SceneMetric | None = None) -> tuple[dict[int, int] | None, str]:
        """(uid -> final global id, mode) after the offline pass; (None, "online") without one. ``metric``: a
        scene metric fitted elsewhere instead of the one the pass learns from this run (experiments)."""
        if not self.offline:
            return None, "online"
        final = refine_identities(self.observations, self.online_ids, self.association, self.info, metric)
        self.counts["refine_changes"] = sum(final[u] != self.online_ids[u] for u in final)
        return final, f"offline (online assignment + global refinement pass, {self.info['metric']})"

    @property
    def identities(self) -> int:
        return self.associator.identities_issued
