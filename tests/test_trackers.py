"""Behaviour of the per-camera trackers that users and the pipeline rely on."""

from __future__ import annotations

import numpy as np
import pytest

from configs import ConfigError
from trackers import available_trackers, create_tracker

ALL = available_trackers()


def walker(frame: int, start=(100.0, 200.0), velocity=(4.0, 0.0), size=(40.0, 100.0), score=0.95) -> np.ndarray:
    """One person's detection at ``frame``: constant velocity, fixed size."""
    x = start[0] + velocity[0] * frame
    y = start[1] + velocity[1] * frame
    return np.array([[x, y, x + size[0], y + size[1], score]])


def ids_of(tracks: np.ndarray) -> set[int]:
    return set(tracks[:, 4].astype(int).tolist())


@pytest.mark.parametrize("name", ALL)
def test_output_layout_and_det_index(name):
    tracker = create_tracker(name, frame_rate=25)
    dets = np.vstack([walker(0), walker(0, start=(400, 200))])
    tracks = tracker.update(dets)
    assert tracks.shape == (2, 7)
    assert sorted(tracks[:, 6].astype(int)) == [0, 1]
    for row in tracks:  # det_index points at the detection that produced the box
        assert np.allclose(row[:4], dets[int(row[6]), :4], atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_identity_survives_short_occlusion(name):
    tracker = create_tracker(name, frame_rate=25)
    seen = []
    for f in range(60):
        occluded = 20 <= f < 28  # 8 frames without any detection of this person
        dets = np.zeros((0, 5)) if occluded else walker(f)
        tracks = tracker.update(dets)
        if occluded:
            assert len(tracks) == 0, "a lost track must not be reported as if detected"
        else:
            seen.append(ids_of(tracks))
    assert all(s == seen[0] for s in seen) and len(seen[0]) == 1


@pytest.mark.parametrize("name", ALL)
def test_low_score_detections_keep_a_track_alive_but_never_start_one(name):
    tracker = create_tracker(name, frame_rate=25)
    for f in range(10):
        first_id = ids_of(tracker.update(walker(f)))
    for f in range(10, 30):  # partly occluded: the detector is unsure
        tracks = tracker.update(walker(f, score=0.3))
        assert ids_of(tracks) == first_id
    fresh = create_tracker(name, frame_rate=25)
    for f in range(10):
        assert len(fresh.update(walker(f, score=0.3))) == 0


@pytest.mark.parametrize("name", ALL)
def test_ids_are_never_reused(name):
    tracker = create_tracker(name, frame_rate=30, track_buffer=5)
    all_ids = []
    for person in range(5):  # people appear one after another, each leaves for good
        for f in range(15):
            tracks = tracker.update(walker(f, start=(100 + 300 * person, 100)))
            all_ids.extend(tracks[:, 4].astype(int).tolist())
        for _ in range(20):
            tracker.update(np.zeros((0, 5)))
    assert len(set(all_ids)) == 5
    assert sorted(set(all_ids)) == list(range(1, 6)), "ids are consecutive from 1 and never repeat"


@pytest.mark.parametrize("name", ALL)
def test_empty_frames_anywhere(name):
    tracker = create_tracker(name, frame_rate=30)
    assert tracker.update(np.zeros((0, 5))).shape == (0, 7)
    assert tracker.update([]).shape == (0, 7)
    tracker.update(walker(0))
    assert tracker.update(np.empty((0, 5))).shape == (0, 7)


@pytest.mark.parametrize("name", ALL)
def test_burst_of_500_detections(name):
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(np.arange(25) * 60.0, np.arange(20) * 120.0), -1).reshape(-1, 2)
    tracker = create_tracker(name, frame_rate=30)
    for f in range(3):
        xy = grid + rng.normal(0, 1, grid.shape) + f * 2
        dets = np.column_stack([xy, xy + [40, 100], np.full(len(xy), 0.95)])
        tracks = tracker.update(dets)
    assert len(tracks) == 500
    assert len(ids_of(tracks)) == 500


@pytest.mark.parametrize("name", ALL)
def test_state_stays_bounded_over_20000_frames(name):
    """People keep arriving and leaving; memory must depend on who is present, not on run length."""
    rng = np.random.default_rng(1)
    tracker = create_tracker(name, frame_rate=30)
    sizes = []
    for f in range(20_000):
        phase = f % 200  # a new group of 3 crosses every 200 frames and then leaves
        if phase < 100:
            xs = 50 + np.array([0.0, 300.0, 600.0]) + phase * 3 + rng.normal(0, 1, 3)
            dets = np.column_stack([xs, np.full(3, 100.0), xs + 40, np.full(3, 200.0), np.full(3, 0.9)])
        else:
            dets = np.zeros((0, 5))
        tracker.update(dets)
        if f % 1000 == 999:
            sizes.append(len(tracker.tracks))
    assert max(sizes) <= 10
    assert tracker.update(np.zeros((0, 5))).shape == (0, 7)


def test_unknown_tracker_lists_valid_ones():
    with pytest.raises(ValueError) as err:
        create_tracker("deepsort9000")
    for name in ALL:
        assert name in str(err.value)


def test_overrides_and_unknown_keys():
    tracker = create_tracker("bytetrack", frame_rate=10, track_buffer=90)
    assert tracker.config.track_buffer == 90 and tracker.max_time_lost == 30
    with pytest.raises(ConfigError, match="track_bufer"):
        create_tracker("bytetrack", track_bufer=3)


def test_bad_detection_arrays_are_rejected():
    tracker = create_tracker("bytetrack")
    with pytest.raises(ValueError, match="shape"):
        tracker.update(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        tracker.update(np.array([[0, 0, np.nan, 10, 0.9]]))
