"""The Ray backend (pipeline/ray_backend) on a real two-node Ray cluster on loopback (ray.cluster_utils.Cluster).

File runs must give the local backend's outputs exactly (same tracklet uids, same global ids, same files);
cameras spread over both nodes; a node removed mid-run fails its camera only (exit code 2, outputs valid);
live RTSP streams run through it, and a camera worker killed mid-run is restarted and its stream resumes.
Detections come from the ground-truth files (the MOT-file detector) except for the streams (YOLOX-Nano).
"""

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from configs import REPO_ROOT, UserError, data_root
from pipeline.cli import EXIT_PARTIAL, report
from pipeline.config import load_pipeline_config
from pipeline.runner import MultiCameraPipeline, default_embedder, engine_threads

ray = pytest.importorskip("ray", reason="Ray not installed: pip install 'mtmc[ray]'")
from ray.cluster_utils import Cluster  # noqa: E402  (after the skip)

from pipeline.ray_backend import RayPipeline  # noqa: E402
from rtsp_fixtures import rtsp_clips, rtsp_servers  # noqa: E402,F401  (pytest fixtures)
from test_live import check_complete_outputs  # noqa: E402
from test_pipeline import FRAMES, events, final_ids, needs_data, scene, scene_run  # noqa: E402,F401  (scene: a fixture)

YOLOX = data_root() / "models" / "yolox_nano.onnx"
CAMERAS = ["cam1", "cam2", "cam3"]
NODE = {"num_cpus": 2, "object_store_memory": 120 * 2**20}
START_TIMEOUT_S = 60.0  # actors import torch and load models on a loaded 2-core box


@pytest.fixture(scope="module")
def cluster():
    """A head node (this driver, the associator, the embedder) and a second node, both on loopback."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    nodes = Cluster(initialize_head=True, head_node_args=NODE)
    nodes.add_node(**NODE)
    ray.init(address=nodes.address, logging_level="WARNING")
    yield nodes
    ray.shutdown()
    nodes.shutdown()


def ray_run(scene: Path, out: Path, **overrides):
    return scene_run(scene, out, CAMERAS, backend="ray", **overrides)


@needs_data
def test_file_run_gives_the_local_backends_ids_with_cameras_on_both_nodes(cluster, scene, tmp_path):
    sources, config = ray_run(scene, tmp_path / "ray")
    summary = RayPipeline(config).run(sources)
    _, local_config = scene_run(scene, tmp_path / "local", CAMERAS)
    local = MultiCameraPipeline(local_config, embedder=default_embedder(local_config, engine_threads())).run(sources)

    assert summary["mode"].startswith("offline") and summary["mode"] == local["mode"]  # the offline pass ran too
    assert final_ids(tmp_path / "ray") == final_ids(tmp_path / "local") and len(final_ids(tmp_path / "local")) > 10
    for name in [*CAMERAS, "mtmc"]:
        assert (tmp_path / "ray" / f"{name}.txt").read_text() == (tmp_path / "local" / f"{name}.txt").read_text()
    for key in ("frames", "tracks", "tracklets", "identities", "detections", "crops_embedded", "refine_changes"):
        assert summary[key] == local[key], key
    assert summary["backend"] == "ray" and [s["frames"] for s in summary["sources"]] == [FRAMES] * 3
    nodes = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    assert set(summary["ray"]["nodes"].values()) == nodes == {s["node"] for s in summary["sources"]}
    assert summary["ray"]["bytes_per_tracklet"]["records"] > 0


@needs_data
def test_node_removed_mid_run_fails_its_camera_while_the_others_finish(cluster, scene, tmp_path):
    extra = cluster.add_node(**NODE)
    sources, config = ray_run(scene, tmp_path, **{"association.refine": False, "ray.chunk_frames": 4})
    pipeline, result = RayPipeline(config), []
    runner = threading.Thread(target=lambda: result.append(pipeline.run(sources)))
    runner.start()
    victim = wait_for_camera_on(pipeline, extra.node_id, frames=8)
    cluster.remove_node(extra)
    runner.join(timeout=120)
    assert result, "the run did not complete after the node was removed"
    summary = result[0]

    assert summary["failed_sources"] == [victim]
    assert report(summary, str(tmp_path)) == EXIT_PARTIAL
    by_camera = {s["camera"]: s for s in summary["sources"]}
    assert 8 <= by_camera[victim]["frames"] < FRAMES and by_camera[victim]["node"] == extra.node_id
    assert all(s["frames"] == FRAMES and s["status"] == "ok" for c, s in by_camera.items() if c != victim)
    check_complete_outputs(tmp_path, CAMERAS)  # every written tracklet is in its camera's file with its id
    lost = [e for e in events(tmp_path) if e["event"] == "source_error"]
    assert [e["camera"] for e in lost] == [victim] and "died" in lost[0]["error"]


def wait_for_camera_on(pipeline: RayPipeline, node_id: str, frames: int) -> str:
    """The camera placed on ``node_id`` once the associator has ``frames`` of its frames."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        placed = getattr(pipeline, "nodes", {})
        on_node = [c for c, where in placed.items() if where and where[-1] == node_id]
        if on_node and ray.get(pipeline.associator.progress.remote()).get(on_node[0], 0) >= frames:
            return on_node[0]
        time.sleep(0.05)
    pytest.fail(f"no camera on node {node_id} reached {frames} frames within {START_TIMEOUT_S} s")


