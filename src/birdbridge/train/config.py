"""Training configuration: a YAML file, dotted ``--set key=value`` overrides, validated dataclasses."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from birdbridge.datasets.holdout import Holdout
from birdbridge.errors import InputError
from birdbridge.species.text_forms import parse_text_form

KEEP_KINDS = ("none", "relational", "feature", "classify")  # loss.keep (train.keep)


@dataclass
class DataConfig:
    dataset: str = ""  # SSW60 root, iNatSounds JSON/folder, dataset.yaml or manifest
    train_split: str = "train"
    val_split: str | None = None
    num_workers: int = 2
    validate_files: bool = True  # read every training file's header once before training
    background: str | None = None  # non-bird recordings: a folder of class folders or a CSV (path, label[, split])
    background_share: float = 0.1  # of each global batch, when there is background audio
    background_vocabulary: str | None = None  # a vocabulary file (label: prompt; prompt); default: the built-in one
    background_gaps: bool = False  # also train on the stretches between known calls of the training recordings
    background_gap_label: str = "silence"  # the background class of those stretches
    background_min_gap_s: float = 0.5  # shortest stretch kept (0.1 s away from every call)
    holdout: Holdout = field(default_factory=Holdout)  # species left out of training (species, genera, fraction)


@dataclass
class PromptConfig:
    mix: dict[str, float] = field(
        default_factory=lambda: {"common": 1.0, "scientific": 1.0, "taxonomic": 1.0, "taxonomic_common": 1.0}
    )
    templates: str | list[str] = "single"  # "a photo of {}."; "openai" (80) costs 80x the cached targets


@dataclass
class HeadConfig:
    type: str = "linear"  # linear | mlp
    hidden_dim: int = 1024
    dropout: float = 0.0


@dataclass
class ModelConfig:
    trainable: str = "all"  # all | head | last:N (the last N Swin blocks, plus the projections and head)
    freeze_batchnorm: bool = True  # keep the front BatchNorm's running statistics (fine-tuning norm)


@dataclass
class LossConfig:
    temperature: float = 0.07
    learnable_temperature: bool = True
    negatives: str = "batch"  # batch: the batch's species; all: every species in the taxonomy
    symmetric: bool = True  # average audio->target and target->audio
    text_weight: float = 1.0  # objective "both": text_weight * text loss + image_weight * image loss
    image_weight: float = 1.0
    # A second loss keeping the student's geometry (train.keep): none | relational (the batch's pairwise similarities
    # as the frozen original student sees them) | feature (the original's embedding through a linear adapter) |
    # classify (a species classifier on the embedding). Added as keep_weight * that loss; weight 0 is off.
    keep: str = "none"
    keep_weight: float = 0.0
    keep_temperature: float = 0.1  # relational: the softmax temperature of each row of cosine similarities


@dataclass
class VideoConfig:
    """Image-pivot training (objective image or both): targets are the teacher's embeddings of video frames."""

    fps: float = 2.0  # frames sampled per second of video (embedded once and cached)
    frame_selection: str = "random"  # random (VIP-ANT) | nearest (Nearest Match) | multiframe (Multiframe Match)
    nearest_warmup_epochs: int = 1  # nearest: epochs with random frames first
    subwindows: int = 4  # multiframe: sub-windows per crop, each paired with the frames at its time
    # True: leave out videos marked reliable_audio = false (SSW60: bird not heard). Off by default: SSW60's authors
    # train on every video for their best results.
    reliable_audio_only: bool = False


@dataclass
class CalibrationConfig:
    """The similarity -> confidence map fitted after training (models.calibration)."""

    enabled: bool = True
    dataset: str | None = None  # default: data.dataset (e.g. a soundscape dataset.yaml)
    split: str | None = None  # default: data.val_split; neither: the model stays uncalibrated
    forms: str = "taxonomic_common"  # the species texts searches compare with (the gallery's defaults)
    templates: str = "openai"


