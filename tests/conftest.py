"""Shared fixtures: tiny configs and models that run in milliseconds on CPU.

HF_HUB_OFFLINE is set before anything imports huggingface_hub (it is read once at import): no test touches the
network, and an unknown repo id fails at once instead of retrying for ~30 s.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from jepa_demo.config import PreprocessConfig, model_config_from_preset  # noqa: E402
from jepa_demo.model import VideoJEPA  # noqa: E402


@pytest.fixture
def tiny_cfg():
    return model_config_from_preset("tiny")


@pytest.fixture
def tiny_model(tiny_cfg):
    torch.manual_seed(0)
    return VideoJEPA(tiny_cfg)


@pytest.fixture
def tiny_preprocess(tiny_cfg):
    return PreprocessConfig(img_size=tiny_cfg.img_size, num_frames=tiny_cfg.num_frames)