@pytest.mark.skipif(not YOLOX.is_file(), reason=f"YOLOX-Nano weights absent: {YOLOX} (set MTMC_DATA)")
def test_rtsp_streams_run_and_a_killed_camera_worker_resumes_its_stream(cluster, rtsp_servers, tmp_path):
    server = rtsp_servers({"cam1": "tud", "cam2": "pets"})
    config = load_pipeline_config(REPO_ROOT / "configs" / "rtsp.yaml", {
        "output.out": str(tmp_path), "progress": False, "backend": "ray", "live.duration_s": 14.0,
        "live.read_timeout_s": 2.0, "live.open_timeout_s": 3.0, "live.backoff_max_s": 1.0})
    pipeline, result = RayPipeline(config), []
    runner = threading.Thread(target=lambda: result.append(pipeline.run([server.url("cam1"), server.url("cam2")])))
    runner.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and not {"cam1", "cam2"} <= assigned_cameras(tmp_path):
        time.sleep(0.2)
    assert {"cam1", "cam2"} <= assigned_cameras(tmp_path), "no identities on both streams"
    worker = next(launch for launch in pipeline.running.values() if launch.cameras == ["cam1"])
    os.kill(ray.get(worker.actor.where.remote())["pid"], signal.SIGKILL)
    killed_at = len(events(tmp_path))
    runner.join(timeout=90)
    assert result, "the live run did not complete"
    summary = result[0]

    summary_, all_events, mot = check_complete_outputs(tmp_path, ["cam1", "cam2"])
    assert summary["failed_sources"] == [] and [s["status"] for s in summary["sources"]] == ["ok", "ok"]
    cam1 = next(s for s in summary["sources"] if s["camera"] == "cam1")
    assert len(cam1["nodes"]) == 2  # started again after the kill
    after = [e for e in all_events[killed_at:] if e["event"] == "identity_assigned" and e["camera"] == "cam1"]
    assert after, "cam1 gave no identities after its worker was killed"
    assert all(len(rows) > 20 for rows in mot.values())


def assigned_cameras(out: Path) -> set[str]:
    path = out / "events.jsonl"
    lines = path.read_text().splitlines(keepends=True) if path.is_file() else []
    return {json.loads(line)["camera"] for line in lines
            if line.endswith("\n") and '"identity_assigned"' in line}


def test_without_ray_the_backend_says_how_to_install_it(monkeypatch):
    from pipeline.ray_backend import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(UserError, match=r"pip install 'mtmc\[ray\]'"):
        require_ray()
