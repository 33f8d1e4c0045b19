"""The Ray backend (``--backend ray``): camera workers spread over machines, one identity space.

    worker.py      the runner's camera half (read -> detect -> track -> tracklet buffer) on a camera worker
    records.py     what a worker sends the associator (records in chunks; frames never leave its node)
    order.py       the associator's merge: the local backend's order from per-camera watermarks (files)
    associator.py  the runner's identity half (identity stage, store, outputs, summary) in the associator
    actors.py      the Ray actors and the outbox (backpressure)
    driver.py      RayPipeline: placement, fault handling, run(sources) -> summary

Only driver.py and actors.py import Ray; the rest runs (and is tested) without it.
"""

from pipeline.ray_backend.driver import INSTALL_HINT, RayPipeline, require_ray

__all__ = ["INSTALL_HINT", "RayPipeline", "require_ray"]
