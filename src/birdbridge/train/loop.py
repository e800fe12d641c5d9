"""``birdbridge train``: distil the teacher's text space into the student's audio encoder.

One process by default; data-parallel under ``torchrun --nproc_per_node N`` (torch DDP). The loss sees
the global batch (embeddings are gathered across processes), so N processes with a global batch B
follow the same trajectory as one process with batch B.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from birdbridge.datasets.holdout import drop_species
from birdbridge.errors import BirdbridgeError, InputError
from birdbridge.models.calibration import write_calibration
from birdbridge.models.distilled import save_distilled_student
from birdbridge.models.hub import stable_ref
from birdbridge.models.loader import clear_model_cache, load_teacher
from birdbridge.species.background import BackgroundVocabulary, load_background_vocabulary
from birdbridge.train import distributed as D
from birdbridge.train.checkpoint import list_checkpoints, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from birdbridge.train.config import TrainConfig, dump_config, load_config
from birdbridge.train.data import Clip, CropDataset, EpochBatches, collate
from birdbridge.train.keep import keep_parts
from birdbridge.train.logs import Loggers
from birdbridge.train.loss import Temperature
from birdbridge.train.objectives import FrameTargets, Objective, StepInput
from birdbridge.train.student_setup import DistillModel, freeze_batchnorm, fresh_student, set_trainable
from birdbridge.train.targets import TextTargets
from birdbridge.utils.atomic import write_json, write_text
from birdbridge.utils.device import best_device
from birdbridge.utils.progress import progress_bar

# Settings that may change between an interrupted run and its resume without changing the result.
RESUME_FREE = {"run.progress", "run.log_every", "run.eval_every", "run.checkpoint_every", "run.keep_checkpoints",
               "data.num_workers", "run.device", "data.validate_files", "data.val_split", "output"}
RESUME_FREE_SECTIONS = ("calibration.",)  # applied after training


@dataclass
class Prepared:
    """What training needs from the data and the teacher (made on rank 0 first)."""

    clips: list[Clip]  # bird clips, then background clips
    n_birds: int
    targets: TextTargets
    objective: Objective
    teacher: dict
    bad_files: list[str]
    vocabulary: BackgroundVocabulary | None = None
    held_out: list[str] = field(default_factory=list)  # species keys left out of training (data.holdout)

    @property
    def n_background(self) -> int:
        return len(self.clips) - self.n_birds


@dataclass
class TrainResult:
    output: Path
    model: Path
    steps: int
    loss: float
    seconds: float
    resumed_from: int | None


def train(cfg: TrainConfig | str | os.PathLike[str] | None = None, overrides: Sequence[str] = (), *,
          fresh: bool = False) -> TrainResult:
    """Run (or resume) a distillation, as ``birdbridge train``; returns where the trained student was written.

    ``cfg``: a :class:`~birdbridge.train.config.TrainConfig`, or a YAML config file (None: the defaults) with
    ``overrides`` (``"optim.lr=3e-5"``, as ``--set``) applied. ``fresh``: ignore the output's checkpoints.
    """
    if not isinstance(cfg, TrainConfig):
        cfg = load_config(cfg, tuple(overrides))
    elif overrides:
        raise BirdbridgeError("overrides go with a config file; change a TrainConfig with train.config.replace")
    device = best_device(None if cfg.run.device == "auto" else cfg.run.device)
    info = D.init_from_env(device.type)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    try:
        return _train(cfg, device, info, fresh)
    finally:
        D.shutdown(info)


def _train(cfg: TrainConfig, device: torch.device, info: D.DistInfo, fresh: bool) -> TrainResult:
    from birdbridge.datasets import load_dataset

    started = time.perf_counter()
    out = Path(cfg.output)
    ckpt_dir = out / "checkpoints"
    torch.manual_seed(cfg.run.seed)
    np.random.seed(cfg.run.seed)

    dataset = load_dataset(cfg.data.dataset)
    taxonomy = dataset.taxonomy

    resume_state = None
    checkpoints = list_checkpoints(ckpt_dir)
    if checkpoints and not fresh:
        resume_state = load_checkpoint(checkpoints[-1])
        _check_resumable(resume_state["config"], cfg, checkpoints[-1])
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if fresh:
            for old in checkpoints:
                old.unlink()
        write_text(out / "config.yaml", dump_config(cfg))

    # Teacher targets are computed once (rank 0 first, so the others read its caches), never per step.
    prepared = None
    for turn in (0, 1):
        if (turn == 0) == info.is_main:
            prepared = _prepare(cfg, dataset, device, progress=cfg.run.progress if info.is_main else False)
        D.barrier(info)
    clips, targets, objective, teacher_meta, bad_files = (prepared.clips, prepared.targets, prepared.objective,
                                                          prepared.teacher, prepared.bad_files)
    per_batch_background = _background_per_batch(cfg, prepared.n_background)
    student = fresh_student(cfg.student, cfg.head, targets.dim)
    base_fingerprint = student.fingerprint
    keep, original = keep_parts(cfg.loss.keep, cfg.loss.keep_weight, cfg.loss.keep_temperature, student,
                                targets.n_classes)
    objective.keep_geometry(keep, original.to(device) if original is not None else None)
    n_trainable, n_total = set_trainable(student, cfg.model.trainable)
    model = DistillModel(student, Temperature(cfg.loss.temperature, cfg.loss.learnable_temperature),
                         keep).to(device)
    optimizer = _optimizer(model, cfg)
    bird_batch = cfg.run.batch_size - per_batch_background
    per_epoch = prepared.n_birds // bird_batch
    if per_epoch == 0:
        raise BirdbridgeError(f"batch size {cfg.run.batch_size} ({bird_batch} bird clips) is larger than the "
                              f"{prepared.n_birds} training clips")
    total_steps = cfg.run.max_steps or cfg.run.epochs * per_epoch
    epochs = math.ceil(total_steps / per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(cfg, total_steps))
    amp_dtype = _amp_dtype(cfg.optim.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    step, start_epoch, start_batch, loss_value = 0, 0, 0, float("nan")
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        scaler.load_state_dict(resume_state["scaler"])
        set_rng_state(resume_state["rng"][info.rank] if isinstance(resume_state["rng"], list) else resume_state["rng"])
        step = resume_state["step"]
        loss_value = float(resume_state.get("loss", float("nan")))
        start_epoch, start_batch = divmod(step, per_epoch)
    ddp = torch.nn.parallel.DistributedDataParallel(model) if info.enabled else model

    sampler = EpochBatches(prepared.n_birds, cfg.run.batch_size, seed=cfg.run.seed, epochs=epochs, rank=info.rank,
                           world=info.world, start_epoch=start_epoch, start_batch=start_batch,
                           background=prepared.n_background, background_per_batch=per_batch_background)
    data = CropDataset(clips, student.sample_rate, student.window_samples, cfg.run.seed, n_birds=prepared.n_birds)
    loader = DataLoader(data, batch_sampler=sampler, num_workers=cfg.data.num_workers, collate_fn=collate,
                        generator=torch.Generator().manual_seed(cfg.run.seed),
                        persistent_workers=False, pin_memory=device.type == "cuda")
    logs = Loggers(out, resume_state["step"] if resume_state else None) if info.is_main else None
    val = dataset.audio_split(cfg.data.val_split) if cfg.data.val_split else []
    if info.is_main and resume_state is None:
        print(f"training {n_trainable:,} of {n_total:,} parameters for {total_steps} steps "
              f"({epochs} epochs of {per_epoch}) on {device} x{info.world}")
        if per_batch_background:
            print(f"{per_batch_background} of every {cfg.run.batch_size} crops are background, from "
                  f"{prepared.n_background} clips of {len(prepared.vocabulary)} classes")

    ddp.train()
    freeze_batchnorm(ddp) if cfg.model.freeze_batchnorm else None
    last = time.perf_counter()
    show = cfg.run.progress if info.is_main else False
    with progress_bar("Distilling", total_steps, show, completed=step) as bar:
        for batch in loader:
            waited = time.perf_counter() - last
            step += 1
            bad_files.extend(str(clips[i].path) for i in batch["bad"])
            loss = objective(
                ddp, StepInput(batch["wave"], batch["species"], batch["index"], batch["offset_s"], step,
                               (step - 1) // per_epoch),
                student.sample_rate, info, device,
                torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None),
            )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss * info.world).backward()  # DDP averages; the gathered loss needs the sum
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.requires_grad], cfg.optim.grad_clip
            )
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss_value = float(loss.detach())
            elapsed = time.perf_counter() - last
            last = time.perf_counter()
            if info.is_main:
                bar.advance()
                bar.describe(f"Distilling loss {loss_value:.3f}")
                if step % cfg.run.log_every == 0 or step == total_steps:
                    logs.step({
                        "step": step, "epoch": (step - 1) // per_epoch, "loss": loss_value,
                        "lr": scheduler.get_last_lr()[0], "head_lr": scheduler.get_last_lr()[-1],
                        "temperature": model.temperature.temperature, "grad_norm": float(grad_norm),
                        **({"keep_loss": objective.last_keep} if keep is not None else {}),
                        "data_wait_s": waited, "step_s": elapsed,
                        "samples_per_s": cfg.run.batch_size / max(elapsed, 1e-9),
                    })
            if step % cfg.run.checkpoint_every == 0 or step == total_steps:
                _checkpoint(ckpt_dir, step, loss_value, model, optimizer, scheduler, scaler, cfg, info)
            if val and info.is_main and (step % cfg.run.eval_every == 0 or step == total_steps):
                logs.eval({"step": step, **_quick_eval(student, val, taxonomy, targets)})
                ddp.train()
                freeze_batchnorm(ddp) if cfg.model.freeze_batchnorm else None
            if step >= total_steps:
                break
    D.barrier(info)
    model_dir = out / "model"
    if info.is_main:
        save_distilled_student(
            student.cpu(), model_dir, teacher=teacher_meta,
            extra={
                "objective": cfg.objective,
                "logit_scale": float(model.temperature().detach()),  # 1/temperature: calibrates softmax scores
                "base_student": {"ref": stable_ref(cfg.student), "fingerprint": base_fingerprint},
                "prompts": {"mix": cfg.prompts.mix, "templates": cfg.prompts.templates},
                "train": {"steps": step, "config": cfg.as_dict()},
                **_background_meta(prepared, per_batch_background),
                **({"holdout": {"species": prepared.held_out, "rule": asdict(cfg.data.holdout)}}
                   if prepared.held_out else {}),
            },
        )
        taxonomy.to_csv(model_dir / "species.csv")
        _calibrate(cfg, student.to(device), model_dir, teacher_meta, device, prepared.vocabulary)
        if bad_files:
            write_text(out / "bad_files.txt", "\n".join(sorted(set(bad_files))) + "\n")
            print(f"skipped {len(set(bad_files))} unreadable training files (listed in {out / 'bad_files.txt'})")
        write_json(out / "summary.json", {"steps": step, "loss": loss_value, "model": str(model_dir),
                                          "seconds": time.perf_counter() - started})
        logs.close()
    return TrainResult(out, model_dir, step, loss_value, time.perf_counter() - started,
                       resume_state["step"] if resume_state else None)


def _prepare(cfg: TrainConfig, dataset, device: torch.device, progress: bool | None) -> Prepared:
    """Training clips, cached teacher targets and the objective (run on rank 0 first)."""
    taxonomy = dataset.taxonomy
    vocabulary = None
    if cfg.data.background or cfg.data.background_gaps:
        vocabulary = load_background_vocabulary(cfg.data.background_vocabulary)
    teacher = load_teacher(cfg.teacher, device)
    teacher_meta = {"ref": stable_ref(cfg.teacher), "name": teacher.name, "fingerprint": teacher.fingerprint,
                    "embed_dim": int(teacher.embed_dim)}
    text = TextTargets.build(teacher, taxonomy, cfg.prompts.mix, cfg.prompts.templates, cfg.run.seed,
                             progress=progress, background=vocabulary)
    frames = None
    n_birds = 0
    held_out = cfg.data.holdout.resolve(taxonomy)
    if held_out:
        print(f"holding out {len(held_out)} of {len(taxonomy)} species from training (data.holdout)")
    if cfg.objective == "text":
        items = drop_species(dataset.audio_split(cfg.data.train_split), held_out)
        if not items:
            raise BirdbridgeError(f"{cfg.data.dataset}: no audio in split {cfg.data.train_split!r}"
                                  + (" of the species not held out" if held_out else ""))
        clips = [Clip(Path(it.path), taxonomy.index(it.species), it.duration_s) for it in items]
        clips, bad_files = _validated(clips) if cfg.data.validate_files else (clips, [])
        n_birds = len(clips)
        if vocabulary is not None:
            background, bad = _background_clips(cfg, vocabulary, items, len(taxonomy))
            background, unreadable = _validated(background, "background") if cfg.data.validate_files else (
                background, [])
            clips, bad_files = clips + background, bad_files + bad + unreadable
    else:
        clips, frames, bad_files = _video_clips(cfg, dataset, teacher, progress, held_out)
        n_birds = len(clips)
    del teacher
    clear_model_cache()
    objective = Objective(
        cfg.objective, text=text, frames=frames, selection=cfg.video.frame_selection,
        nearest_warmup_epochs=cfg.video.nearest_warmup_epochs, subwindows=cfg.video.subwindows,
        text_weight=cfg.loss.text_weight, image_weight=cfg.loss.image_weight,
        negatives_all=cfg.loss.negatives == "all", symmetric=cfg.loss.symmetric, seed=cfg.run.seed,
    )
    return Prepared(clips, n_birds, text, objective, teacher_meta, bad_files, vocabulary, held_out)


def _background_clips(cfg: TrainConfig, vocabulary: BackgroundVocabulary, items, n_species: int
                      ) -> tuple[list[Clip], list[str]]:
    """Background clips of the training split (``data.background``) and the stretches between the training
    recordings' calls (``data.background_gaps``), as clips of the classes after the species."""
    from birdbridge.datasets.background import call_gap_clips, for_split, read_background

    found, bad = [], []
    if cfg.data.background:
        listed, failures = read_background(cfg.data.background, vocabulary)
        found = for_split(listed, cfg.data.train_split)
        bad = [f"{f.source}: {f.message}" for f in failures]
        if not found:
            raise BirdbridgeError(f"data.background: {cfg.data.background} lists no recordings of split "
                                  f"{cfg.data.train_split!r} (nor any without a split)")
    if cfg.data.background_gaps:
        try:
            label = vocabulary.labels[vocabulary.index(cfg.data.background_gap_label)]
        except KeyError as exc:
            raise InputError("data.background_gap_label", str(exc.args[0])) from None
        gaps, timed = call_gap_clips(items, label, min_s=cfg.data.background_min_gap_s)
        if not timed:
            raise BirdbridgeError(
                f"data.background_gaps: no recording of split {cfg.data.train_split!r} has call times (manifest "
                "columns call_onsets and call_offsets); set data.background_gaps=false or add the columns"
            )
        print(f"{len(gaps)} stretches between the calls of {timed} training recordings train as {label!r}")
        found += gaps
    clips = [Clip(c.path, n_species + vocabulary.index(c.label), c.duration_s, c.start_s, c.end_s) for c in found]
    return clips, bad


