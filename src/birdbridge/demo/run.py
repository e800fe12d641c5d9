"""``birdbridge demo``: the whole method, offline, on a synthetic world, in minutes on a laptop CPU.

1. generate a world (taxonomy, calls, pictures, splits);
2. pretrain the stand-in teacher (CLIP on pictures + names) and student (CLAP on calls + names), and
   save them in the real hub layouts;
3. distil the teacher's text space into the student with ``birdbridge train``;
4. evaluate it against the paper's baselines with ``birdbridge evaluate``;
5. index the world's pictures into a gallery for ``birdbridge search`` and ``birdbridge serve``;
6. write ``results.json``, a Markdown report with figures, and the trained student.

With soundscapes (``DemoSettings.soundscapes`` > 0, the default) the world also holds minutes-long recordings of
changing backgrounds with calls now and then, and background-only clips; a second student is distilled with
those clips as background audio (``data.background``), both students are calibrated at the end of training on
the soundscapes' ``valid`` split, and both are evaluated with the baselines on the ``test`` soundscapes in
windows as long as the students' input (2 s; the soundscapes are planned on 5 s windows), at the default
threshold and a low one (``demo.soundscape_eval``). A figure shows one test soundscape's spectrogram with the
annotated species above and each student's detections below.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from birdbridge.demo.checks import as_dict, checks_and_reports
from birdbridge.demo.pretrain import (
    DEMO_FRONTEND,
    PretrainSettings,
    check_vocabulary,
    pretrain_student,
    pretrain_teacher,
)
from birdbridge.demo.report import bar_chart, embedding_plot, write_report
from birdbridge.demo.soundscape_eval import dataset_path, evaluate_on_soundscapes, soundscape_figure
from birdbridge.demo.soundscapes import WINDOW_S
from birdbridge.demo.world import World, WorldConfig, generate_world
from birdbridge.evaluate.results import DISTILLED, EvalResult
from birdbridge.utils.atomic import write_json

OURS = "text distillation (birdbridge)"  # the distilled student's display name
WITH_BACKGROUND = "distilled_background"  # the method id of the student trained with background audio
OURS_BACKGROUND = "text distillation + background audio"
VIDEO_FPS = 4.0  # frames per second sampled from the world's videos (8 fps) for image-pivot training
PIVOTS = {  # method id -> (display name, training settings) of the image-pivot students (video frames as targets)
    "pivot_random": ("image pivot, random frame (VIP-ANT)", ["objective=image", "video.frame_selection=random"]),
    "pivot_nearest": ("image pivot, nearest frame", ["objective=image", "video.frame_selection=nearest"]),
    "pivot_multiframe": ("image pivot, multiframe", ["objective=image", "video.frame_selection=multiframe"]),
    "text_and_pivot": ("text + image pivot (nearest)", ["objective=both", "video.frame_selection=nearest"]),
}


@dataclass(frozen=True)
class DemoSettings:
    species: int = 24
    recordings_per_species: int = 24
    images_per_species: int = 24
    seed: int = 0
    teacher_epochs: tuple[int, int] = (30, 20)  # (prototype warm-up, names) epochs
    student_epochs: tuple[int, int] = (50, 30)
    distill_epochs: int = 30
    batch_size: int = 32
    pivots: bool = False  # also train image-pivot students on the world's videos and compare
    videos_per_species: int = 10
    pivot_epochs: int = 40
    nearest_warmup_epochs: int = 5
    frame_share_of: tuple[str, ...] | None = None  # method ids whose nearest frames are measured (None: every student)
    soundscapes: int = 10  # 0: no soundscapes, no background clips, no student trained with background audio
    soundscape_s: float = 60.0
    background_per_class: int = 16  # background-only clips per class, to train the second student with
    holdout: float = 0.0  # a share of the species left out of every distillation (data.holdout), drawn with seed
    student_vocabulary: str | float = "all"  # names the stand-in student's text tower learns (demo.pretrain)

    def __post_init__(self) -> None:
        check_vocabulary(self.student_vocabulary, "student_vocabulary")  # fail before any work

    def world_config(self) -> WorldConfig:
        orders = max(1, round(self.species / 8))
        return WorldConfig(n_orders=orders, recordings_per_species=self.recordings_per_species,
                           images_per_species=self.images_per_species, seed=self.seed,
                           videos_per_species=self.videos_per_species if self.pivots else 0,
                           soundscapes=self.soundscapes, soundscape_s=self.soundscape_s,
                           background_per_class=self.background_per_class if self.soundscapes else 0)


def run_demo(out: str | Path, settings: DemoSettings = DemoSettings(), progress: bool | None = None,
             log=print) -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def step(name: str, fn):
        started = time.perf_counter()
        log(f"[demo] {name} ...")
        result = fn()
        timings[name] = time.perf_counter() - started
        log(f"[demo] {name}: {timings[name]:.1f} s")
        return result

    world: World = step("generate the world", lambda: generate_world(out / "world", settings.world_config()))
    log(f"[demo] {len(world.taxonomy)} species, {len(world.audio)} recordings, {len(world.images)} pictures"
        + (f", {len(world.videos)} videos" if world.videos else ""))
    models = out / "models"
    teacher, _ = step("pretrain the stand-in teacher", lambda: pretrain_teacher(
        world, models / "teacher", PretrainSettings(*settings.teacher_epochs, seed=settings.seed), progress))
    student, _ = step("pretrain the stand-in student", lambda: pretrain_student(
        world, models / "student", PretrainSettings(*settings.student_epochs, seed=settings.seed,
                                                   vocabulary=settings.student_vocabulary), progress))

    from birdbridge.train.config import load_config
    from birdbridge.train.loop import train

    def distil(folder: str, epochs: int, extra: list[str]):
        cfg = load_config(None, [
            f"data.dataset={out / 'world' / 'dataset.yaml'}", f"student={student}", f"teacher={teacher}",
            f"output={out / folder}", f"run.batch_size={settings.batch_size}", f"run.epochs={epochs}",
            f"run.seed={settings.seed}", "data.num_workers=0", "optim.lr=2e-3", "optim.head_lr=5e-3",
            "optim.warmup_steps=20", f"run.progress={'null' if progress is None else progress}",
            "run.checkpoint_every=1000000", "run.eval_every=1000000", f"video.fps={VIDEO_FPS}",
            f"video.nearest_warmup_epochs={settings.nearest_warmup_epochs}", *extra,
            *([f"data.holdout.fraction={settings.holdout}", f"data.holdout.seed={settings.seed}"]
              if settings.holdout else []),
        ])
        return train(cfg, fresh=True).model

    # calibrated at the end of training: on the valid soundscapes when there are some, else on the test clips
    calibrate = [f"calibration.dataset={dataset_path(out)}", "calibration.split=valid"] if world.soundscapes else []
    names = {DISTILLED: OURS}
    trained = {DISTILLED: step("distil (birdbridge train)", lambda: distil("distill", settings.distill_epochs,
                                                                            ["data.val_split=test", *calibrate]))}
    if world.soundscapes:
        names[WITH_BACKGROUND] = OURS_BACKGROUND
        trained[WITH_BACKGROUND] = step("distil with background audio", lambda: distil(
            "distill_background", settings.distill_epochs,
            ["data.val_split=test", f"data.background={out / 'world' / 'background.csv'}", *calibrate]))
    if settings.pivots:
        for i, (method, (name, extra)) in enumerate(PIVOTS.items()):
            names[method] = name
            trained[method] = step(f"train: {name}", lambda i=i, extra=extra: distil(
                f"pivots/{i}", settings.pivot_epochs, extra))

    from birdbridge.evaluate.runner import EvalSettings, evaluate

    evaluation = step("evaluate against the baselines", lambda: evaluate(
        {method: str(path) for method, path in trained.items()}, out / "world" / "dataset.yaml", names=names,
        settings=EvalSettings(image_split="test"), progress=progress))
    results = evaluation.to_dict()
    if settings.pivots:
        from birdbridge.demo.frame_choice import bird_frame_share

        measured = settings.frame_share_of or tuple(trained)  # a check needs the nearest-frame student's
        results["bird_frame_share"] = step("measure how often the nearest frame shows the bird", lambda: {
            names[method]: bird_frame_share(world, path, teacher, VIDEO_FPS) for method, path in trained.items()
            if method in measured or method == "pivot_nearest"})
    window_s = min(WINDOW_S, DEMO_FRONTEND.window_s)  # a window may not be longer than the students' input
    students = {method: trained[method] for method in (DISTILLED, WITH_BACKGROUND) if method in trained}
    if world.soundscapes:
        results["soundscapes"] = step("evaluate on the soundscapes", lambda: evaluate_on_soundscapes(
            out, students, names, window_s, progress))
    step("index the pictures (birdbridge index)", lambda: index_pictures(out, teacher, progress))
    checks, reports = checks_and_reports(results)
    results["checks"], results["reports"] = as_dict(checks), as_dict(reports)
    results["demo_settings"] = asdict(settings)
    results["timings"] = timings
    ranked = sorted((m for m in evaluation.methods.values() if "a2i_map" in m.metrics),
                    key=lambda m: -m.metrics["a2i_map"])
    results["ordering_a2i_map"] = [m.name for m in ranked]
    figures = _figures(out, evaluation, trained[DISTILLED], world)
    if world.soundscapes:
        figures["soundscape: true species above, detected below"] = step(
            "draw a soundscape's detections", lambda: soundscape_figure(
                out, world, {names[m]: path for m, path in students.items()}, window_s))
    results["figures"] = figures
    write_json(out / "results.json", results)
    write_report(out, results, timings, figures)
    return results


def index_pictures(out: Path, teacher: Path, progress: bool | None) -> None:
    """Index the world's pictures afresh: a gallery left by an earlier run was built by an earlier teacher."""
    from birdbridge.gallery.build import build_gallery

    shutil.rmtree(out / "gallery", ignore_errors=True)
    build_gallery([out / "world" / "images.csv"], out / "gallery", str(teacher),
                  species=out / "world" / "taxonomy.csv", progress=progress)


