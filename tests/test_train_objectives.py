"""Image-pivot objectives: frame candidates, Nearest Match, Multiframe sub-windows, the image InfoNCE, and
training on videos end to end (every frame selection, text + image, exact resume, clear errors)."""

from __future__ import annotations

import csv
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from birdbridge.errors import BirdbridgeError
from birdbridge.train.config import load_config
from birdbridge.train.loop import train
from birdbridge.train.objectives import FrameTargets, Objective, StepInput, image_info_nce

TIMES = np.arange(10) * 0.5  # one frame every 0.5 s over a 5 s clip
DIM = 16


def frame_targets() -> FrameTargets:
    vectors = np.eye(DIM, dtype=np.float32)[:10]  # frame i is basis vector i: a chosen frame names itself
    return FrameTargets([TIMES, TIMES], [vectors, vectors[::-1].copy()], seed=0)


def chosen(vectors: torch.Tensor, clip: int) -> list[int]:
    """Frame indices of the chosen target vectors of ``clip`` (clip 1 stores its frames in reverse)."""
    idx = vectors.argmax(dim=-1).tolist()
    return idx if clip == 0 else [9 - i for i in idx]


def objective(selection: str, warmup: int = 0, subwindows: int = 4) -> Objective:
    return Objective("image", text=None, frames=frame_targets(), selection=selection, nearest_warmup_epochs=warmup,
                     subwindows=subwindows, text_weight=1.0, image_weight=1.0, negatives_all=False, symmetric=True,
                     seed=0)


def step_input(offsets: list[float], clips: list[int], step: int = 1, epoch: int = 0, window: int = 800) -> StepInput:
    waves = torch.arange(len(offsets) * window, dtype=torch.float32).reshape(len(offsets), window)
    return StepInput(waves, torch.tensor(clips), torch.tensor(clips), torch.tensor(offsets, dtype=torch.float64),
                     step, epoch)


def test_candidates_are_the_frames_shown_during_the_window() -> None:
    targets = frame_targets()
    assert targets.candidates(0, 0.9, 2.1).tolist() == [2, 3, 4]  # 1.0, 1.5, 2.0 s
    assert targets.candidates(0, 1.1, 1.4).tolist() == [2]  # no frame inside: the one nearest the middle
    assert targets.candidates(0, 7.0, 8.0).tolist() == [9]  # past the end: the last frame
    assert targets.candidates(0, -np.inf, np.inf).tolist() == list(range(10))


def test_nearest_is_the_candidate_most_like_the_audio() -> None:
    targets = frame_targets()
    audio = F.normalize(torch.tensor(np.eye(DIM, dtype=np.float32)[7] + 0.3 * np.eye(DIM, dtype=np.float32)[2]), dim=0)
    assert int(targets.nearest(0, -np.inf, np.inf, audio).argmax()) == 7
    assert int(targets.nearest(0, 0.0, 1.6, audio).argmax()) == 2  # 7 is not shown in [0, 1.6): next best
    assert 9 - int(targets.nearest(1, -np.inf, np.inf, audio).argmax()) == 2  # clip 1: frame 2 holds vector 7


def reference_multi_positive(a: torch.Tensor, b: torch.Tensor, same: torch.Tensor, scale: float) -> float:
    """Loop form: -log of the summed softmax probability of each row's positives, averaged over rows."""
    s = scale * F.normalize(a, dim=-1).double() @ F.normalize(b, dim=-1).double().T
    rows = [-math.log(float(torch.softmax(s[i], 0)[same[i]].sum())) for i in range(len(a))]
    return sum(rows) / len(rows)


