"""Person detector adapters, each taking one batch of frames (one per camera) per call.

``detect(frames) -> list[(N, 5) float arrays x1, y1, x2, y2, score]``, one array per frame, person class only.
Adapters: YOLOX ONNX through onnxruntime, Ultralytics (any model it loads), and precomputed MOT files
(public detections or ground truth, which isolates association from detection errors).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Protocol, Sequence

import cv2
import numpy as np

from configs import UserError, data_root
from pipeline.config import DetectorConfig
from pipeline.motio import MOTFormatError, detections_by_frame, read_mot_rows
from pipeline.sources import Frame

DETECTOR_NAMES = ("yolox", "ultralytics", "mot")
ULTRALYTICS_SUFFIXES = (".pt", ".engine", ".torchscript")
PERSON_CLASS = 0
YOLOX_PAD_VALUE = 114.0
YOLOX_STRIDES = (8, 16, 32)


class DetectorError(UserError, RuntimeError):
    """A detector that cannot be built (weights missing, bad file); the message says how to fix it."""


class Detector(Protocol):
    def detect(self, frames: Sequence[Frame]) -> list[np.ndarray]: ...


def nms(boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of ``boxes`` (N, 5 with score last) kept by greedy non-maximum suppression."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=int)
    xywh = np.column_stack([boxes[:, :2], boxes[:, 2:4] - boxes[:, :2]])
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), boxes[:, 4].tolist(), 0.0, iou_threshold)
    return np.asarray(keep, dtype=int).reshape(-1)


def filter_boxes(boxes: np.ndarray, conf: float, min_height: float) -> np.ndarray:
    keep = (boxes[:, 4] >= conf) & (boxes[:, 3] - boxes[:, 1] >= min_height)
    return boxes[keep]


class YoloxOnnxDetector:
    """YOLOX exported to ONNX (raw head output: cx, cy, w, h on grids, sigmoid obj and class scores)."""

    def __init__(self, model: str | Path, conf: float = 0.3, iou: float = 0.5, min_height: float = 0.0,
                 threads: int = 0):
        import onnxruntime as ort

        self.model_path = Path(model)
        if not self.model_path.is_file():
            raise DetectorError(
                f"YOLOX model not found: {self.model_path}. Put yolox_nano.onnx there (YOLOX release "
                "https://github.com/Megvii-BaseDetection/YOLOX, Apache-2.0), set MTMC_DATA to the data folder "
                "holding models/yolox_nano.onnx, or pass --detector.model PATH"
            )
        try:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            options.intra_op_num_threads = threads  # 0: onnxruntime's default, one per physical core
            options.inter_op_num_threads = 1
            # idle pool threads would spin on cores that the embedder or other processes need
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self.session = ort.InferenceSession(str(self.model_path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own untyped errors for bad files
            raise DetectorError(f"{self.model_path}: not a loadable ONNX model ({err})") from None
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.input_size = (int(model_input.shape[2]), int(model_input.shape[3]))
        self.batched = not isinstance(model_input.shape[0], int) or model_input.shape[0] != 1
        self.grid, self.strides = _yolox_grid(self.input_size)
        self.conf, self.iou, self.min_height = conf, iou, min_height

    def detect(self, frames: Sequence[Frame]) -> list[np.ndarray]:
        if not frames:
            return []
        inputs, ratios = zip(*(self._letterbox(f.image) for f in frames))
        batch = np.stack(inputs)
        if self.batched:
            outputs = self.session.run(None, {self.input_name: batch})[0]
        else:  # static batch 1 export: one call per camera
            outputs = np.concatenate([self.session.run(None, {self.input_name: x[None]})[0] for x in batch])
        return [self._decode(out, ratio) for out, ratio in zip(outputs, ratios)]

    def _letterbox(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        height, width = self.input_size
        ratio = min(height / image.shape[0], width / image.shape[1])
        size = (int(image.shape[1] * ratio), int(image.shape[0] * ratio))
        padded = np.full((height, width, 3), YOLOX_PAD_VALUE, dtype=np.float32)
        padded[: size[1], : size[0]] = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        return padded.transpose(2, 0, 1), ratio

    def _decode(self, output: np.ndarray, ratio: float) -> np.ndarray:
        scores = output[:, 4] * output[:, 5 + PERSON_CLASS]
        keep = scores >= self.conf
        out, grid, strides = output[keep], self.grid[keep], self.strides[keep]
        centers = (out[:, :2] + grid) * strides
        sizes = np.exp(out[:, 2:4]) * strides
        boxes = np.column_stack([centers - sizes / 2, centers + sizes / 2, scores[keep]])
        boxes[:, :4] /= ratio
        boxes = boxes[nms(boxes, self.iou)]
        return filter_boxes(boxes, self.conf, self.min_height)


def _yolox_grid(input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    grids, strides = [], []
    for stride in YOLOX_STRIDES:
        rows, cols = input_size[0] // stride, input_size[1] // stride
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        grids.append(np.stack([xs, ys], axis=-1).reshape(-1, 2))
        strides.append(np.full((rows * cols, 1), stride))
    return np.concatenate(grids).astype(np.float32), np.concatenate(strides).astype(np.float32)


class UltralyticsDetector:
    """Any model Ultralytics loads (.pt, .onnx, .engine, or a .yaml for random-weight plumbing tests)."""

    def __init__(self, model: str, conf: float = 0.3, iou: float = 0.5, imgsz: int = 640, device: str = "auto",
                 min_height: float = 0.0):
        os.environ.setdefault("YOLO_OFFLINE", "1")
        if not model.endswith(".yaml") and not Path(model).is_file():
            raise DetectorError(
                f"Ultralytics weights not found: {model}. This machine cannot download them: fetch the file "
                "(e.g. https://github.com/ultralytics/assets/releases/download/v8.3.0/yolo11n.pt) elsewhere, "
                "copy it here and pass --detector.model /path/to/yolo11n.pt (or use --detector yolox)"
            )
        from ultralytics import YOLO

        try:
            self.model = YOLO(model)
        except Exception as err:  # ultralytics wraps many failure kinds; the message is what matters
            raise DetectorError(f"{model}: Ultralytics could not load it ({err})") from None
        self.conf, self.iou, self.imgsz, self.min_height = conf, iou, imgsz, min_height
        self.device = None if device == "auto" else device

    def detect(self, frames: Sequence[Frame]) -> list[np.ndarray]:
        if not frames:
            return []
        results = self.model.predict(
            [f.image for f in frames], conf=self.conf, iou=self.iou, imgsz=self.imgsz, classes=[PERSON_CLASS],
            device=self.device, verbose=False,
        )
        detections = []
        for result in results:
            boxes = result.boxes
            array = np.column_stack([boxes.xyxy.cpu().numpy(), boxes.conf.cpu().numpy()]) if len(boxes) else np.zeros((0, 5))
            detections.append(filter_boxes(array.astype(np.float64), self.conf, self.min_height))
        return detections


class MOTFileDetector:
    """Detections read from one MOTChallenge det/gt file per camera (frame numbers 1-based)."""

    def __init__(self, files_by_camera: dict[str, Path], conf: float = 0.0, min_height: float = 0.0):
        self.by_camera: dict[str, list[np.ndarray]] = {}
        for camera, path in files_by_camera.items():
            try:
                rows = read_mot_rows(path)
            except MOTFormatError as err:
                raise DetectorError(f"camera {camera}: {err}") from None
            self.by_camera[camera] = detections_by_frame(rows, 0)
        self.conf, self.min_height = conf, min_height

    def detect(self, frames: Sequence[Frame]) -> list[np.ndarray]:
        return [self._lookup(f.camera_id, f.index) for f in frames]

    def _lookup(self, camera: str, index: int) -> np.ndarray:
        per_frame = self.by_camera.get(camera, [])
        boxes = per_frame[index] if index < len(per_frame) else np.zeros((0, 5))
        return filter_boxes(boxes, self.conf, self.min_height)


def det_files_for(config: DetectorConfig, camera_ids: Sequence[str]) -> dict[str, Path]:
    files = config.det_files
    if len(files) == 1 and "{camera}" in files[0]:
        return {camera: Path(files[0].format(camera=camera)) for camera in camera_ids}
    if len(files) != len(camera_ids):
        raise DetectorError(
            f"detector mot needs one det file per source ({len(camera_ids)}), got {len(files)}: "
            "pass --detector.det_files FILE [FILE ...] in source order, or one pattern containing {camera}"
        )
    return dict(zip(camera_ids, map(Path, files)))


def resolve_detector(config: DetectorConfig) -> DetectorConfig:
    """``config`` with ``name`` an adapter: a model or det file given as the name (``--detector PATH``) picks
    its adapter (and becomes ``model`` / ``det_files``); raises DetectorError naming the file when it cannot."""
    spec = config.name
    if spec in DETECTOR_NAMES:
        return config
    path = Path(spec)
    if "{camera}" in spec or path.suffix == ".txt":
        return replace(config, name="mot", det_files=[spec])
    if not path.is_file():
        raise DetectorError(f"--detector {spec}: neither a detector name ({', '.join(DETECTOR_NAMES)}) nor an "
                            "existing model file")
    if path.suffix in ULTRALYTICS_SUFFIXES:
        return replace(config, name="ultralytics", model=spec)
    if path.suffix == ".onnx":
        return replace(config, name=onnx_detector_kind(path), model=spec)
    raise DetectorError(f"{path}: unknown detector model type {path.suffix!r}; expected .onnx (YOLOX or an "
                        f"Ultralytics export), {', '.join(ULTRALYTICS_SUFFIXES)}, or a MOT det file (.txt)")


def onnx_detector_kind(path: Path) -> str:
    """'ultralytics' for an Ultralytics export (it carries its metadata), 'yolox' for YOLOX's raw head output
    (batch, anchors, 5 + classes); DetectorError when the file is unreadable or neither."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf decode errors and OS errors alike
        raise DetectorError(f"{path}: not a readable ONNX model ({str(err).splitlines()[0]})") from None
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    if "ultralytics" in metadata.get("author", "").lower() or {"names", "stride"} <= set(metadata):
        return "ultralytics"
    dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] if model.graph.output else []
    if len(dims) == 3 and dims[2] >= 6 and dims[1] > dims[2]:
        return "yolox"
    raise DetectorError(f"{path}: ONNX model is neither an Ultralytics export (no Ultralytics metadata) nor YOLOX "
                        f"(output {dims}, expected (batch, anchors, 5 + classes)); pass --detector yolox or "
                        "ultralytics with --detector.model PATH")


def create_detector(config: DetectorConfig, camera_ids: Sequence[str], device: str = "auto",
                    threads: int = 0) -> Detector:
    """Build the adapter named by ``config.name`` (or picked for the model file named there, see
    resolve_detector); raises DetectorError with a fix when it cannot.

    ``threads``: onnxruntime intra-op threads for YOLOX (0: its default).
    """
    config = resolve_detector(config)
    if config.name == "yolox":
        model = config.model or str(data_root() / "models" / "yolox_nano.onnx")
        return YoloxOnnxDetector(model, config.conf, config.iou, config.min_height, threads)
    if config.name == "ultralytics":
        return UltralyticsDetector(config.model or "yolo11n.pt", config.conf, config.iou, config.imgsz, device,
                                   config.min_height)
    if config.name == "mot":
        return MOTFileDetector(det_files_for(config, camera_ids), config.conf, config.min_height)
    raise DetectorError(f"unknown detector {config.name!r}; choose yolox, ultralytics or mot")