def _figures(out: Path, evaluation: EvalResult, model: Path, world: World) -> dict[str, str]:
    from birdbridge.embed import embed_audio, embed_images

    figures = {"audio→image MAP by method": "figures/a2i_map.png"}
    bar_chart(out / figures["audio→image MAP by method"], evaluation)
    audio_items, image_items = world.audio_items("test"), world.image_items("test")
    audio = embed_audio([world.path(it) for it in audio_items], model, progress=False)
    images = embed_images([world.path(it) for it in image_items], out / "models" / "teacher", progress=False)
    label = {k: i for i, k in enumerate(world.taxonomy.keys)}
    rel = "figures/embeddings.png"
    embedding_plot(out / rel, audio, np.array([label[it.species] for it in audio_items]), images,
                   np.array([label[it.species] for it in image_items]),
                   "distilled audio (dots) and pictures (squares) in the teacher's space, PCA")
    figures["embeddings"] = rel
    return figures


def summary_lines(results: dict[str, Any]) -> list[str]:
    """The checks (pass/FAIL) and the reports (yes/no) of a demo's results."""
    return ([f"{'pass' if ok else 'FAIL'}: {text}" for text, ok in results["checks"].items()]
            + [f"report: {'yes' if ok else 'no'}: {text}" for text, ok in results.get("reports", {}).items()])


__all__ = ["DemoSettings", "run_demo", "summary_lines"]
