"""The real BioLingual architecture fits: full-size, random weights, hub layout, loaded through the
registry's factory, embeds one recording. (BioCLIP-2's counterpart, checked against open_clip itself,
is ``test_teacher.py::test_full_size_bioclip2_architecture``.)"""

from __future__ import annotations

import numpy as np
import pytest

from birdbridge.embed import embed_audio
from birdbridge.models.loader import clear_model_cache, detect_layout, load_student


@pytest.mark.slow
def test_full_size_biolingual_through_the_registry(tmp_path) -> None:
    from birdbridge.models.standins import build_full_size_biolingual

    folder = build_full_size_biolingual(tmp_path / "BioLingual")
    assert detect_layout(folder) == "clap"
    student = load_student(folder, "cpu")
    assert student.sample_rate == 48_000 and student.window_samples == 480_000 and student.embed_dim == 512
    rng = np.random.default_rng(0)
    out = embed_audio([0.1 * rng.standard_normal(48_000 * 12).astype(np.float32)], folder, sample_rate=48_000)
    assert out.shape == (1, 512) and np.isfinite(out).all()
    clear_model_cache()