def _background_per_batch(cfg: TrainConfig, available: int) -> int:
    """Background crops per global batch: ``data.background_share`` of it, at least one, and never all."""
    if not available or cfg.data.background_share <= 0:
        return 0
    if cfg.run.batch_size < 2:
        raise BirdbridgeError("training with background audio needs run.batch_size of at least 2")
    return min(max(1, round(cfg.data.background_share * cfg.run.batch_size)), cfg.run.batch_size - 1)


def _background_meta(prepared: Prepared, per_batch: int) -> dict:
    if prepared.vocabulary is None:
        return {}
    return {"background": {"vocabulary": prepared.vocabulary.as_dict(), "clips": prepared.n_background,
                           "per_batch": per_batch, "first_class": prepared.targets.n_species}}


def _calibrate(cfg: TrainConfig, student, model_dir: Path, teacher_meta: dict, device: torch.device,
               vocabulary: BackgroundVocabulary | None) -> None:
    """Fit and store the trained student's calibration (``calibration.*``), or say how to do it later."""
    from birdbridge.evaluate.calibrate import calibrate_student

    dataset = cfg.calibration.dataset or cfg.data.dataset
    split = cfg.calibration.split or cfg.data.val_split
    later = (f"calibrate it with `birdbridge calibrate --model {model_dir} --dataset DATASET --split SPLIT` "
             "(a labelled split the model did not train on)")
    if not cfg.calibration.enabled:
        print(f"the model is uncalibrated (calibration.enabled is false); {later}")
        return
    if not split:
        print(f"the model is uncalibrated: there is no validation split (data.val_split or calibration.split); "
              f"{later}")
        return
    try:
        teacher = load_teacher(cfg.teacher, device)
        report = calibrate_student(
            student, teacher, dataset, split=split, forms=cfg.calibration.forms,
            templates=cfg.calibration.templates, background=cfg.data.background, background_vocabulary=vocabulary,
            unsplit_background=False, teacher_fingerprint=teacher_meta["fingerprint"], progress=cfg.run.progress,
        )
    except BirdbridgeError as exc:
        print(f"the model is uncalibrated: {exc}\n{later}")
        return
    finally:
        clear_model_cache()
    path = write_calibration(model_dir, report.calibration)
    print("\n".join(report.lines()))
    print(f"calibration written to {path}")


