"""The associator's merge (pipeline/ray_backend/order.py), without Ray: however the cameras' records interleave
on arrival, the identity stage gets the same tracklets, in the same steps, under the same uids."""

import copy
import itertools
import random

from pipeline.ray_backend.order import ArrivalOrder, EventTimeOrder
from pipeline.ray_backend.records import END, FRAME, OPENED, CameraRecord
from pipeline.tracklets import Tracklet


def camera_records(camera: str, fps: float, frames: int, launch: int) -> list[CameraRecord]:
    """A camera whose every 3rd frame opens a tracklet (local uids 1, 2, ...) that the next frame finishes."""
    records, uids = [CameraRecord(camera, launch, OPENED, fps=fps)], itertools.count(1)
    opened = None
    for index in range(frames):
        created, finished = [], []
        if opened is not None:
            finished, opened = [Tracklet(opened, camera, opened, 0)], None
        elif index % 3 == 0:
            opened = next(uids)
            created = [opened]
        records.append(CameraRecord(camera, launch, FRAME, index / fps, created, finished))
    records.append(CameraRecord(camera, launch, END))
    return records


def delivered(order_class, arrivals: list[CameraRecord]) -> list[tuple[list[tuple[str, int, int]], bool]]:
    calls = []
    order = order_class(["a", "b"], lambda tracklets, flush: calls.append(
        ([(t.camera_id, t.track_id, t.uid) for t in tracklets], flush)))
    for record in copy.deepcopy(arrivals):  # the associator renumbers the tracklets it gets in place
        order.add(record)
        order.advance()
    assert order.done()
    return calls


def test_arrival_interleaving_does_not_change_what_the_identity_stage_gets():
    a, b = camera_records("a", 25.0, 20, launch=0), camera_records("b", 10.0, 8, launch=1)
    one_after_the_other = delivered(EventTimeOrder, a + b)
    interleaved, queues, chance = [], [list(a), list(b)], random.Random(0)
    while any(queues):  # each camera's records in its order (Ray keeps one caller's calls in order)
        queue = chance.choice([q for q in queues if q])
        interleaved.append(queue.pop(0))
    assert delivered(EventTimeOrder, b + a) == one_after_the_other == delivered(EventTimeOrder, interleaved)
    uids = [uid for batch, _ in one_after_the_other for _, _, uid in batch]
    assert sorted(uids) == list(range(1, len(uids) + 1))  # run-wide uids, none lost
    # the steps follow video time across cameras: at 0.2 s b's first tracklet ends in the same step as a's
    steps = [batch for batch, flush in one_after_the_other if batch and not flush]
    assert [camera for camera, _, _ in steps[0]] == ["a"] and ("b", 1, 2) in steps[1]
    assert [flush for _, flush in one_after_the_other].count(True) == 2 and one_after_the_other[-1][1]  # 2 ends


def test_a_lost_camera_ends_where_its_records_stop_and_late_records_are_dropped():
    a, b = camera_records("a", 25.0, 12, launch=0), camera_records("b", 25.0, 12, launch=1)
    calls = []
    order = EventTimeOrder(["a", "b"], lambda tracklets, flush: calls.append([t.camera_id for t in tracklets]))
    for record in a + b[:5]:
        order.add(record)
    order.advance()
    assert not order.done()  # b's watermark holds a's later frames back
    order.lose("b", launch=1)
    for record in b[5:]:  # still in flight from the dead worker
        order.add(record)
    order.advance()
    assert order.done() and sum(c.count("b") for c in calls) == 1  # b's one tracklet before it was lost


def test_live_order_hands_tracklets_on_as_they_arrive():
    a = camera_records("a", 25.0, 6, launch=0)
    calls = delivered(ArrivalOrder, a[:4] + camera_records("b", 25.0, 6, launch=1) + a[4:])
    assert [batch[0][0] for batch, _ in calls] == ["a", "b", "b", "a"] and all(flush for _, flush in calls)
