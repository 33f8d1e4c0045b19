"""Detector adapters on real PETS09 frames against the ground truth."""

from pathlib import Path

import numpy as np
import pytest

from configs import data_root
from pipeline.config import DetectorConfig
from pipeline.detectors import DetectorError, MOTFileDetector, UltralyticsDetector, create_detector, resolve_detector
from pipeline.motio import detections_by_frame, read_mot_rows
from pipeline.sources import open_source

PETS = data_root() / "mot15" / "PETS09-S2L1"
YOLOX = data_root() / "models" / "yolox_nano.onnx"
needs_pets = pytest.mark.skipif(not (PETS / "PETS09-S2L1.avi").is_file() or not YOLOX.is_file(),
                                reason=f"PETS09 video or YOLOX model absent under {data_root()} (set MTMC_DATA)")


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


@pytest.fixture(scope="module")
def pets_frames():
    return list(open_source(str(PETS / "PETS09-S2L1.avi"), "pets", max_frames=4))


@needs_pets
def test_yolox_finds_most_ground_truth_people_batched_across_cameras(pets_frames):
    detector = create_detector(DetectorConfig(name="yolox", conf=0.3), ["pets"])
    detections = detector.detect(pets_frames)  # one batch, as the pipeline sends one frame per camera
    gt = detections_by_frame(read_mot_rows(PETS / "gt" / "gt.txt"), 4)
    found = total = 0
    for dets, truth in zip(detections, gt):
        assert dets.shape[1] == 5 and np.all(dets[:, 4] >= 0.3) and np.all(dets[:, 2] > dets[:, 0])
        total += len(truth)
        found += int((iou_matrix(truth, dets).max(1) >= 0.5).sum()) if len(dets) else 0
    assert found / total >= 0.6, f"YOLOX found {found} of {total} people at IoU 0.5"


def test_missing_yolox_model_says_how_to_supply_it(tmp_path):
    with pytest.raises(DetectorError, match="--detector.model"):
        create_detector(DetectorConfig(name="yolox", model=str(tmp_path / "absent.onnx")), ["c"])


def test_missing_ultralytics_weights_says_how_to_supply_them(tmp_path):
    with pytest.raises(DetectorError, match="cannot download"):
        UltralyticsDetector(str(tmp_path / "yolo11n.pt"))


@needs_pets
def test_ultralytics_adapter_returns_what_ultralytics_predicts_for_people(pets_frames):
    # yolo11n.yaml has random weights, so no accuracy: the adapter must pass on exactly Ultralytics' own person
    # boxes (xyxy + score) per frame of a batch, in the pipeline's array layout
    detector = UltralyticsDetector("yolo11n.yaml", conf=0.0, imgsz=320)
    detections = detector.detect(pets_frames[:2])
    reference = detector.model.predict([f.image for f in pets_frames[:2]], conf=0.0, iou=0.5, imgsz=320,
                                       classes=[0], verbose=False)
    assert len(detections) == 2
    for got, result in zip(detections, reference):
        expected = np.column_stack([result.boxes.xyxy.numpy(), result.boxes.conf.numpy()])
        assert len(expected) > 0 and got.shape == expected.shape
        assert np.allclose(got, expected, atol=1e-4)


def test_detector_model_file_picks_its_adapter(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    def onnx_file(name: str, output_shape: list[int], metadata: dict[str, str]) -> Path:
        graph = helper.make_graph([helper.make_node("Identity", ["images"], ["output"])], "g",
                                  [helper.make_tensor_value_info("images", TensorProto.FLOAT, output_shape)],
                                  [helper.make_tensor_value_info("output", TensorProto.FLOAT, output_shape)])
        model = helper.make_model(graph)
        for key, value in metadata.items():
            model.metadata_props.add(key=key, value=value)
        onnx.save(model, tmp_path / name)
        return tmp_path / name

    ultralytics_export = onnx_file("yolo11n.onnx", [1, 84, 8400], {"author": "Ultralytics", "stride": "32"})
    unlabelled = onnx_file("mystery.onnx", [1, 84, 8400], {})
    (tmp_path / "yolo11n.pt").write_bytes(b"weights")
    resolve = lambda spec: resolve_detector(DetectorConfig(name=str(spec)))  # noqa: E731
    if YOLOX.is_file():
        assert (resolve(YOLOX).name, resolve(YOLOX).model) == ("yolox", str(YOLOX))
    assert resolve(ultralytics_export).name == "ultralytics"
    assert resolve(tmp_path / "yolo11n.pt").name == "ultralytics"
    pattern = resolve(tmp_path / "{camera}" / "det.txt")
    assert (pattern.name, pattern.det_files) == ("mot", [str(tmp_path / "{camera}" / "det.txt")])
    with pytest.raises(DetectorError, match="mystery.onnx: ONNX model is neither"):
        resolve(unlabelled)
    (tmp_path / "broken.onnx").write_bytes(b"\x00not onnx")
    with pytest.raises(DetectorError, match="broken.onnx: not a readable ONNX model"):
        resolve(tmp_path / "broken.onnx")
    with pytest.raises(DetectorError, match="absent.onnx: neither a detector name"):
        resolve(tmp_path / "absent.onnx")


@needs_pets
def test_mot_file_detector_returns_the_file_rows_per_camera_and_frame(pets_frames):
    det_file = PETS / "det" / "det.txt"
    detector = MOTFileDetector({"pets": det_file}, conf=0.0)
    rows = read_mot_rows(det_file)
    frame2 = rows[rows[:, 0] == 2]
    got = detector.detect(pets_frames[1:2])[0]
    assert np.allclose(got[:, :2], frame2[:, 2:4]) and np.allclose(got[:, 2:4], frame2[:, 2:4] + frame2[:, 4:6])


def test_mot_detector_needs_one_file_per_camera(tmp_path):
    with pytest.raises(DetectorError, match="one det file per source"):
        create_detector(DetectorConfig(name="mot", det_files=["a.txt"]), ["c1", "c2"])


def test_mot_detector_names_the_bad_file_line(tmp_path):
    bad = tmp_path / "det.txt"
    bad.write_text("1,-1,10,10,5,5,0.9\n2,-1,x,10,5,5,0.9\n")
    with pytest.raises(DetectorError, match="det.txt:2"):
        MOTFileDetector({"c": bad})
