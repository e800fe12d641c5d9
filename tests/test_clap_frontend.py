"""The torch log-mel front end must equal transformers' ClapFeatureExtractor (the independent reference)."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from transformers import ClapFeatureExtractor

from birdbridge.errors import ModelFormatError
from birdbridge.models.clap_frontend import FrontendConfig, LogMelFrontend
from birdbridge.models.standins import BIOLINGUAL_FRONTEND, SMALL_FRONTEND
from birdbridge.models.student import AudioStudent


def reference(cfg: FrontendConfig, waves: np.ndarray) -> np.ndarray:
    fe = ClapFeatureExtractor(**cfg.preprocessor_dict())
    out = fe(list(waves), sampling_rate=cfg.sample_rate, truncation="rand_trunc", padding="repeatpad",
             return_tensors="np")
    return out["input_features"]


@pytest.mark.parametrize("cfg", [BIOLINGUAL_FRONTEND, SMALL_FRONTEND], ids=["biolingual", "small"])
def test_matches_clap_feature_extractor(cfg: FrontendConfig) -> None:
    rng = np.random.default_rng(0)
    n = cfg.window_samples
    t = np.arange(n) / cfg.sample_rate
    waves = np.stack([
        0.1 * rng.standard_normal(n),
        0.5 * np.sin(2 * np.pi * 2000 * t) * (t > t[-1] / 2),  # silence, then a tone: exercises the floor
        np.zeros(n),
    ]).astype(np.float32)
    ours = LogMelFrontend(cfg)(torch.from_numpy(waves)).numpy()
    ref = reference(cfg, waves)
    assert ours.shape == ref.shape == (3, 1, cfg.n_frames, cfg.n_mels)
    diff = np.abs(ours - ref)
    # float32 against float64: exact to 1e-3 dB within 60 dB of each clip's peak; bins lower than that
    # (e.g. -85 dB leakage beside a tone onset) carry float32 round-off of up to ~0.1 dB.
    loud = ref > ref.max(axis=(1, 2, 3), keepdims=True) - 60
    assert diff[loud].max() < 1e-3
    assert diff.max() < 0.1


def test_reads_preprocessor_config(tiny_clap) -> None:
    cfg = FrontendConfig.from_folder(tiny_clap)
    assert cfg == SMALL_FRONTEND
    assert FrontendConfig.from_folder(tiny_clap.parent) == FrontendConfig()  # no file: BioLingual's defaults


def test_batch_rows_are_independent() -> None:
    cfg = SMALL_FRONTEND
    x = torch.randn(4, cfg.window_samples) * 0.1
    batch = LogMelFrontend(cfg)(x)
    single = torch.cat([LogMelFrontend(cfg)(x[i : i + 1]) for i in range(4)])
    assert torch.allclose(batch, single, atol=1e-4)


@pytest.mark.parametrize(("truncation", "message"), [
    ("fusion", "truncation 'fusion' is the front end of a fused CLAP model; fused CLAP models are not supported yet"),
    ("crop", "unknown truncation 'crop'"),
])
def test_truncation_is_read_from_preprocessor_config(tiny_clap, tmp_path, truncation, message) -> None:
    assert FrontendConfig.from_folder(tiny_clap).truncation == "rand_trunc"
    folder = tmp_path / "model"
    shutil.copytree(tiny_clap, folder)
    path = folder / "preprocessor_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "truncation": truncation}))
    with pytest.raises(ModelFormatError, match=rf"preprocessor_config\.json: {re.escape(message)}"):
        AudioStudent.from_folder(folder)