@dataclass
class OptimConfig:
    lr: float = 1e-4
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    amp: str = "auto"  # auto (bf16/fp16 on CUDA, off on CPU) | off | bf16 | fp16


@dataclass
class RunConfig:
    batch_size: int = 64  # global: split evenly across torchrun processes
    epochs: int = 10
    max_steps: int | None = None  # overrides epochs when set
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    eval_every: int = 500
    log_every: int = 10
    device: str = "auto"
    progress: bool | None = None


@dataclass
class TrainConfig:
    student: str = "biolingual"
    teacher: str = "bioclip-2"
    output: str = "runs/distill"
    objective: str = "text"  # text (the paper's text pivot) | image (video frames, VIP-ANT) | both
    data: DataConfig = field(default_factory=DataConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def as_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    def validate(self, source: str = "config") -> TrainConfig:
        def bad(key: str, problem: str) -> InputError:
            return InputError(source, f"{key}: {problem}")

        if not self.data.dataset:
            raise bad("data.dataset", "is required (an SSW60 folder, iNatSounds JSON, dataset.yaml or manifest)")
        for form in self.prompts.mix:
            parse_text_form(form, f"{source}: prompts.mix")
        if self.head.type not in ("linear", "mlp"):
            raise bad("head.type", f"must be 'linear' or 'mlp', not {self.head.type!r}")
        trainable = self.model.trainable
        if trainable not in ("all", "head") and not (
            trainable.startswith("last:") and trainable[5:].isdigit() and int(trainable[5:]) > 0
        ):
            raise bad("model.trainable", f"must be 'all', 'head' or 'last:N', not {trainable!r}")
        if self.loss.negatives not in ("batch", "all"):
            raise bad("loss.negatives", f"must be 'batch' or 'all', not {self.loss.negatives!r}")
        if not 0 < self.loss.temperature < 10:
            raise bad("loss.temperature", "must be in (0, 10)")
        if self.objective not in ("text", "image", "both"):
            raise bad("objective", f"must be text, image or both, not {self.objective!r}")
        if self.video.frame_selection not in ("random", "nearest", "multiframe"):
            raise bad("video.frame_selection",
                      f"must be random, nearest or multiframe, not {self.video.frame_selection!r}")
        if not self.video.fps > 0:
            raise bad("video.fps", "must be above 0")
        if self.video.subwindows < 1 or self.video.nearest_warmup_epochs < 0:
            raise bad("video.subwindows", "must be at least 1 (and nearest_warmup_epochs at least 0)")
        if min(self.loss.text_weight, self.loss.image_weight) < 0:
            raise bad("loss.text_weight", "weights must not be negative")
        if self.loss.keep not in KEEP_KINDS:
            raise bad("loss.keep", f"must be {', '.join(KEEP_KINDS[:-1])} or {KEEP_KINDS[-1]}, not {self.loss.keep!r}")
        if not 0 <= self.loss.keep_weight < float("inf"):
            raise bad("loss.keep_weight", f"must be a finite number of at least 0, not {self.loss.keep_weight!r}")
        if self.loss.keep_weight > 0 and self.loss.keep == "none":
            raise bad("loss.keep_weight", "is above 0 but loss.keep is none; name the loss (relational, feature or "
                      "classify)")
        if not 0 < self.loss.keep_temperature < 10:
            raise bad("loss.keep_temperature", "must be in (0, 10)")
        if not 0.0 <= self.data.background_share < 1.0:
            raise bad("data.background_share", "must be at least 0 and below 1")
        if self.data.background and self.data.background_share == 0:
            raise bad("data.background_share", "is 0, so data.background would not be used; give a share above 0")
        fraction = self.data.holdout.fraction
        if fraction is not None and not 0 < fraction < 1:
            raise bad("data.holdout.fraction", f"must lie strictly between 0 and 1, not {fraction!r}")
        if not self.data.background_min_gap_s > 0:
            raise bad("data.background_min_gap_s", "must be above 0")
        if (self.data.background or self.data.background_gaps) and self.objective != "text":
            raise bad("data.background", f"needs objective text (background audio has no video frames), "
                      f"not {self.objective!r}")
        if self.optim.amp not in ("auto", "off", "bf16", "fp16"):
            raise bad("optim.amp", f"must be auto, off, bf16 or fp16, not {self.optim.amp!r}")
        for key, value in (("run.batch_size", self.run.batch_size), ("run.epochs", self.run.epochs),
                           ("run.checkpoint_every", self.run.checkpoint_every),
                           ("run.eval_every", self.run.eval_every), ("run.log_every", self.run.log_every)):
            if value < 1:
                raise bad(key, "must be at least 1")
        if self.run.max_steps is not None and self.run.max_steps < 1:
            raise bad("run.max_steps", "must be at least 1")
        return self


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Defaults, then the YAML file, then ``key=value`` overrides (values parsed as YAML)."""
    raw = read_yaml_mapping(path, "config file", "of sections") if path is not None else {}
    return config_from(raw, overrides, str(path) if path else "config")


def config_from(raw: dict[str, Any], overrides: list[str] | tuple[str, ...] = (), source: str = "config"
                ) -> TrainConfig:
    """:func:`load_config` of a config file's mapping ``raw`` (left unchanged), read once for many configs;
    errors name ``source``."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError("--set", f"{item!r} is not key=value (e.g. --set optim.lr=3e-5)")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        _set_dotted(raw, key.strip(), parsed)
    return _build(TrainConfig, raw, source, "").validate(source)


def read_yaml_mapping(path: str | Path, what: str, shape: str) -> dict[str, Any]:
    """A YAML file whose top level is a mapping (an empty file: {}); errors name the file (``what`` it is, the
    ``shape`` its mapping should have)."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise InputError(str(path), f"no such {what}") from None
    except yaml.YAMLError as exc:
        raise InputError(str(path), f"not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise InputError(str(path), f"the top level must be a mapping {shape}")
    return raw


def dump_config(config: TrainConfig) -> str:
    return yaml.safe_dump(config.as_dict(), sort_keys=False)


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise InputError("--set", f"{key}: {part} is not a section")
    node[parts[-1]] = value


def _build(cls: type, raw: Any, source: str, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise InputError(source, f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {raw!r}")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InputError(source, f"unknown key(s) {', '.join(prefix + u for u in unknown)}",
                         f"valid keys here: {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in raw:
            continue
        hint = hints[f.name]
        value = raw[f.name]
        if is_dataclass(hint):
            values[f.name] = _build(hint, value, source, f"{prefix}{f.name}.")
        else:
            values[f.name] = _coerce(value, hint, source, prefix + f.name)
    return cls(**values)


def _coerce(value: Any, hint: Any, source: str, key: str) -> Any:
    text = str(hint)
    if value is None:
        if "None" in text:
            return None
        raise InputError(source, f"{key}: may not be empty")
    try:
        if hint is bool or text == "bool | None":
            if isinstance(value, bool):
                return value
            raise TypeError
        if hint is int or text.startswith("int"):
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise TypeError
            return int(value)
        if hint is float or text == "float | None":
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if hint is str or text == "str | None":
            if isinstance(value, (dict, list)):
                raise TypeError
            return str(value)
        if text == "list[str]":
            if isinstance(value, str):
                return [value]
            if not isinstance(value, list) or any(isinstance(v, (dict, list)) for v in value):
                raise TypeError
            return [str(v) for v in value]
        if text.startswith("tuple"):
            return tuple(float(v) for v in value)
        if text.startswith("dict"):
            if not isinstance(value, dict):
                raise TypeError
            return {str(k): float(v) for k, v in value.items()}
    except (TypeError, ValueError):
        raise InputError(source, f"{key}: {value!r} is not a valid {text}") from None
    return value
