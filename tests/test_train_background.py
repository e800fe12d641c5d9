"""`data.background`: non-bird recordings (a folder of class folders, a manifest, the stretches between known calls)
trained onto the background vocabulary's text embeddings as extra classes of the species InfoNCE."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from birdbridge.datasets.background import call_gap_clips, quiet_stretches, read_background
from birdbridge.datasets.base import AudioItem
from birdbridge.errors import BirdbridgeError, InputError
from birdbridge.species import PromptSampler, taxonomy_from_names
from birdbridge.species.background import (
    BackgroundVocabulary,
    background_text_embeddings,
    load_background_vocabulary,
)
from birdbridge.train.config import load_config
from birdbridge.train.data import EpochBatches
from birdbridge.train.loop import train
from birdbridge.train.targets import TextTargets
from train_fixtures import corpus, make_background, make_tone_dataset


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from birdbridge.models.standins import build_small_clap, build_small_clip

    root = tmp_path_factory.mktemp("background")
    folder, manifest = make_background(root)
    return {"root": root, "manifest": make_tone_dataset(root / "data"), "folder": folder, "background": manifest,
            "student": build_small_clap(root / "student", corpus=corpus()),
            "teacher": build_small_clip(root / "teacher")}


def settings(setup, output: Path, **extra) -> list[str]:
    base = {
        "data.dataset": setup["manifest"], "student": setup["student"], "teacher": setup["teacher"],
        "output": output, "run.batch_size": 8, "run.epochs": 2, "data.num_workers": 0, "run.progress": "false",
        "optim.warmup_steps": 2, "run.log_every": 1,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


@pytest.fixture()
def seen_targets(monkeypatch):
    """The class ids of every step's targets (TextTargets.for_step, spied on)."""
    seen: list[torch.Tensor] = []
    original = TextTargets.for_step

    def spy(self, step, species, all_species=False):
        targets, ids = original(self, step, species, all_species)
        seen.append(ids)
        return targets, ids

    monkeypatch.setattr(TextTargets, "for_step", spy)
    return seen


def _losses(out: Path) -> list[float]:
    with open(out / "metrics.csv") as fh:
        return [float(r["loss"]) for r in csv.DictReader(fh)]


