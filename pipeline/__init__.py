"""Multi-camera pipeline: sources, detector adapters, tracklet buffer, associator, sinks and CLI.

    from pipeline import MultiCameraPipeline, load_pipeline_config
    summary = MultiCameraPipeline(load_pipeline_config("configs/pipeline.yaml")).run(["cam1.mp4", "cam2.mp4"])

Submodules are imported on first use so that ``import pipeline.motio`` stays light.
"""

from importlib import import_module

_EXPORTS = {
    "MultiCameraPipeline": "pipeline.runner",
    "PipelineConfig": "pipeline.config",
    "load_pipeline_config": "pipeline.config",
    "Frame": "pipeline.sources",
    "Source": "pipeline.sources",
    "SourceError": "pipeline.sources",
    "open_source": "pipeline.sources",
    "create_detector": "pipeline.detectors",
    "OnlineAssociator": "pipeline.association",
    "TrackletBuffer": "pipeline.tracklets",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
