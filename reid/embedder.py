"""Embedder: tracklets (lists of BGR crops) -> L2-normalised STA embeddings.

    emb = Embedder()                      # the best trained model of this machine, else configs/reid/embedder.yaml's
    emb = Embedder.from_config(path)      # model and runtime options from an EmbedderConfig YAML
    vectors = emb.embed([crops_a, crops_b])   # (2, emb.embedding_dim) float32, unit norm

Each tracklet becomes one or more N-frame clips (``test_mode``: 'even' samples N frames spread
over the tracklet; 'all' uses every frame in consecutive clips and averages them). Clips of all
tracklets are batched together. On CUDA the model runs in fp16 autocast with channels_last.
``weights`` may be an STA checkpoint (.pt) or an ONNX export (.onnx, run with onnxruntime).
``runtime='onnxruntime'`` (or 'auto' on CPU) runs a checkpoint or untrained model through its ONNX export,
made once and cached by reid/onnx_cache.py: about 2x faster than torch on CPU, same embeddings
(cosine > 0.999). ``embed_with_frames`` also returns each used crop's one-frame-clip embedding from the
same backbone pass (per-crop features for the pipeline's scene metric). ``threads`` sets onnxruntime's intra-op threads (default: torch.get_num_threads()).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from configs import REPO_ROOT, load_dataclass
from reid import model_store
from reid.checkpoint import CheckpointError, load_checkpoint
from reid.model import ReIDConfig, build_model, load_config
from reid.preprocess import IMAGENET_MEAN, IMAGENET_STD, TEST_MODES, check_tracklets, clip_indices, normalize, resize_crop

DEFAULT_CONFIG = REPO_ROOT / "configs" / "reid" / "embedder.yaml"
RUNTIMES = ("torch", "onnxruntime", "auto")


@dataclass
class EmbedderConfig:
    weights: str = ""        # trained checkpoint (.pt) or .onnx; empty: the best model in <cache>/reid_models
                             # (reid/model_store.py), else the zero-shot model of model_config
    model_config: str = "configs/reid/sta_osnet_x0_25.yaml"
    device: str = "auto"     # auto | cpu | cuda | cuda:N
    batch_size: int = 16     # clips per forward pass
    test_mode: str = "even"  # even | all
    fp16: bool = True        # autocast on CUDA (ignored on CPU)
    runtime: str = "torch"   # torch | onnxruntime (cached ONNX export) | auto (onnxruntime on CPU, torch on CUDA)


class Embedder:
    def __init__(self, weights: str | Path | None = None, device: str = "auto", cfg: ReIDConfig | str | Path | None = None,
                 batch_size: int = 16, test_mode: str = "even", seq_len: int | None = None, fp16: bool = True,
                 runtime: str = "torch", threads: int | None = None):
        if weights is not None and cfg is not None:
            raise ValueError("pass either weights (a checkpoint or .onnx) or cfg (an untrained model), not both")
        if test_mode not in TEST_MODES:
            raise ValueError(f"test_mode must be one of {TEST_MODES}, got {test_mode!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if seq_len is not None and seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        if weights is None and cfg is None:  # the best trained model present, else configs/reid/embedder.yaml's
            weights, cfg = _model_source(load_dataclass(EmbedderConfig, DEFAULT_CONFIG))
        self.batch_size = batch_size
        self.test_mode = test_mode
        if weights is not None and str(weights).endswith(".onnx"):
            self._backend = _OnnxBackend(Path(weights), threads)
        else:
            self._backend = _TorchBackend(weights, cfg, _resolve_device(device), fp16)
            if runtime == "onnxruntime" or (runtime == "auto" and self._backend.device == "cpu"):
                self._backend = self._backend.as_onnx(seq_len or self._backend.seq_len, threads)
        self.seq_len = seq_len or self._backend.seq_len
        if self._backend.fixed_seq_len and self.seq_len != self._backend.seq_len:
            raise ValueError(f"{weights}: exported for seq_len {self._backend.seq_len}, got seq_len={seq_len}")

    @classmethod
    def from_config(cls, path: str | Path = DEFAULT_CONFIG) -> "Embedder":
        """An Embedder with every setting (model and runtime options) from an EmbedderConfig YAML."""
        c = load_dataclass(EmbedderConfig, path)
        weights, cfg = _model_source(c)
        return cls(weights, c.device, cfg, c.batch_size, c.test_mode, fp16=c.fp16, runtime=c.runtime)

    @property
    def embedding_dim(self) -> int:
        return self._backend.embedding_dim

    @property
    def model_info(self) -> dict[str, str]:
        """What ran: {model, file, sha256, training_data}, for summaries and evaluation reports."""
        return dict(self._backend.info)

    @property
    def device(self) -> str:
        return self._backend.device

    @property
    def input_size(self) -> tuple[int, int]:
        return self._backend.input_size

    def embed(self, tracklets: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
        """(T, E) float32 unit vectors, one per tracklet; T = 0 gives an empty (0, E) array."""
        return self._embed(tracklets, with_frames=False, test_mode=self.test_mode)[0]

    def embed_with_frames(self, tracklets: Sequence[Sequence[np.ndarray]], test_mode: str | None = None
                          ) -> tuple[np.ndarray, list[np.ndarray]]:
        """What embed() gives, and per tracklet the unit one-frame-clip embeddings (n_i, E) float32 of the n_i
        distinct crops its clips used, in crop order, read from the same backbone pass (STAModel.frame_embeddings):
        equal to embedding each of those crops alone with seq_len=1, at no extra backbone cost. ``test_mode``
        overrides the embedder's for this call ('all': a feature for every crop)."""
        if test_mode is not None and test_mode not in TEST_MODES:
            raise ValueError(f"test_mode must be one of {TEST_MODES}, got {test_mode!r}")
        if not self._backend.has_frames:
            raise ValueError(f"{self._backend.source}: this ONNX model has no 'frame_embedding' output; "
                             "re-export it with tools/export_reid.py")
        return self._embed(tracklets, with_frames=True, test_mode=test_mode or self.test_mode)

    def _embed(self, tracklets: Sequence[Sequence[np.ndarray]], with_frames: bool, test_mode: str
               ) -> tuple[np.ndarray, list[np.ndarray]]:
        check_tracklets(tracklets)
        clips = [(index, frames) for index, crops in enumerate(tracklets)
                 for frames in clip_indices(len(crops), self.seq_len, test_mode)]
        sums = np.zeros((len(tracklets), self.embedding_dim), dtype=np.float32)
        by_crop: list[dict[int, np.ndarray]] = [{} for _ in tracklets]  # crop index -> its one-frame embedding
        for start in range(0, len(clips), self.batch_size):
            chunk = clips[start:start + self.batch_size]
            pixels = np.stack([[resize_crop(tracklets[t][f], self.input_size) for f in frames]
                               for t, frames in chunk])
            embedded, frame_embedded = self._run(pixels, with_frames)
            np.add.at(sums, [t for t, _ in chunk], embedded)
            for (t, frames), vectors in zip(chunk, frame_embedded if with_frames else []):
                for crop, vector in zip(frames, vectors):
                    by_crop[t].setdefault(crop, vector)
        per_crop = [_unit(np.asarray([crops[i] for i in sorted(crops)], np.float32).reshape(-1, self.embedding_dim))
                    for crops in by_crop] if with_frames else []
        return _unit(sums), per_crop

    def embed_clips(self, pixels: np.ndarray) -> np.ndarray:
        """Raw model output (B, E) float32, not normalised, for resized clips (B, N, H, W, 3) RGB uint8."""
        return self._run(pixels, with_frames=False)[0]

    def _run(self, pixels: np.ndarray, with_frames: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw clip embeddings (B, E) and, when asked, raw one-frame embeddings (B, N, E)."""
        expected = (self.seq_len, *self.input_size, 3)
        if pixels.ndim != 5 or pixels.shape[1:] != expected or pixels.dtype != np.uint8:
            raise ValueError(f"expected uint8 clips of shape (B, {', '.join(map(str, expected))}), "
                             f"got {pixels.dtype} {pixels.shape}")
        return self._backend.run(pixels, with_frames)


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


class _TorchBackend:
    fixed_seq_len = False
    has_frames = True

    def __init__(self, weights: str | Path | None, cfg: ReIDConfig | str | Path | None, device: torch.device, fp16: bool):
        if weights is not None:
            model, cfg, meta = load_checkpoint(weights, map_location="cpu")
            self.info = model_store.describe_checkpoint(weights, cfg, meta)
        else:
            cfg = cfg if isinstance(cfg, ReIDConfig) else load_config(cfg)
            model = build_model(cfg)
            self.info = model_store.describe_config_model(cfg)
        self.cfg = cfg
        self.seq_len, self.input_size, self.embedding_dim = cfg.seq_len, tuple(cfg.input_size), cfg.embed_dim
        self._device = device
        self._autocast = fp16 and device.type == "cuda"
        memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
        self.model = model.to(device, memory_format=memory_format).eval()

    @property
    def device(self) -> str:
        return str(self._device)

    def as_onnx(self, seq_len: int, threads: int | None) -> "_OnnxBackend":
        from reid.onnx_cache import cached_onnx

        backend = _OnnxBackend(cached_onnx(self.model, self.cfg, seq_len), threads)
        backend.info = {**self.info, "runtime": f"onnxruntime export {backend.source.name}"}
        return backend

    @torch.inference_mode()
    def run(self, pixels: np.ndarray, with_frames: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        clips = normalize(torch.from_numpy(pixels).to(self._device, non_blocking=True))
        with torch.autocast(self._device.type, dtype=torch.float16, enabled=self._autocast):
            if not with_frames:
                return self.model(clips).float().cpu().numpy(), None
            embedded, frames = self.model.embed_with_frames(clips)
            return embedded.float().cpu().numpy(), frames.float().cpu().numpy()


class _OnnxBackend:
    fixed_seq_len = True

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime  # only needed for ONNX models

        if not path.is_file():
            raise CheckpointError(f"ONNX model not found: {path}")
        options = onnxruntime.SessionOptions()
        # default: one knob (torch.set_num_threads) for both engines
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # idle pool threads would spin on cores that the detector or other processes need
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=onnxruntime.get_available_providers())
        except Exception as err:  # onnxruntime raises its own types for truncated or foreign files
            raise CheckpointError(f"{path}: not a readable ONNX model: {str(err).splitlines()[0]}") from None
        model_input = self.session.get_inputs()[0]
        _, self.seq_len, _, height, width = model_input.shape
        self.input_size = (height, width)
        model_outputs = self.session.get_outputs()
        outputs = [output.name for output in model_outputs]
        self.embedding_dim = model_outputs[0].shape[1]
        self.has_frames = "frame_embedding" in outputs  # exports made before it have only the clip embedding
        self._outputs = outputs[:1] + (["frame_embedding"] if self.has_frames else [])
        self.source = path
        self.info = {**model_store.describe(path, "unknown (an ONNX export)"), "model": path.stem}
        self._input_name = model_input.name
        self._mean = np.array(IMAGENET_MEAN, dtype=np.float32) * 255
        self._std = np.array(IMAGENET_STD, dtype=np.float32) * 255

    @property
    def device(self) -> str:
        return "onnxruntime:" + self.session.get_providers()[0]

    def run(self, pixels: np.ndarray, with_frames: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        clips = ((pixels.astype(np.float32) - self._mean) / self._std).transpose(0, 1, 4, 2, 3)
        names = self._outputs if with_frames else self._outputs[:1]
        results = self.session.run(names, {self._input_name: np.ascontiguousarray(clips)})
        return results[0], results[1] if with_frames else None


def _model_source(c: EmbedderConfig) -> tuple[Path | None, Path | None]:
    """(checkpoint or .onnx, None) when the config names trained weights or this machine has a best trained
    model (reid/model_store.py), else (None, model config)."""
    if c.weights:
        return _repo_path(c.weights), None
    best = model_store.best_model_file()
    if best is not None:
        return best, None
    return None, _repo_path(c.model_config)


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return resolved


def _repo_path(path: str | Path) -> Path:
    path = Path(path)
    return path if path.is_absolute() else REPO_ROOT / path