def test_image_info_nce_matches_the_loop_form_with_shared_species() -> None:
    torch.manual_seed(0)
    audio, frames = torch.randn(6, DIM), torch.randn(6, DIM)
    species = torch.tensor([0, 1, 0, 2, 1, 3])
    same = species[:, None] == species[None, :]
    one_way = reference_multi_positive(audio, frames, same, 12.0)
    both = 0.5 * (one_way + reference_multi_positive(frames, audio, same, 12.0))
    assert math.isclose(float(image_info_nce(audio, frames, species, 12.0, symmetric=False)), one_way, rel_tol=1e-5)
    assert math.isclose(float(image_info_nce(audio, frames, species, 12.0)), both, rel_tol=1e-5)
    # A frame of the same species is never a negative: matching either of a species' frames costs the same.
    aligned = F.normalize(torch.eye(4)[species], dim=-1)
    swapped = aligned[[2, 1, 0, 3, 4, 5]]  # audio 0 and 2 (both species 0) trade frames
    assert math.isclose(float(image_info_nce(aligned, aligned, species, 20.0)),
                        float(image_info_nce(aligned, swapped, species, 20.0)), rel_tol=1e-6)


def pick(obj: Objective, batch: StepInput, emb: torch.Tensor | None = None, rate: int = 160) -> tuple:
    multiframe = obj.selection == "multiframe"
    _, _, clips, starts, spans = obj._inputs(batch, rate, multiframe)
    emb = torch.randn(len(clips), DIM) if emb is None else emb
    return obj._frames(batch, emb, clips, starts, spans), clips, starts, spans


def test_random_frames_are_shown_during_the_crop_and_depend_on_clip_time_and_step_only() -> None:
    obj = objective("random")
    seen = set()
    for step in range(1, 40):
        frames, *_ = pick(obj, step_input([1.0], [0], step=step, window=320))  # a 2 s crop from 1 s: frames 2-5
        seen.update(chosen(frames, 0))
    assert seen == {2, 3, 4, 5}  # VIP-ANT: any frame of the audio's segment of the video, and only those
    batch = step_input([0.0, 2.0, 1.0], [0, 1, 0], step=5)
    frames, *_ = pick(obj, batch)
    again, *_ = pick(obj, step_input([1.0, 0.0, 2.0], [0, 0, 1], step=5))  # the same crops, reordered
    assert torch.equal(frames[[2, 0, 1]], again)
    later = [pick(obj, step_input([0.0, 2.0, 1.0], [0, 1, 0], step=s))[0] for s in (6, 7)]
    assert not all(torch.equal(frames, x) for x in later)  # a new draw every step


def test_nearest_uses_random_frames_until_the_warmup_ends_then_the_best_of_the_crop() -> None:
    batch = step_input([0.0, 2.0], [0, 1], epoch=0, window=480)  # 3 s crops: frames 0-5 and 4-9
    emb = torch.tensor(np.eye(DIM, dtype=np.float32)[[4, 1]])  # like frame 4 of clip 0 and frame 8 of clip 1
    warming, *_ = pick(objective("nearest", warmup=1), batch, emb)
    random, *_ = pick(objective("random"), batch, emb)
    assert torch.equal(warming, random)
    batch.epoch = 1
    best, *_ = pick(objective("nearest", warmup=1), batch, emb)
    assert chosen(best[:1], 0) == [4] and chosen(best[1:], 1) == [8]
    emb = torch.tensor(np.eye(DIM, dtype=np.float32)[[8, 9]])  # most like frames the crops do not show
    best, *_ = pick(objective("nearest", warmup=1), batch, emb)
    assert chosen(best[:1], 0)[0] in range(6) and chosen(best[1:], 1)[0] in range(4, 10)


