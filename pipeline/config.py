"""Typed configuration of the multi-camera pipeline (loaded from configs/pipeline.yaml and friends).

Sections mirror the stages of the data flow; every YAML key and every ``--section.key`` CLI flag maps
onto one field here, and unknown keys are errors (see configs.build_dataclass).
"""

from __future__ import annotations

import copy
import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from configs import ConfigError, build_dataclass, read_yaml
from pipeline.appearance import COLOUR_NORMS

STORE_MODEL_MISMATCH = ("refuse", "new", "reembed")
BACKENDS = ("local", "ray")


@dataclass
class DetectorConfig:
    # yolox (ONNX via onnxruntime) | ultralytics | mot (precomputed det/gt files), or a model / det file whose
    # kind picks the adapter (pipeline/detectors.py resolve_detector)
    name: str = "yolox"
    model: str = ""  # weights path; empty = the default of the adapter (YOLOX-Nano from the data root)
    conf: float = 0.3  # minimum person score kept
    iou: float = 0.5  # NMS IoU threshold
    imgsz: int = 640  # ultralytics inference size (YOLOX uses the ONNX input size)
    # mot detector: one file per source (same order), or one pattern with "{camera}" in it
    det_files: list[str] = field(default_factory=list)
    min_height: float = 0.0  # drop boxes shorter than this many pixels


@dataclass
class TrackerConfig:
    name: str = ""  # empty = trackers.DEFAULT_TRACKER
    overrides: dict[str, Any] = field(default_factory=dict)  # keyword arguments for create_tracker


@dataclass
class ReidConfig:
    weights: str = ""  # empty = the Embedder's default (reid/model_store.py: best trained model, else zero-shot STA-OSNet)
    batch_size: int = 16  # tracklets embedded per forward pass


@dataclass
class TrackletConfig:
    crops_per_tracklet: int = 8  # M: crops kept per tracklet (quality-sampled, spread in time)
    max_length: int = 150  # frames; a longer track is cut into consecutive tracklets
    lost_timeout: int = 30  # frames without an update before a track's tracklet is finalised
    min_length: int = 3  # tracklets with fewer boxes are written under their track's identity but not matched
    min_crop_height: int = 24  # pixels; smaller boxes are not used as ReID crops
    # per-camera colour normalisation of crops (pipeline/appearance.py): none | gray | meanstd
    colour_norm: str = "meanstd"  # the offline scene metric needs it (held-out PETS MTMC IDF1 68.5 vs 56.3 with none)


@dataclass
class TransitionWindow:
    """Allowed travel time (seconds) from leaving camera ``src`` to entering camera ``dst``."""

    src: str
    dst: str
    min_s: float = 0.0
    max_s: float = 1e9