def _video_clips(cfg: TrainConfig, dataset, teacher, progress, held_out: list[str]):
    """One clip per video: its sound track (decoded once to a cached WAV) and its frames' embeddings."""
    from birdbridge.audio import audio_info
    from birdbridge.models.clap_frontend import FrontendConfig
    from birdbridge.models.hub import resolve
    from birdbridge.video import VideoError, video_audio_cache, video_batch_embeddings

    items = drop_species(dataset.videos_split(cfg.data.train_split), held_out)
    unreliable = [it for it in items if it.reliable_audio is False]
    if unreliable and cfg.video.reliable_audio_only:
        print(f"left out {len(unreliable)} videos marked reliable_audio = false "
              "(set video.reliable_audio_only=false to keep them)")
        items = [it for it in items if it.reliable_audio is not False]
    elif unreliable:
        print(f"kept {len(unreliable)} videos marked reliable_audio = false, as SSW60's authors do for their best "
              "results (set video.reliable_audio_only=true to leave them out)")
    if not items:
        raise BirdbridgeError(f"{cfg.data.dataset}: no videos in split {cfg.data.train_split!r}; the image "
                              "objective trains on videos with sound")
    rate = FrontendConfig.from_folder(resolve(cfg.student).folder).sample_rate
    embedded, failures = video_batch_embeddings(items, teacher, cfg.video.fps, progress=progress)
    bad = [f"{f.source}: {f.message}" for f in failures]
    _report_variable_frame_rates([frames.warning for frames in embedded.values() if frames.warning])
    clips, times, vectors = [], [], []
    for item in items:
        frames = embedded.get(item.id)
        if frames is None or not len(frames):
            continue
        try:
            wav = video_audio_cache(item.path, rate)
        except VideoError as exc:
            bad.append(str(exc))
            continue
        clips.append(Clip(wav, dataset.taxonomy.index(item.species), audio_info(wav).duration_s))
        times.append(frames.times)
        vectors.append(frames.vectors)
    if not clips:
        raise BirdbridgeError("no training video could be used:\n  " + "\n  ".join(bad[:10]))
    return clips, FrameTargets(times, vectors, cfg.run.seed), bad