@pytest.mark.parametrize("source", ["folder", "background"])
def test_background_trains_as_extra_classes(setup, tmp_path, seen_targets, source) -> None:
    out = tmp_path / "run"
    result = train(load_config(None, settings(setup, out, **{"data.background": setup[source]})))
    assert np.isfinite(_losses(out)).all() and np.isfinite(result.loss)
    meta = json.loads((out / "model" / "birdbridge.json").read_text())["background"]
    expected = 9 if source == "folder" else 6  # a folder has no splits; the manifest's train rows
    assert meta["clips"] == expected and meta["per_batch"] == 1 and meta["first_class"] == 4
    assert [c["label"] for c in meta["vocabulary"]["classes"]][:3] == ["wind", "rain", "running water"]
    # every step's targets hold its one background crop's class, after the four species
    vocab = BackgroundVocabulary()
    used = {vocab.index(name) + 4 for name in ("wind", "rain", "voices")}
    assert len(seen_targets) == result.steps == 2 * (28 // 7)  # 28 training clips, 7 of each batch of 8
    for ids in seen_targets:
        assert int((ids >= 4).sum()) >= 1 and set((ids[ids >= 4]).tolist()) <= used
    assert set(torch.cat(seen_targets).tolist()) >= used  # all three classes were drawn over the run


def test_targets_are_the_background_class_embeddings(setup, tmp_path, monkeypatch) -> None:
    from birdbridge.models.loader import load_teacher

    monkeypatch.setenv("BIRDBRIDGE_CACHE", str(tmp_path))

    teacher = load_teacher(str(setup["teacher"]))
    taxonomy = taxonomy_from_names([f"{c}" for c in ("Pica hudsonia", "Corvus corax")])
    vocab = BackgroundVocabulary.of(["wind", "silence"])
    targets = TextTargets.build(teacher, taxonomy, {"scientific": 1.0}, "single", seed=0, background=vocab)
    assert targets.n_species == 2 and targets.n_classes == 4
    rows, ids = targets.for_step(3, torch.tensor([1, 3, 3, 0]))
    assert ids.tolist() == [0, 1, 3]
    expected = background_text_embeddings(teacher, vocab)[1]
    assert np.allclose(rows[2].numpy(), expected, atol=1e-6)
    everything, all_ids = targets.for_step(3, torch.tensor([0]), all_species=True)
    assert all_ids.tolist() == [0, 1, 2, 3] and everything.shape == (4, targets.dim)
    # cached by the prompts: the same vocabulary reads its entry, other prompts make another
    from birdbridge.species import cache_dir
    from birdbridge.species.background import BackgroundClass

    def entries() -> list[dict]:
        metas = (json.loads(p.read_text()) for p in cache_dir().glob("*.json"))
        return [m for m in metas if m.get("kind") == "background"]

    assert [m["classes"] for m in entries()] == [[["wind", list(vocab.classes[0].prompts)],
                                                   ["silence", list(vocab.classes[1].prompts)]]]
    again = TextTargets.build(teacher, taxonomy, {"scientific": 1.0}, "single", seed=0, background=vocab)
    assert torch.equal(again.background, targets.background) and len(entries()) == 1
    other = BackgroundVocabulary((BackgroundClass("wind", ("a gale",)), vocab.classes[1]), "custom")
    changed = TextTargets.build(teacher, taxonomy, {"scientific": 1.0}, "single", seed=0, background=other)
    assert len(entries()) == 2
    assert not torch.allclose(changed.background[0], targets.background[0])
    assert torch.allclose(changed.background[1], targets.background[1], atol=1e-6)
    assert isinstance(targets.sampler, PromptSampler)


def test_batches_mix_a_fixed_share_of_background_the_same_for_any_world() -> None:
    one = list(EpochBatches(20, 8, seed=1, epochs=3, background=5, background_per_batch=2))
    assert len(one) == 3 * (20 // 6)
    for batch in one:
        assert sum(len(key) == 3 for key in batch) == 2 and len(batch) == 8
        assert all(key[0] >= 20 for key in batch if len(key) == 3)
    for e in range(3):  # each epoch is one pass over (most of) the bird clips, each once
        birds = [key[0] for batch in one[e * 3:(e + 1) * 3] for key in batch if len(key) == 2]
        assert len(birds) == len(set(birds)) == 18
        draws = [key for batch in one[e * 3:(e + 1) * 3] for key in batch if len(key) == 3]
        assert len(draws) == 6 and {key[0] for key in draws} == set(range(20, 25))  # the clips in turn
    two = [list(EpochBatches(20, 8, seed=1, epochs=3, rank=r, world=2, background=5, background_per_batch=2))
           for r in (0, 1)]
    assert [a + b for a, b in zip(*two, strict=True)] == one
    resumed = list(EpochBatches(20, 8, seed=1, epochs=3, start_epoch=1, start_batch=2, background=5,
                                background_per_batch=2))
    assert resumed == one[5:]
    with pytest.raises(ValueError):
        EpochBatches(20, 8, seed=1, epochs=1, background=0, background_per_batch=2)


def test_bad_labels_and_folders_are_named(setup, tmp_path) -> None:
    bad = tmp_path / "bg.csv"
    bad.write_text("path,label\nnoise/wind/w0.wav,wind\nnoise/rain/r0.wav,thunder\n")
    with pytest.raises(InputError, match=r"bg\.csv: line 3: label 'thunder' is not a background class"):
        train(load_config(None, settings(setup, tmp_path / "run", **{"data.background": bad})))
    (tmp_path / "noise" / "thunder").mkdir(parents=True)  # a class folder the vocabulary does not know
    (tmp_path / "noise" / "thunder" / "t.wav").write_bytes(b"")
    with pytest.raises(InputError, match=r"thunder.*folder name 'thunder' is not a background class"):
        read_background(tmp_path / "noise")
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "x.wav").write_bytes(b"")
    with pytest.raises(InputError, match=r"x\.wav.*not in a class folder"):
        read_background(loose)
    custom = tmp_path / "vocab.txt"
    custom.write_text("thunder: thunder; a thunderstorm\n")
    clips, _ = read_background(tmp_path / "noise", load_background_vocabulary(custom))
    assert [c.label for c in clips] == ["thunder"]
    with pytest.raises(InputError, match=r"data\.background_share"):
        load_config(None, settings(setup, tmp_path, **{"data.background": bad, "data.background_share": 0}))
    with pytest.raises(InputError, match="needs objective text"):
        load_config(None, settings(setup, tmp_path, **{"data.background": bad, "objective": "image"}))


def test_quiet_stretches_between_calls() -> None:
    assert quiet_stretches(5.0, [(1.0, 1.5), (1.6, 2.0), (4.6, 4.9)], margin_s=0.1, min_s=0.5) == [
        (0.0, 0.9), (2.1, 4.5)]
    assert quiet_stretches(2.0, [], min_s=0.5) == [(0.0, 2.0)]
    item = AudioItem("a", Path("a.wav"), "Pica hudsonia", "train", 3.0,
                     {"call_onsets": "0.5 2.0", "call_offsets": "1.0 2.2"})
    clips, timed = call_gap_clips([item, AudioItem("b", Path("b.wav"), "Pica hudsonia", "train", 2.0)], "silence",
                                  min_s=0.3)
    assert timed == 1 and [c.label for c in clips] == ["silence"] * 3
    assert np.allclose([(c.start_s, c.end_s) for c in clips], [(0.0, 0.4), (1.1, 1.9), (2.3, 3.0)])
    broken = AudioItem("c", Path("c.wav"), "Pica hudsonia", "train", 3.0, {"call_onsets": "0.5 x", "call_offsets": "1"})
    with pytest.raises(InputError, match=r"recording 'c': call_onsets is not a list of seconds"):
        call_gap_clips([broken], "silence")


def test_stretches_between_the_training_calls(setup, tmp_path, seen_targets, capsys) -> None:
    from birdbridge.demo.world import WorldConfig, generate_world

    world = generate_world(tmp_path / "world", WorldConfig(
        n_orders=1, families_per_order=1, genera_per_family=2, species_per_genus=2, recordings_per_species=6,
        images_per_species=1, clip_s=(1.5, 2.0), seed=2))
    out = tmp_path / "run"
    train(load_config(None, settings(setup, out, **{
        "data.dataset": world.root / "dataset.yaml", "data.background_gaps": "true", "data.background_min_gap_s": 0.2,
        "data.background_gap_label": "quiet"})))
    assert "stretches between the calls of 16 training recordings train as 'silence'" in capsys.readouterr().out
    silence = 4 + BackgroundVocabulary().index("silence")
    assert all(silence in ids.tolist() for ids in seen_targets)
    with pytest.raises(BirdbridgeError, match="no recording of split 'train' has call times"):
        train(load_config(None, settings(setup, tmp_path / "tones", **{"data.background_gaps": "true"})))
    with pytest.raises(InputError, match=r"background_gap_label.*'thunder' is not a background class"):
        train(load_config(None, settings(setup, tmp_path / "w2", **{
            "data.dataset": world.root / "dataset.yaml", "data.background_gaps": "true",
            "data.background_gap_label": "thunder"})))
