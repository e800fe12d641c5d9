"""``birdbridge evaluate``: students and baselines on the paper's metrics, as a table and results.json."""

from __future__ import annotations

from pathlib import Path

import typer

from birdbridge.cli.common import console, console_err


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate_cmd(
        dataset: str = typer.Option(..., "--dataset", "-d", help="SSW60, iNatSounds, dataset.yaml or manifest."),
        model: list[str] = typer.Option([], "--model", "-m", help="Trained student: PATH or NAME=PATH (repeatable)."),
        baselines: str = typer.Option("all", help="Comma-separated: random, mapping, chain, undistilled; all; none."),
        teacher: str | None = typer.Option(None, help="Image-text teacher (default: the one the students record)."),
        base_student: str | None = typer.Option(None, help="Undistilled student for baselines (default: recorded)."),
        split: str = typer.Option("test", help="Audio split used as queries."),
        knn_split: str = typer.Option("train", help="Audio split used as kNN references ('' for none)."),
        image_split: str | None = typer.Option(None, help="Only pictures of this split (default: all)."),
        k: int = typer.Option(20, help="kNN neighbours."),
        tau: float = typer.Option(0.07, help="kNN temperature: neighbours vote with exp(sim/tau)."),
        bootstrap: int = typer.Option(1000, help="Bootstrap resamples for 95% confidence intervals (0: none)."),
        output: Path = typer.Option(Path("results.json"), "--output", "-o", help="Where to write results.json."),
        device: str | None = typer.Option(None, help="cpu, cuda, cuda:1, mps (default: best available)."),
    ) -> None:
        """Evaluate trained students against the paper's baselines on the paper's metrics."""
        from birdbridge.evaluate.baselines import BASELINES
        from birdbridge.evaluate.report import results_table, write_results
        from birdbridge.evaluate.runner import EvalSettings, evaluate

        models = dict(_named(m) for m in model)
        chosen = BASELINES if baselines == "all" else () if baselines == "none" else tuple(
            b.strip() for b in baselines.split(",") if b.strip())
        settings = EvalSettings(split=split, knn_split=knn_split or None, image_split=image_split, k=k, tau=tau,
                                bootstrap=bootstrap)
        results = evaluate(models, dataset, teacher=teacher, base_student=base_student, baselines=chosen,
                           settings=settings, device=device)
        console.print(results_table(results, f"{results['dataset']['name']}: {split} split"))
        if results["failures"]:
            console_err.print(f"[yellow]skipped {len(results['failures'])} unreadable inputs (listed in "
                              f"{output})[/]")
        write_results(output, results)
        console_err.print(f"wrote {output}")


def _named(spec: str) -> tuple[str, str]:
    name, sep, path = spec.partition("=")
    if sep and name and not Path(spec).exists():
        return name, path
    return Path(spec).name if Path(spec).exists() else spec, spec