def _report_variable_frame_rates(notes: list[str]) -> None:
    """Say which training videos have a variable frame rate (their frames are sampled by timestamp)."""
    for note in notes[:5]:
        print(note)
    if len(notes) > 5:
        print(f"... and {len(notes) - 5} more videos with a variable frame rate")


def _validated(clips: list[Clip], what: str = "training") -> tuple[list[Clip], list[str]]:
    """Drop clips whose header cannot be read (each is reported), filling in missing durations."""
    from birdbridge.audio import AudioError, audio_info

    good, bad = [], []
    for clip in clips:
        try:
            duration = clip.duration_s or audio_info(clip.path).duration_s
            good.append(replace(clip, duration_s=duration))
        except AudioError as exc:
            bad.append(f"{exc}")
    if not good:
        raise BirdbridgeError(f"no {what} file could be read:\n  " + "\n  ".join(bad[:10]))
    return good, bad


def _optimizer(model: DistillModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    encoder_decay, encoder_plain, fast = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith(("student.head.", "temperature.", "keep.")):
            fast.append(p)
        elif p.ndim >= 2:
            encoder_decay.append(p)
        else:
            encoder_plain.append(p)
    groups = [
        {"params": encoder_decay, "lr": cfg.optim.lr, "weight_decay": cfg.optim.weight_decay},
        {"params": encoder_plain, "lr": cfg.optim.lr, "weight_decay": 0.0},
        {"params": fast, "lr": cfg.optim.head_lr, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], betas=tuple(cfg.optim.betas))


def _schedule(cfg: TrainConfig, total: int):
    warmup = min(cfg.optim.warmup_steps, max(total - 1, 0))
    floor = cfg.optim.min_lr_ratio

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _checkpoint(folder, step, loss, model, optimizer, scheduler, scaler, cfg, info) -> None:
    rngs = [None] * info.world
    if info.enabled:
        torch.distributed.all_gather_object(rngs, rng_state())
    else:
        rngs = rng_state()
    if info.is_main:
        save_checkpoint(folder, step, {
            "step": step, "loss": loss, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": rngs,
            "config": cfg.as_dict(), "world": info.world,
        }, keep=cfg.run.keep_checkpoints)
    D.barrier(info)


def _check_resumable(saved: dict, cfg: TrainConfig, path: Path) -> None:
    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) and k != "mix" else {f"{prefix}{k}": v})
        return out

    a, b = flat(saved), flat(cfg.as_dict())
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in RESUME_FREE
                     and not k.startswith(RESUME_FREE_SECTIONS))
    if changed:
        raise BirdbridgeError(
            f"{path}: this output folder holds a checkpoint of a different run (changed: {', '.join(changed)}). "
            "Resume with the same settings, choose another output, or pass --fresh to start over."
        )


def _quick_eval(student, val_items, taxonomy, targets: TextTargets) -> dict[str, float]:
    """Zero-shot species accuracy of the validation recordings through the cached class embeddings."""
    from birdbridge.embed.audio import embed_audio_windows

    student.eval()
    table = embed_audio_windows([it.path for it in val_items], student, progress=False).pooled()
    species_of = {str(it.path): taxonomy.index(it.species) for it in val_items}
    labels = np.array([species_of[n] for n in table.names])
    scores = table.vectors @ targets.class_means.numpy().T
    top = np.argsort(-scores, axis=1)[:, :5]
    return {
        "val_zero_shot_top1": float((top[:, 0] == labels).mean() * 100),
        "val_zero_shot_top5": float((top == labels[:, None]).any(axis=1).mean() * 100),
        "val_files": len(labels),
    }
