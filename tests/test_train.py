"""`birdbridge train`: end to end, exact resume after a kill, torchrun DDP, trainable subsets, config errors."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from birdbridge.errors import InputError
from birdbridge.train.config import load_config
from birdbridge.train.loop import train
from cli_fixtures import finish, run, start
from train_fixtures import corpus, make_background, make_tone_dataset


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from birdbridge.models.standins import build_small_clap, build_small_clip

    root = tmp_path_factory.mktemp("train")
    manifest = make_tone_dataset(root / "data")
    student = build_small_clap(root / "student", corpus=corpus())
    teacher = build_small_clip(root / "teacher")
    _, background = make_background(root)
    return {"root": root, "manifest": manifest, "student": student, "teacher": teacher, "background": background}


def settings(setup, output: Path, **extra) -> list[str]:
    base = {
        "data.dataset": setup["manifest"], "student": setup["student"], "teacher": setup["teacher"],
        "output": output, "run.batch_size": 8, "run.epochs": 4, "run.checkpoint_every": 3,
        "data.num_workers": 0, "run.progress": "false", "optim.warmup_steps": 2, "run.log_every": 1,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return {**load_file(model_dir / "model.safetensors"), **{f"head.{k}": v for k, v in
                                                             load_file(model_dir / "head.safetensors").items()}}


def assert_same_weights(a: Path, b: Path, atol: float) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    worst = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    assert worst <= atol, worst


def test_cli_end_to_end(setup, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    args = [x for s in settings(setup, out, **{"data.val_split": "test", "run.eval_every": 4}) for x in ("--set", s)]
    result = run(capsys, "train", *args)
    assert result.returncode == 0, result.stderr
    model = out / "model"
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "head.safetensors",
                 "birdbridge.json", "species.csv"):
        assert (model / name).exists(), name
    import json

    meta = json.loads((model / "birdbridge.json").read_text())
    assert meta["teacher"]["embed_dim"] == 24 and len(meta["teacher"]["fingerprint"]) == 32
    assert meta["prompts"]["templates"] == "single" and meta["train"]["steps"] == 12
    metrics = (out / "metrics.csv").read_text().splitlines()
    assert metrics[0].startswith("step,epoch,loss,lr") and len(metrics) == 13
    assert (out / "eval.csv").read_text().count("\n") == 4  # header + steps 4, 8, 12
    # The audio tower stays loadable by plain transformers ...
    from transformers import ClapAudioModelWithProjection

    ClapAudioModelWithProjection.from_pretrained(model)
    # ... and birdbridge embeds with the whole student, in the teacher's space.
    emb = run(capsys, "embed", "audio", "--model", model, setup["manifest"].parent / "audio", "-o", tmp_path / "e.npy")
    assert emb.returncode == 0, emb.stderr
    assert np.load(tmp_path / "e.npy").shape[1] == 24


def test_a_model_trained_from_relative_paths_records_them_absolute(setup, tmp_path, monkeypatch) -> None:
    import json

    monkeypatch.chdir(setup["root"])
    out = tmp_path / "run"
    train(load_config(None, settings(setup, out, **{"student": "student", "teacher": "teacher", "run.epochs": 1})))
    meta = json.loads((out / "model" / "birdbridge.json").read_text())
    assert meta["teacher"]["ref"] == str(setup["teacher"].resolve())
    assert meta["base_student"]["ref"] == str(setup["student"].resolve())


def test_training_lowers_the_loss(setup, tmp_path) -> None:
    cfg = load_config(None, settings(setup, tmp_path / "run", **{"run.epochs": 8, "optim.lr": 1e-3}))
    train(cfg)
    import csv

    with open(tmp_path / "run" / "metrics.csv") as fh:
        losses = [float(r["loss"]) for r in csv.DictReader(fh)]
    assert np.mean(losses[-4:]) < np.mean(losses[:4])


@pytest.mark.slow
@pytest.mark.parametrize("background", [False, True], ids=["birds", "with-background"])
def test_exact_resume_after_kill(setup, tmp_path, background, capsys) -> None:
    extra = {"run.epochs": 16, "data.num_workers": 2}
    if background:  # background crops (their own draws and crops) continue exactly too
        extra.update({"data.background": setup["background"], "data.background_share": 0.25})
    reference = tmp_path / "uninterrupted"
    train(load_config(None, settings(setup, reference, **extra)))

    killed = tmp_path / "killed"
    args = [x for s in settings(setup, killed, **extra) for x in ("--set", s)]
    proc = start("train", *args, stdout=subprocess.DEVNULL, text=False, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and not list((killed / "checkpoints").glob("step-*.pt")):
        if proc.poll() is not None:
            pytest.fail(proc.stderr.read().decode())
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "model").exists(), "the run finished before it could be killed"
    resumed = run(capsys, "train", *args)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from step" in resumed.stderr
    assert_same_weights(reference / "model", killed / "model", atol=1e-6)
    ref_log = (reference / "metrics.csv").read_text().splitlines()
    res_log = (killed / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[:3] for r in ref_log] == [r.split(",")[:3] for r in res_log]  # step, epoch, loss


@pytest.mark.slow
def test_torchrun_two_processes_match_one(setup, tmp_path) -> None:
    """Two processes train the same weights as one, with a keep loss (a species head of its own) on the global batch."""
    extra = {"run.epochs": 2, "loss.keep": "classify", "loss.keep_weight": 0.5}
    one = tmp_path / "one"
    train(load_config(None, settings(setup, one, **extra)))
    two = tmp_path / "two"
    args = [x for s in settings(setup, two, **extra) for x in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = finish(start("train", *args, launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                                                    "2"), env=env), timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "x2" in result.stdout
    assert_same_weights(one / "model", two / "model", atol=1e-4)


def test_crops_cut_from_memory_equal_crops_read_from_disk(audio_dir) -> None:
    """Decoded once, recordings give every crop sample for sample as read_audio does (any format, any rate), the
    same error past the end, and recordings past the budget are read from disk."""
    from birdbridge.audio import read_audio
    from birdbridge.errors import AudioError
    from birdbridge.train.data import DecodedClips

    decoded = DecodedClips()
    files = sorted(audio_dir.iterdir())
    for path in files:
        for rate, offset, duration in ((16_000, 0.0, None), (16_000, 0.2, 0.5), (22_050, 0.05, 0.25),
                                       (48_000, 0.0, 2.0), (44_100, 0.25, None), (16_000, 9.0, 1.0)):
            try:
                want = read_audio(path, rate, offset_s=offset, duration_s=duration)
            except AudioError as exc:  # past the end: the same error
                with pytest.raises(AudioError, match=re.escape(str(exc))):
                    decoded.read(path, rate, offset, duration)
                continue
            np.testing.assert_array_equal(decoded.read(path, rate, offset, duration), want)
    assert 0 < decoded.used_bytes <= decoded.budget_bytes and all(decoded._audio[p] is not None for p in files)
    small = DecodedClips(budget_bytes=4 * 16_000)  # a 1 s recording at 16 kHz fills it
    tone = audio_dir / "a_tone.wav"
    for path in files:
        np.testing.assert_array_equal(small.read(path, 16_000, 0.1, 0.5), read_audio(path, 16_000, offset_s=0.1,
                                                                                     duration_s=0.5))
    assert [p.name for p in files if small._audio[p] is not None] == [tone.name]


def test_trainable_subsets(setup, tmp_path) -> None:
    base = load_file(setup["student"] / "model.safetensors")  # ClapModel: audio keys as in the saved tower
    for trainable in ("head", "last:1"):
        out = tmp_path / trainable.replace(":", "")
        train(load_config(None, settings(setup, out, **{"model.trainable": trainable, "run.epochs": 2,
                                                         "optim.lr": 1e-2})))
        trained = weights(out / "model")
        changed = {k for k in trained if k in base and not torch.equal(trained[k], base[k])}
        if trainable == "head":
            assert changed == set()
        else:
            assert changed and all(".layers.1.blocks." in k or ".audio_encoder.norm." in k or
                                   k.startswith("audio_projection.") for k in changed), sorted(changed)


def test_config_errors(setup, tmp_path, capsys) -> None:
    with pytest.raises(InputError, match=r"unknown key\(s\) optim\.lrr"):
        load_config(None, settings(setup, tmp_path, **{"optim.lrr": 1}))
    with pytest.raises(InputError, match=r"run\.batch_size"):
        load_config(None, settings(setup, tmp_path, **{"run.batch_size": "many"}))
    with pytest.raises(InputError, match=r"model\.trainable"):
        load_config(None, settings(setup, tmp_path, **{"model.trainable": "some"}))
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2\n")
    with pytest.raises(InputError, match=r"bad\.yaml"):
        load_config(bad)
    result = run(capsys, "train", tmp_path / "missing.yaml")
    assert result.returncode == 1 and "missing.yaml" in result.stderr and "Traceback" not in result.stderr


def test_refuses_to_resume_a_different_run(setup, tmp_path) -> None:
    out = tmp_path / "run"
    train(load_config(None, settings(setup, out, **{"run.epochs": 1})))
    with pytest.raises(Exception, match="different run"):
        train(load_config(None, settings(setup, out, **{"run.epochs": 1, "optim.lr": 0.5})))
    train(load_config(None, settings(setup, out, **{"run.epochs": 1, "optim.lr": 0.5})), fresh=True)


def test_held_out_species_are_left_out_of_training_and_evaluated_apart(setup, tmp_path) -> None:
    """data.holdout drops the species' training recordings (21 of 28 clips: 2 steps of 8 instead of 3), the model
    records them, and evaluate reports seen and unseen species apart from that record."""
    import json

    from birdbridge.evaluate.runner import EvalSettings, evaluate

    out = tmp_path / "run"
    train(load_config(None, settings(setup, out, **{"run.epochs": 1, "data.holdout.species": "[Corvus corax]"})))
    meta = json.loads((out / "model" / "birdbridge.json").read_text())
    assert meta["holdout"]["species"] == ["Corvus corax"] and meta["train"]["steps"] == 2
    result = evaluate({"held": out / "model"}, setup["manifest"], baselines=(), settings=EvalSettings(bootstrap=0))
    assert result.holdout.species == ["Corvus corax"] and result.holdout.source == "model"
    groups = result.method("distilled").groups
    assert groups["unseen"]["n_queries"] == 3 and groups["seen"]["n_queries"] == 9  # test recordings
    assert {"a2t_map", "zero_shot_top1", "knn_acc", "a2t/genus/map", "t2a/species/r1"} <= set(groups["unseen"])
