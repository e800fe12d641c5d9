"""`birdbridge experiment GRID.yaml`: the grid's runs, bad grids refused before any run, reruns skipping finished
runs, failed runs reported, and a comparison table holding each run's own figures."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from birdbridge.experiment.grid import load_grid, run_name
from birdbridge.experiment.table import SEEDS_CI, seed_cell
from cli_fixtures import run
from train_fixtures import make_tone_dataset

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_clap, tiny_clip) -> Path:
    """A tone dataset and a base config that trains one step on it."""
    root = tmp_path_factory.mktemp("experiment")
    manifest = make_tone_dataset(root / "data", per_species=6, test_per_species=2)
    base = {"student": str(tiny_clap), "teacher": str(tiny_clip),
            "data": {"dataset": str(manifest), "num_workers": 0, "validate_files": False},
            "calibration": {"enabled": False}, "optim": {"warmup_steps": 1},
            "run": {"batch_size": 8, "max_steps": 1, "progress": False}}
    (root / "base.yaml").write_text(yaml.safe_dump(base))
    return root


def grid_file(folder: Path, output: Path, **body) -> Path:
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump({"config": "base.yaml", "output": str(output), **body}, sort_keys=False))
    return path


def test_a_grid_expands_to_its_runs(world, tmp_path) -> None:
    (tmp_path / "base.yaml").write_text((world / "base.yaml").read_text())
    grid = load_grid(grid_file(tmp_path, tmp_path / "exp", set={"run.epochs": 2}, seeds=[0, 1],
                               grid={"optim.lr": [1.0e-4, 3.0e-5], "head.type": ["linear", "mlp"]}))
    names = ["optim.lr=0.0001__head.type=linear", "optim.lr=0.0001__head.type=mlp",
             "optim.lr=3.0e-05__head.type=linear", "optim.lr=3.0e-05__head.type=mlp"]
    assert [r.id for r in grid.runs] == [f"{n}/seed{s}" for n in names for s in (0, 1)]
    last = grid.runs[-1]
    assert (last.config.optim.lr, last.config.head.type, last.config.run.seed, last.config.run.epochs) == (
        3e-5, "mlp", 1, 2)
    assert Path(last.config.output) == last.folder == tmp_path / "exp" / names[-1] / "seed1"
    # ... the runs as `birdbridge train --set` reads them back; names are stable and say the overrides.
    assert "optim.lr=3.0e-05" in last.set_args() and "run.seed=1" in last.set_args()
    assert run_name({"prompts.mix": {"common": 1}}) == "prompts.mix=common-1"
    odd = {"data.dataset": "/data/a b"}
    assert run_name(odd) == run_name(dict(odd)) != run_name({"data.dataset": "/data/a_b"})
    # The shipped grids expand too (their configs name real keys).
    prompts = load_grid(CONFIGS / "ablation_prompts.yaml")
    assert sorted({r.name for r in prompts.runs}) == ["common", "mix", "scientific", "taxonomic", "taxonomic_common"]
    assert {r.config.prompts.mix.__len__() for r in prompts.runs} == {1, 4} and len(prompts.runs) == 15
    assert len(load_grid(CONFIGS / "seeds.yaml").runs) == 5
    keep = load_grid(CONFIGS / "ablation_keep_knn.yaml")
    losses = {(r.config.loss.keep, r.config.loss.keep_weight, r.config.data.holdout.fraction) for r in keep.runs}
    assert len(keep.runs) == 78 and len(losses) == 26 and ("none", 0.0, 0.2) in losses
    assert {(k, w) for k, w, _ in losses} == {("none", 0.0)} | {
        (k, w) for k in ("relational", "feature", "classify") for w in (0.1, 0.3, 1.0, 3.0)}


@pytest.mark.parametrize("runs, named", [
    ([{"name": "ok", "set": {"optim.lr": 1e-4}}, {"name": "bad", "set": {"optim.lrate": 1e-4}}], "optim.lrate"),
    ([{"name": "ok"}, {"name": "typo", "set": {"prompts.mix": {"commn": 1}}}], "commn"),
    ([{"name": "ok", "set": {"output": "elsewhere"}}], "output"),
])
def test_a_bad_grid_fails_before_any_run_starts(world, tmp_path, capsys, runs, named) -> None:
    (tmp_path / "base.yaml").write_text((world / "base.yaml").read_text())
    result = run(capsys, "experiment", grid_file(tmp_path, tmp_path / "exp", runs=runs))
    assert result.returncode == 1
    assert named in result.stderr and "grid.yaml" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "exp").exists()


def test_runs_are_trained_compared_and_skipped_when_finished(world, tmp_path, capsys, monkeypatch) -> None:
    runner = importlib.import_module("birdbridge.experiment.runner")
    trainings: list[str] = []
    real_train = runner.train

    def spy(cfg):
        trainings.append(Path(cfg.output).relative_to(tmp_path / "exp").as_posix())
        return real_train(cfg)

    monkeypatch.setattr(runner, "train", spy)
    (tmp_path / "base.yaml").write_text((world / "base.yaml").read_text())
    grid = grid_file(tmp_path, tmp_path / "exp", seeds=[0, 1],
                     runs=[{"name": "common", "set": {"prompts.mix": {"common": 1}}},
                           {"name": "broken", "set": {"data.dataset": str(tmp_path / "missing.csv")}}],
                     evaluate={"bootstrap": 20, "k": 5, "baselines": ["random"]})
    first = run(capsys, "experiment", grid)
    assert first.returncode == 1
    assert trainings == ["common/seed0", "common/seed1", "broken/seed0", "broken/seed1"]
    assert "broken/seed0" in first.stderr and "missing.csv" in first.stderr  # the failure, named, and why

    out = tmp_path / "exp"
    table = json.loads((out / "comparison.json").read_text())
    assert table["missing"] == ["broken/seed0", "broken/seed1"]
    (row, baseline), own = table["rows"], [json.loads((out / "common" / f"seed{s}" / "results.json").read_text())
                                           for s in (0, 1)]
    assert row["name"] == "common" and row["seeds"] == [0, 1] and "zero_shot_top1" in row["metrics"]
    for key, cell in row["metrics"].items():
        values = [r["methods"]["common/seed" + str(s)][key] for s, r in zip((0, 1), own, strict=True)]
        assert cell["values"] == values and cell["ci_kind"] == SEEDS_CI
        assert cell["mean"] == pytest.approx(np.mean(values)) and cell["sd"] == pytest.approx(np.std(values, ddof=1))
    assert "| common | 0, 1 | " in (out / "comparison.md").read_text()
    random = json.loads((out / "baselines" / "results.json").read_text())
    assert baseline["name"] == "random projection" and baseline["metrics"]["knn_acc"]["mean"] == pytest.approx(
        random["methods"]["random projection"]["knn_acc"])
    assert baseline["metrics"]["knn_acc"]["ci"] == pytest.approx(random["ci"]["random projection"]["knn_acc"])

    # A rerun trains only what has not finished (the broken runs, which fail again), and keeps the table.
    trainings.clear()
    second = run(capsys, "experiment", grid)
    assert second.returncode == 1 and trainings == ["broken/seed0", "broken/seed1"]
    assert json.loads((out / "comparison.json").read_text())["rows"] == table["rows"]
    listing = run(capsys, "experiment", grid, "--dry-run")
    assert "common/seed1  (finished)" in listing.stdout and "broken/seed0  (to run)" in listing.stdout

    # Other evaluation settings: the finished runs are evaluated again, not trained.
    changed = yaml.safe_load(grid.read_text())
    changed["evaluate"]["k"] = 3
    grid.write_text(yaml.safe_dump(changed))
    trainings.clear()
    third = run(capsys, "experiment", grid)
    assert third.returncode == 1 and trainings == ["broken/seed0", "broken/seed1"]
    assert json.loads((out / "common" / "seed0" / "results.json").read_text())["settings"]["k"] == 3

    # A finished run whose settings the grid has since changed is refused, before anything runs.
    trainings.clear()
    changed = yaml.safe_load(grid.read_text())
    changed["set"] = {"optim.lr": 3.0e-5}
    grid.write_text(yaml.safe_dump(changed))
    refused = run(capsys, "experiment", grid)
    assert refused.returncode == 1 and "common/seed0" in refused.stderr and "other settings" in refused.stderr
    assert trainings == []


def test_cells_over_seeds_and_of_one_seed() -> None:
    values = [31.0, 35.5, 33.0]
    cell = seed_cell(values)
    reference = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert cell.ci == pytest.approx(reference, abs=1e-3) and cell.sd == pytest.approx(np.std(values, ddof=1))
    one = seed_cell([40.0], (35.0, 45.0))
    assert (one.mean, one.sd, one.ci) == (40.0, None, (35.0, 45.0)) and one.text() == "40.00 [35.0, 45.0]"
    assert seed_cell([math.nan, 2.0, 4.0]).mean == 3.0


def test_seen_and_unseen_species_get_columns_of_their_own() -> None:
    from types import SimpleNamespace

    from birdbridge.evaluate.results import MethodResult
    from birdbridge.experiment.table import as_json, markdown, run_row

    figures = [(40.0, 10.0, 80.0), (44.0, 6.0, 70.0), (42.0, 8.0, 75.0)]  # seen MAP, unseen MAP, unseen kNN
    results = [(f"s{i}/results.json", SimpleNamespace(method=lambda _id, s=s, u=u, k=k: MethodResult(
        "distilled", "ours", {"a2i_map": s + 1},
        groups={"seen": {"a2i_map": s}, "unseen": {"a2i_map": u, "knn_acc": k}})))
        for i, (s, u, k) in enumerate(figures)]
    row = run_row("holdout", {}, [0, 1, 2], results)
    for column, values in (("a2i_map/seen", [40.0, 44.0, 42.0]), ("a2i_map/unseen", [10.0, 6.0, 8.0]),
                           ("knn_acc/unseen", [80.0, 70.0, 75.0])):
        assert row.cells[column].values == values and row.cells[column].mean == pytest.approx(np.mean(values))
    assert "knn_acc/seen" not in row.cells and row.cells["a2i_map"].mean == pytest.approx(43.0)
    assert as_json([row])["metrics"]["a2i_map/unseen"] == "A→I MAP unseen"
    assert "| A→I MAP seen | A→I MAP unseen | kNN acc unseen |" in markdown([row], "t")
