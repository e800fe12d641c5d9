"""loss.keep: the losses keeping the student's geometry, against direct computations; what trains, what is saved."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch
from safetensors.torch import load_file

from birdbridge.errors import InputError
from birdbridge.train.config import HeadConfig, load_config
from birdbridge.train.keep import KeepLoss, classify_loss, feature_loss, keep_parts, relational_loss
from birdbridge.train.loss import species_info_nce
from birdbridge.train.objectives import Objective, StepInput
from birdbridge.train.student_setup import fresh_student
from train_fixtures import make_tone_dataset


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """New embeddings [5, 6], original ones [5, 4] (another width) and species ids."""
    g = torch.Generator().manual_seed(3)
    return torch.randn(5, 6, generator=g), torch.randn(5, 4, generator=g), torch.tensor([0, 2, 0, 1, 2])


def unit(v: list[float]) -> list[float]:
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def test_relational_loss_is_the_kl_of_the_rows_of_similarities_without_the_diagonal() -> None:
    new, orig, _ = batch()
    tau = 0.2

    def rows(x: torch.Tensor) -> list[list[float]]:
        u = [unit(r) for r in x.double().tolist()]
        out = []
        for i in range(len(u)):
            logits = [sum(a * b for a, b in zip(u[i], u[j], strict=True)) / tau for j in range(len(u)) if j != i]
            z = sum(math.exp(v) for v in logits)
            out.append([math.exp(v) / z for v in logits])
        return out

    p, q = rows(orig), rows(new)
    expected = sum(sum(a * math.log(a / b) for a, b in zip(pr, qr, strict=True)) for pr, qr in zip(p, q, strict=True))
    assert float(relational_loss(new, orig, tau)) == pytest.approx(expected / len(p), rel=1e-5)
    rotation = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(1))).Q
    assert float(relational_loss(orig @ rotation, orig, tau)) == pytest.approx(0, abs=1e-5)  # rotated: the same rows
    assert float(relational_loss(new[:1], orig[:1], tau)) == 0.0


def test_feature_and_classify_losses_match_direct_computations() -> None:
    new, orig, species = batch()
    torch.manual_seed(0)
    adapter, classifier = torch.nn.Linear(6, 4), torch.nn.Linear(6, 3)
    w, b = adapter.weight.double().tolist(), adapter.bias.double().tolist()
    total = 0.0
    for x, y in zip(new.double().tolist(), orig.double().tolist(), strict=True):
        x, y = unit(x), unit(y)
        mapped = [sum(w[o][i] * x[i] for i in range(6)) + b[o] for o in range(4)]
        total += sum((m - t) ** 2 for m, t in zip(mapped, y, strict=True))
    assert float(feature_loss(new, orig, adapter).detach()) == pytest.approx(total / 5, rel=1e-5)
    w, b = classifier.weight.double().tolist(), classifier.bias.double().tolist()
    total = 0.0
    for x, s in zip(new.double().tolist(), species.tolist(), strict=True):
        x = unit(x)
        logits = [sum(w[c][i] * x[i] for i in range(6)) + b[c] for c in range(3)]
        total += math.log(sum(math.exp(v) for v in logits)) - logits[s]
    assert float(classify_loss(new, species, classifier).detach()) == pytest.approx(total / 5, rel=1e-5)
    keep = KeepLoss("classify", 0.3, 0.1, 6, 0, 3)
    expected = 0.3 * float(classify_loss(new, species, keep.classifier).detach())
    assert float(keep(new, species, None).detach()) == pytest.approx(expected)


@pytest.mark.parametrize("kind", ["relational", "feature", "classify"])
def test_gradients_reach_the_student_and_never_the_frozen_original(tiny_clap, kind) -> None:
    student = fresh_student(str(tiny_clap), HeadConfig(), 8)
    keep, original = keep_parts(kind, 1.0, 0.1, student, n_classes=3)
    assert (original is None) == (kind == "classify")
    before = {k: v.clone() for k, v in student.state_dict().items() if not k.startswith("head.")}
    waves = torch.randn(4, student.window_samples, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        orig = original.clap_embedding(waves) if original is not None else None
    loss = keep(student(waves), torch.tensor([0, 1, 2, 0]), orig)
    loss.backward()
    assert student.head.net.weight.grad.abs().sum() > 0
    assert student.audio_projection[0].weight.grad.abs().sum() > 0 if isinstance(
        student.audio_projection, torch.nn.Sequential) else any(
        p.grad is not None and p.grad.abs().sum() > 0 for p in student.audio_projection.parameters())
    trainable = list(keep.parameters())
    assert (len(trainable) > 0) == (kind != "relational") and all(p.grad is not None for p in trainable)
    if original is not None:
        assert original.head is None and not original.training and student.head is not None
        assert all(not p.requires_grad and p.grad is None for p in original.parameters())
        # ... a copy: the student's weights may move without moving it.
        assert all(torch.equal(v, original.state_dict()[k]) for k, v in before.items())
        assert original.audio_model is not student.audio_model


def test_weight_zero_or_none_is_off_and_the_default_loss_is_the_pivots_alone(tiny_clap) -> None:
    student = fresh_student(str(tiny_clap), HeadConfig(), 8)
    for kind in ("none", "relational", "feature", "classify"):
        assert keep_parts(kind, 0.0, 0.1, student, 3) == (None, None)

    class Text:
        def for_step(self, step, species, all_species):
            return targets, torch.arange(3)

    torch.manual_seed(1)
    targets, emb = torch.randn(3, 8), torch.randn(4, 8, requires_grad=True)
    species = torch.tensor([0, 1, 2, 0])
    objective = Objective("text", text=Text(), frames=None, selection="random", nearest_warmup_epochs=0, subwindows=1,
                          text_weight=1.0, image_weight=1.0, negatives_all=False, symmetric=True, seed=0)
    step = StepInput(torch.zeros(4, 16), species, torch.arange(4), torch.zeros(4), 1, 0)
    from birdbridge.train import distributed as D

    model = lambda waves: (emb, torch.tensor(10.0))  # noqa: E731
    args = (model, step, 16, D.DistInfo(), torch.device("cpu"), torch.autocast("cpu", enabled=False))
    pivot = float(species_info_nce(emb, species, targets, torch.arange(3), 10.0).detach())
    assert float(objective(*args).detach()) == pivot
    keep = KeepLoss("classify", 2.0, 0.1, 8, 0, 3)
    objective.keep_geometry(keep, None)
    assert float(objective(*args)) == pytest.approx(pivot + 2 * float(classify_loss(emb, species, keep.classifier)))
    assert objective.last_keep == pytest.approx(2 * float(classify_loss(emb, species, keep.classifier)))


@pytest.mark.parametrize("key, value, named", [
    ("loss.keep", "distill", "loss.keep"), ("loss.keep_weight", -1, "loss.keep_weight"),
    ("loss.keep_weight", ".nan", "loss.keep_weight"), ("loss.keep_temperature", 0, "loss.keep_temperature"),
    ("loss.keep_weight", 0.5, "loss.keep_weight"),  # a weight without a loss (loss.keep stays none)
    ("loss.keep_weight", "much", "loss.keep_weight"),
])
def test_bad_keep_settings_name_the_key(key, value, named) -> None:
    with pytest.raises(InputError, match=named.replace(".", r"\.")):
        load_config(None, ["data.dataset=x.csv", f"{key}={value}"])
    assert load_config(None, ["data.dataset=x.csv", "loss.keep=feature", "loss.keep_weight=0"]).loss.keep_weight == 0


def test_training_with_a_keep_loss_saves_a_student_that_loads_without_the_trainer_or_the_adapter(
        tmp_path, monkeypatch, tiny_clap, tiny_clip) -> None:
    from birdbridge.train.loop import train

    manifest = make_tone_dataset(tmp_path / "data", per_species=4, test_per_species=1)
    student, teacher = tiny_clap, tiny_clip
    out = tmp_path / "run"
    cfg = load_config(None, [
        f"data.dataset={manifest}", f"student={student}", f"teacher={teacher}", f"output={out}", "run.batch_size=4",
        "run.max_steps=2", "data.num_workers=0", "run.progress=false", "run.log_every=1", "calibration.enabled=false",
        "run.checkpoint_every=1", "loss.keep=feature", "loss.keep_weight=1.0"])
    result = train(cfg)
    log = (out / "metrics.csv").read_text().splitlines()
    assert "keep_loss" in log[0] and len(log) == 3
    *_, last = sorted((out / "checkpoints").iterdir())
    assert any(k.startswith("keep.adapter.") for k in torch.load(last, weights_only=False)["model"])  # kept ...
    files = ("model.safetensors", "head.safetensors")
    saved = {k: v for f in files for k, v in load_file(result.model / f).items()}
    assert not any("adapter" in k or "keep" in k for k in saved)  # ... but not in the model
    last.unlink()  # resuming from step 1, the adapter's state included, ends where the run did
    assert train(cfg).resumed_from == 1
    again = {k: v for f in files for k, v in load_file(result.model / f).items()}
    assert max(float((again[k] - saved[k]).abs().max()) for k in saved) <= 1e-6
    meta = json.loads((result.model / "birdbridge.json").read_text())
    assert meta["train"]["config"]["loss"]["keep"] == "feature"
    for name in [m for m in sys.modules if m.startswith("birdbridge.train")] + ["birdbridge.train"]:
        monkeypatch.setitem(sys.modules, name, None)  # importing any of the trainer now fails
    from birdbridge.models.loader import clear_model_cache, load_student

    clear_model_cache()
    loaded = load_student(result.model)
    dim = meta["teacher"]["embed_dim"]
    assert loaded.embed_dim == dim and loaded.embed(torch.zeros(1, loaded.window_samples)).shape == (1, dim)