@dataclass
class AssociationConfig:
    threshold: float = 0.7  # max (centred) cosine distance for a tracklet to join an identity
    gallery_size: int = 16  # embeddings kept per identity
    gallery_metric: str = "min"  # min | mean: distance of a tracklet to an identity's gallery
    # online: an identity unseen this long (tracklet clock) leaves matching for good, its id never reused;
    # bounds the state of long live runs; 0 = never forget
    forget_after_s: float = 3600.0
    center: bool = True  # subtract the running mean embedding (generic features share a large common part)
    refine: bool = True  # offline runs: final global clustering pass over all tracklets
    refine_threshold: float = 0.8  # distance threshold of that pass (plain cosine); < 0 = same as threshold
    # scene-adaptive metric (pipeline/association/scene_metric.py) for the offline pass and, with online_metric, online
    # matching: LDA on per-crop features with must-links within tracklets and cannot-links between
    # same-camera tracks that overlap in time
    scene_metric: bool = True
    metric_dims: int = 16  # LDA output dimensions
    metric_pca_dims: int = 64  # PCA before LDA (fewer when the run has fewer crops)
    metric_shrinkage: float = 0.1  # within-track scatter += shrinkage * mean eigenvalue * I
    metric_min_pairs: int = 10  # fewer cannot-link pairs than this: plain cosine on tracklet embeddings
    metric_threshold: float = 0.5  # cosine distance threshold in the learned metric (offline pass and online)
    # online matching in the scene metric too, once the run gives enough constraints to learn it: refitted
    # every METRIC_REFIT_EVERY (pipeline/association/online.py) new tracklets on the last metric_window ones,
    # matched at metric_threshold (live mode, which has no offline pass, gains the most); off: centred
    # cosine at threshold
    online_metric: bool = True
    # online, no metric before the window holds this many tracklets with crops: one learned from a live run's first
    # seconds (a few people, 16 dims) matched people of unrelated cameras. Offline keeps fitting on fewer (a short
    # clip's whole run: the delayed PETS copy links only through it)
    online_metric_min_tracklets: int = 32
    metric_window: int = 512  # a refit costs ~0.3 s on 2 CPU cores (8 crops per tracklet)
    # the offline pass merges across two cameras at its threshold only with evidence that they see the same
    # people: at least camera_link_min_pairs of their tracks are mutual nearest neighbours at under
    # camera_link_ratio * threshold; otherwise only such confident merges (a camera of another place would
    # else lend a look-alike track to a cluster); 0 = off
    # the offline pass cuts a local track between consecutive tracklets further apart than split_ratio x its
    # threshold (the tracker swapped two people); 0 = never
    split_ratio: float = 1.5  # PETS held-out MTMC IDF1 +1.6..+4 (OSNet), Terrace YOLOX per-camera IDF1 +3..+8
    # online: a tracklet continuing a local track that no longer matches the track's identity (over the
    # threshold, geometry included) is matched afresh; it takes another identity only when it matches one
    # (opening a new one instead split ground-truth tracks: EPFL Terrace live GT boxes 86.9 -> 76.7)
    rematch_continuations: bool = True  # EPFL Terrace live YOLOX-Nano MTMC IDF1 42.1 -> 52.3, calibrated 48.6 -> 64.0
    # live/online: when views are learned to overlap, identities they saw at one place at the same times, alike and
    # never in one camera at once, merge into the older one (a person given two ids before the views were known)
    merge_same_place: bool = True  # EPFL Terrace live YOLOX-Nano 52.3 -> 53.7, first half 59.0 -> 62.1, GT 81.8 -> 83.0
    camera_link_min_pairs: int = 2
    camera_link_ratio: float = 0.4
    # overlapping views (pipeline/association/overlap.py): per camera pair, a mapping (similarity, affine or homography)
    # between the foot points of simultaneous tracks that are mutual nearest neighbours by appearance; when
    # at least overlap_min_pairs of them (and overlap_min_share) fit it, simultaneous tracks of the two
    # cameras whose median reprojection error is <= overlap_same_error box heights get
    # distance * overlap_same_scale, >= overlap_different_error a cannot-link; cameras without such a fit
    # keep appearance only
    overlap: bool = True  # EPFL Terrace GT boxes MTMC IDF1 51.0 -> 99.5; PETS held-out +2..+6 with split_ratio
    overlap_min_common: int = 10  # common frames for two tracks to count as simultaneous
    overlap_min_pairs: int = 4
    overlap_min_share: float = 0.6
    overlap_fit_error: float = 0.2  # box heights: RANSAC threshold, and the error of a pair that fits
    overlap_same_error: float = 0.25
    overlap_different_error: float = 1.0
    # online, one tracklet against an identity's recent feet: at or over this, two people. Tracklet pairs under
    # the views live mode learned (`mtmc lab --live` view_pair_errors): between 0.25 and 1.0 lie 0-7% of the
    # same person's (PETS, held-out PETS, Terrace), 8-57% of different people's. 0.35-0.45 give the same ids; 0.3 costs
    # held-out PETS 4, 0.5 Terrace GT boxes 8; 1.0 (as for tracks): Terrace live YOLOX-Nano 61.2 -> 53.7.
    # Offline keeps 1.0 for whole tracks (a cannot-link on a cluster; 0.5 there: Terrace YOLOX-Nano -0.3)
    overlap_tracklet_different_error: float = 0.4
    overlap_same_scale: float = 0.25
    # the offline pass also cuts a local track between consecutive tracklets further apart than
    # overlap_split_ratio x its threshold when an overlapping view shows two people: the first tracklet stood
    # with one track there, the second stands with another while the first is seen elsewhere; 0 = never
    overlap_split_ratio: float = 1.0  # EPFL Terrace YOLOX-Nano MTMC IDF1 57.9 -> 66.6 (GT boxes, PETS unchanged)
    # camera topology: when non-empty, a transition between two cameras not listed here is forbidden
    transitions: list[TransitionWindow] = field(default_factory=list)