def test_multiframe_splits_each_crop_into_subwindows_paired_with_frames_shown_then() -> None:
    obj = objective("multiframe", subwindows=4)
    rate, window = 160, 800  # 5 s crops: four 1.25 s sub-windows
    batch = step_input([0.0, 0.0], [0, 1], window=window)
    waves, species, clips, starts, spans = obj._inputs(batch, rate, True)
    assert waves.shape == (8, window) and clips.tolist() == [0] * 4 + [1] * 4
    assert species.tolist() == [0] * 4 + [1] * 4
    np.testing.assert_allclose(starts, [0, 1.25, 2.5, 3.75] * 2)
    np.testing.assert_allclose(spans, 1.25)
    piece = batch.waves[0, 200:400].numpy()  # sub-window 1 of crop 0, repeat-padded to a whole window
    np.testing.assert_array_equal(waves[1].numpy(), np.tile(piece, 4))
    for step in range(1, 20):
        frames, clips, starts, spans = pick(obj, step_input([0.0, 0.0], [0, 1], step=step, window=window), rate=rate)
        for j in range(len(clips)):
            frame = chosen(frames[j : j + 1], int(clips[j]))[0]
            assert starts[j] <= TIMES[frame] < starts[j] + spans[j]


# ---------------------------------------------------------------------------------------------------------------
# Training on videos, end to end


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from birdbridge.demo.world import WorldConfig, generate_world
    from birdbridge.models.standins import build_small_clap, build_small_clip

    root = tmp_path_factory.mktemp("pivots")
    world = generate_world(root / "world", WorldConfig(
        n_orders=1, families_per_order=1, genera_per_family=2, species_per_genus=2, recordings_per_species=2,
        images_per_species=2, videos_per_species=4, seed=5,
    ))  # fmt: skip
    corpus = [s.common_name for s in world.taxonomy]
    return {"root": root, "dataset": root / "world" / "dataset.yaml", "videos": len(world.video_items("train")),
            "student": build_small_clap(root / "student", corpus=corpus), "teacher": build_small_clip(root / "teacher")}


