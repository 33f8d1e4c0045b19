"""One source of defaults: the dataclasses are the measured setup, and the YAML files say the same or only
their differences, so the plainest command runs what the README measured."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from configs import CONFIG_DIR, ConfigError
from pipeline.config import LiveConfig, PipelineConfig, StreamOptions, config_to_dict, load_pipeline_config
from trackers import TRACKERS, create_tracker


def leaves(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(leaves(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_no_config_file_gives_exactly_configs_pipeline_yaml():
    assert load_pipeline_config(None) == load_pipeline_config(CONFIG_DIR / "pipeline.yaml")
    assert load_pipeline_config(None) == PipelineConfig()
    # every key is written out, so a user who copies the file sees the whole setup
    assert set(leaves(yaml.safe_load((CONFIG_DIR / "pipeline.yaml").read_text()))) == set(
        leaves(config_to_dict(PipelineConfig())))


@pytest.mark.parametrize("name", ["demo.yaml", "rtsp.yaml"])
def test_other_pipeline_configs_hold_only_their_differences(name):
    written = leaves(yaml.safe_load((CONFIG_DIR / name).read_text()))
    defaults = leaves(config_to_dict(PipelineConfig()))
    same = {key: value for key, value in written.items() if defaults[key] == value}
    assert not same, f"{name} repeats defaults {same}: keep only what differs"
    loaded = leaves(config_to_dict(load_pipeline_config(CONFIG_DIR / name)))
    assert {k: v for k, v in loaded.items() if defaults[k] != v} == written


@pytest.mark.parametrize("name", sorted(TRACKERS))
def test_tracker_classes_and_their_yaml_agree(name):
    tracker_class, config_class = TRACKERS[name]
    assert create_tracker(name).config == config_class() == tracker_class().config


def test_live_mode_passes_its_own_stream_keys_to_every_stream():
    live = load_pipeline_config(None, {"live.queue_size": 5, "live.backoff_max_s": 3.0}).live
    assert isinstance(live, StreamOptions) and (live.queue_size, live.backoff_max_s) == (5, 3.0)
    stream_keys = {f.name for f in dataclasses.fields(StreamOptions)}
    assert stream_keys < {f.name for f in dataclasses.fields(LiveConfig)}
    with pytest.raises(ConfigError, match="queue_size must be >= 1"):
        load_pipeline_config(None, {"live.queue_size": 0})