@dataclass
class OutputConfig:
    out: str = "runs/pipeline"
    save_video: bool = False
    video_fourcc: str = "mp4v"


@dataclass
class StreamOptions:
    """How a network camera is read (pipeline/sources/streams.py); LiveConfig adds the live loop's own keys."""

    queue_size: int = 2  # newest frames kept for the consumer; older ones are dropped and counted
    open_timeout_s: float = 5.0  # connecting to a camera that never answers gives up after this
    read_timeout_s: float = 5.0  # a stream that stalls this long counts as lost
    backoff_initial_s: float = 0.5  # first wait before reconnecting
    backoff_factor: float = 2.0
    backoff_max_s: float = 10.0  # cap: a camera that is down is still tried this often
    backoff_jitter: float = 0.1  # +-fraction, so many cameras do not reconnect in lockstep
    gone_after_s: float = 30.0  # down this long -> state GONE (still retried)
    give_up_after_s: float = 0.0  # down this long -> stop for good and end iteration; 0 = never
    close_wait_s: float = 1.0  # close() waits this long for the reader, then leaves it to time out

    def __post_init__(self) -> None:
        if self.queue_size < 1:
            raise ConfigError(f"queue_size must be >= 1, got {self.queue_size}")
        for name in ("open_timeout_s", "read_timeout_s", "backoff_initial_s", "backoff_max_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.backoff_factor < 1:
            raise ConfigError(f"backoff_factor must be >= 1, got {self.backoff_factor}")

    def backoff_delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failed attempts (>= 1)."""
        base = min(self.backoff_max_s, self.backoff_initial_s * self.backoff_factor ** max(failures - 1, 0))
        return base * (1.0 + random.uniform(-self.backoff_jitter, self.backoff_jitter))



@dataclass
class LiveConfig(StreamOptions):
    """Live mode (any rtsp/rtmp/http source): online ids only, bounded by duration or a signal. The stream keys
    (queue_size, timeouts, backoff, gone_after_s, give_up_after_s) are StreamOptions', passed to every stream."""

    duration_s: float = 0.0  # stop after this many seconds of processing; 0 = until SIGINT/SIGTERM
    # a new tracklet is cut, embedded and given its global id once its track has this many boxes (the
    # track goes on under that id); 0 = only when the track ends or reaches tracklets.max_length
    mature_after: int = 15


@dataclass
class CameraConfig:
    """One camera's calibration. ``homography`` maps its image points (x, y, 1) to a ground plane shared by the
    cameras: the path of a text file (3 lines of 3 numbers, as EPFL / PETS / WILDTRACK ship them) or an inline
    3x3 matrix. With it, boxes get ground positions (mtmc.txt xworld yworld) and association uses them."""

    id: str
    homography: Any = None


@dataclass
class StoreConfig:
    """The identity store (pipeline/store.py): identities that survive restarts, and what queries read."""

    # SQLite file; "" = <output.out>/identities.sqlite for live runs, none for file runs; "none" = off
    path: str = ""
    retention_days: float = 30.0  # sightings (and identities) last seen longer ago are pruned; 0 = keep all
    thumbnail_height: int = 128  # pixels; one JPEG crop per sighting
    thumbnail_quality: int = 85  # JPEG quality 1-100
    # a store whose embeddings come from another ReID model: refuse | new (move it aside, start a new store)
    # | reembed (embed the stored thumbnails with this run's model)
    on_model_mismatch: str = "refuse"


@dataclass
class RayConfig:
    """The Ray backend (pipeline/ray_backend): camera workers spread over the nodes, embedders, one associator."""

    address: str = ""  # "" = start a local Ray runtime; "auto" or HOST:PORT = join that cluster
    cameras_per_worker: int = 1  # cameras one camera worker reads, detects and tracks (batched detection)
    worker_cpus: float = 0.5  # Ray CPUs reserved per camera worker
    embedders: int = 1  # embedder actors; batches go round-robin
    embedder_cpus: float = 0.5
    embedder_gpus: float = -1.0  # GPUs per embedder actor; < 0 = the cluster's GPUs shared out, 0 without any
    object_store_mb: int = 200  # object store of a local runtime (a joined cluster keeps its own)
    chunk_frames: int = 16  # camera frames a worker sends to the associator in one message
    chunks_in_flight: int = 2  # a worker waits while more of its messages are unprocessed (backpressure)
    max_lead_s: float = 5.0  # file runs: a camera this far (video time) ahead of the slowest one waits
    max_restarts: int = 3  # live runs: a dead camera worker is started again (elsewhere) this often


@dataclass
class PipelineConfig:
    device: str = "auto"  # auto | cpu | cuda:N (ReID and Ultralytics)
    backend: str = "local"  # local (one process) | ray (pipeline/ray_backend: cameras spread over machines)
    camera_ids: list[str] = field(default_factory=list)  # default: source file stems
    cameras: list[CameraConfig] = field(default_factory=list)  # calibration of some or all cameras (by id)
    max_frames: int = 0  # per source; 0 = all
    image_fps: float = 25.0  # frame rate assumed for image folders without a seqinfo.ini
    progress: bool = True
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    reid: ReidConfig = field(default_factory=ReidConfig)
    tracklets: TrackletConfig = field(default_factory=TrackletConfig)
    association: AssociationConfig = field(default_factory=AssociationConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    ray: RayConfig = field(default_factory=RayConfig)


def load_pipeline_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> PipelineConfig:
    """Defaults, then the YAML at ``path``, then ``overrides`` with dotted keys (``detector.conf``)."""
    values: dict[str, Any] = read_yaml(path) if path is not None else {}
    if path is not None:
        _homographies_relative_to(values, Path(path).parent)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(values, dotted, value)
    config = build_dataclass(PipelineConfig, values, source=str(path) if path else "config")
    _check(config)
    return config


def _homographies_relative_to(values: dict[str, Any], folder: Path) -> None:
    """Homography files named in a config file are relative to that file's folder (when they are there)."""
    for camera in values.get("cameras") or []:
        name = camera.get("homography") if isinstance(camera, dict) else None
        if isinstance(name, str) and not Path(name).is_absolute() and (folder / name).is_file():
            camera["homography"] = str(folder / name)


def config_fields(cls: type = PipelineConfig, prefix: str = "") -> dict[str, Any]:
    """Every leaf key as ``{"section.key": type hint}``: the CLI builds its flags from this."""
    import typing

    hints = typing.get_type_hints(cls)
    leaves: dict[str, Any] = {}
    for item in dataclasses.fields(cls):
        hint = hints[item.name]
        if dataclasses.is_dataclass(hint):
            leaves.update(config_fields(hint, f"{prefix}{item.name}."))
        else:
            leaves[f"{prefix}{item.name}"] = hint
    return leaves


def config_to_dict(config: PipelineConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _set_dotted(values: dict[str, Any], dotted: str, value: Any) -> None:
    *sections, key = dotted.split(".")
    node = values
    for section in sections:
        child = node.get(section)
        node[section] = copy.deepcopy(child) if isinstance(child, dict) else {}
        node = node[section]
    node[key] = value


def _check(config: PipelineConfig) -> None:
    checks = [
        (0.0 <= config.detector.conf <= 1.0, "detector.conf must be in [0, 1]"),
        (config.tracklets.crops_per_tracklet >= 1, "tracklets.crops_per_tracklet must be >= 1"),
        (config.tracklets.max_length >= 2, "tracklets.max_length must be >= 2"),
        (config.tracklets.colour_norm in COLOUR_NORMS, f"tracklets.colour_norm must be one of {COLOUR_NORMS}"),
        (config.tracklets.lost_timeout >= 1, "tracklets.lost_timeout must be >= 1"),
        (config.association.gallery_metric in ("min", "mean"), "association.gallery_metric must be min or mean"),
        (config.association.gallery_size >= 1, "association.gallery_size must be >= 1"),
        (0.0 < config.association.threshold <= 2.0, "association.threshold must be in (0, 2]"),
        (0.0 < config.association.metric_threshold <= 2.0, "association.metric_threshold must be in (0, 2]"),
        (0 <= config.association.online_metric_min_tracklets <= config.association.metric_window,
         "association.online_metric_min_tracklets must be in [0, association.metric_window]"),
        (config.association.metric_dims >= 1 and config.association.metric_pca_dims >= 1,
         "association.metric_dims and association.metric_pca_dims must be >= 1"),
        (config.association.metric_shrinkage >= 0, "association.metric_shrinkage must be >= 0"),
        (config.association.metric_window >= 2, "association.metric_window must be >= 2"),
        (config.association.forget_after_s >= 0, "association.forget_after_s must be >= 0"),
        (config.association.camera_link_min_pairs >= 0, "association.camera_link_min_pairs must be >= 0"),
        (0.0 < config.association.camera_link_ratio <= 1.0, "association.camera_link_ratio must be in (0, 1]"),
        (config.association.overlap_min_common >= 4 and config.association.overlap_min_pairs >= 1,
         "association.overlap_min_common must be >= 4 and association.overlap_min_pairs >= 1"),
        (0.0 <= config.association.overlap_min_share <= 1.0, "association.overlap_min_share must be in [0, 1]"),
        (0.0 < config.association.overlap_fit_error and
         0.0 <= config.association.overlap_same_error < min(config.association.overlap_different_error,
                                                            config.association.overlap_tracklet_different_error),
         "association.overlap_fit_error must be > 0 and 0 <= overlap_same_error < overlap_different_error and "
         "overlap_tracklet_different_error"),
        (0.0 <= config.association.overlap_same_scale <= 1.0, "association.overlap_same_scale must be in [0, 1]"),
        (config.association.overlap_split_ratio >= 0.0, "association.overlap_split_ratio must be >= 0"),
        (config.image_fps > 0, "image_fps must be > 0"),
        (config.live.duration_s >= 0, "live.duration_s must be >= 0"),
        (config.live.mature_after >= 0, "live.mature_after must be >= 0"),
        (config.store.retention_days >= 0, "store.retention_days must be >= 0"),
        (config.store.thumbnail_height >= 8, "store.thumbnail_height must be >= 8"),
        (1 <= config.store.thumbnail_quality <= 100, "store.thumbnail_quality must be in [1, 100]"),
        (config.backend in BACKENDS, f"backend must be one of {BACKENDS}"),
        (config.ray.cameras_per_worker >= 1 and config.ray.embedders >= 1 and config.ray.chunk_frames >= 1
         and config.ray.chunks_in_flight >= 1, "ray.cameras_per_worker, embedders, chunk_frames and "
         "chunks_in_flight must be >= 1"),
        (config.store.on_model_mismatch in STORE_MODEL_MISMATCH,
         f"store.on_model_mismatch must be one of {STORE_MODEL_MISMATCH}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    config.cameras = [c if isinstance(c, CameraConfig) else build_dataclass(CameraConfig, c, "cameras")
                      for c in config.cameras]
    for camera in config.cameras:
        if camera.homography is None:
            raise ConfigError(f"cameras: camera {camera.id!r} has no homography (a file path or a 3x3 matrix)")
    config.association.transitions = [
        t if isinstance(t, TransitionWindow) else build_dataclass(TransitionWindow, t, "association.transitions")
        for t in config.association.transitions
    ]