def settings(setup, output, **extra) -> list[str]:
    base = {
        "data.dataset": setup["dataset"], "student": setup["student"], "teacher": setup["teacher"],
        "output": output, "run.batch_size": 4, "run.epochs": 3, "run.checkpoint_every": 2, "run.keep_checkpoints": 10,
        "data.num_workers": 0, "run.progress": "false", "optim.warmup_steps": 1, "run.log_every": 1,
        "video.fps": 4, "objective": "image",
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def losses(out) -> list[float]:
    with open(out / "metrics.csv") as fh:
        return [float(r["loss"]) for r in csv.DictReader(fh)]


@pytest.mark.parametrize("selection", ["random", "nearest", "multiframe"])
def test_image_pivot_training_runs_for_every_frame_selection(setup, tmp_path, selection) -> None:
    import json

    result = train(load_config(None, settings(setup, tmp_path / "run", **{"video.frame_selection": selection,
                                                                          "video.nearest_warmup_epochs": 1})))
    per_epoch = setup["videos"] // 4
    assert result.steps == 3 * per_epoch and all(math.isfinite(x) for x in losses(tmp_path / "run"))
    meta = json.loads((result.model / "birdbridge.json").read_text())
    assert meta["objective"] == "image"
    assert meta["train"]["config"]["video"]["frame_selection"] == selection
    assert meta["teacher"]["embed_dim"] == 24


@pytest.mark.slow
def test_text_and_image_resume_exactly_across_the_nearest_warmup(setup, tmp_path) -> None:
    from test_train import assert_same_weights

    extra = {"objective": "both", "video.frame_selection": "nearest", "video.nearest_warmup_epochs": 1,
             "run.epochs": 4}
    reference = tmp_path / "reference"
    train(load_config(None, settings(setup, reference, **extra)))
    resumed = tmp_path / "resumed"
    shutil.copytree(reference, resumed)
    shutil.rmtree(resumed / "model")
    checkpoints = sorted((resumed / "checkpoints").glob("step-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    assert len(checkpoints) >= 3
    for later in checkpoints[1:]:  # back to step 2: still in the warm-up epoch of random frames
        later.unlink()
    result = train(load_config(None, settings(setup, resumed, **extra)))
    assert result.resumed_from == 2
    assert_same_weights(reference / "model", resumed / "model", atol=1e-6)
    assert losses(reference) == pytest.approx(losses(resumed), rel=1e-6)


def test_image_objective_without_videos_is_a_clear_error(setup, tmp_path) -> None:
    from train_fixtures import make_tone_dataset

    manifest = make_tone_dataset(tmp_path / "tones", per_species=3, test_per_species=1)
    with pytest.raises(BirdbridgeError, match="no videos in split 'train'"):
        train(load_config(None, settings(setup, tmp_path / "run", **{"data.dataset": manifest})))
    args = [x for s in settings(setup, tmp_path / "run", **{"data.dataset": manifest}) for x in ("--set", s)]
    cli = subprocess.run([sys.executable, "-m", "birdbridge", "train", *args], capture_output=True, text=True,
                         timeout=600)
    assert cli.returncode != 0 and "no videos in split 'train'" in cli.stderr
    assert "Traceback" not in cli.stderr


@pytest.mark.parametrize("name", ["distill.yaml", "image_pivot.yaml"])
def test_shipped_configs_load_and_name_every_setting_they_change(name) -> None:
    from pathlib import Path

    import yaml

    path = Path(__file__).parents[1] / "configs" / name
    cfg = load_config(path, [])
    assert cfg.student == "biolingual" and cfg.teacher == "bioclip-2"
    assert cfg.objective == yaml.safe_load(path.read_text()).get("objective", "text")


def copy_world(setup, tmp_path):
    """A copy of the video world to break, and its training videos' rows."""
    world = tmp_path / "world"
    shutil.copytree(setup["dataset"].parent, world)
    with open(world / "videos.csv") as fh:
        return world, [r for r in csv.DictReader(fh) if r["split"] == "train"]


def test_broken_and_silent_videos_are_skipped_and_listed(setup, tmp_path) -> None:
    from video_fixtures import write_video

    world, train_rows = copy_world(setup, tmp_path)
    truncated, silent = world / train_rows[0]["path"], world / train_rows[1]["path"]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 3])
    write_video(silent, 20, 8)  # the same picture track length, no sound
    result = train(load_config(None, settings(setup, tmp_path / "run", **{"data.dataset": world / "dataset.yaml",
                                                                          "run.epochs": 1})))
    assert result.steps == (len(train_rows) - 2) // 4
    listed = (tmp_path / "run" / "bad_files.txt").read_text()
    assert str(truncated.name) in listed and str(silent.name) in listed
    assert len(listed.strip().splitlines()) == 2


def test_unreliable_audio_is_left_out_and_a_variable_frame_rate_is_reported(setup, tmp_path, capsys) -> None:
    from video_fixtures import tone_burst, write_video

    world, train_rows = copy_world(setup, tmp_path)
    with open(world / "videos.csv") as fh:
        rows = list(csv.DictReader(fh))
    unreliable = {r["id"] for r in train_rows[:4]}
    for r in rows:
        r["reliable_audio"] = "false" if r["id"] in unreliable else r["reliable_audio"]
    with open(world / "videos.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    vfr = world / train_rows[5]["path"]
    write_video(vfr, times=[0.0, 0.1, 0.15, 0.5, 0.55, 1.2, 1.3, 2.0, 2.4, 3.0],
                audio=tone_burst(3.0, 16_000, 0.5, 1.5))
    extra = {"data.dataset": world / "dataset.yaml", "run.epochs": 1}
    result = train(load_config(None, settings(setup, tmp_path / "run", **extra)))
    out = capsys.readouterr().out
    assert result.steps == (len(train_rows) - 4) // 4
    assert "left out 4 videos marked reliable_audio = false" in out
    assert f"{vfr}: variable frame rate" in out
    extra["video.reliable_audio_only"] = "false"
    kept = train(load_config(None, settings(setup, tmp_path / "all", **extra)))
    assert kept.steps == len(train_rows) // 4
