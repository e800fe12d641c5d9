"""Turn a model reference (preset, hub id or folder) into a local folder, with clear offline errors."""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path

from birdbridge.errors import ModelNotFoundError
from birdbridge.models.registry import ModelSpec, get_preset
from birdbridge.utils.readable import check_readable, permission_denied

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_CONFIG_PATTERNS = ["*.json", "*.txt"]
_WEIGHT_FILES = (
    "model.safetensors",
    "open_clip_model.safetensors",
    "pytorch_model.bin",
    "open_clip_pytorch_model.bin",
)


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: the folder holding its files, and where it came from."""

    folder: Path
    source: str  # what the user asked for
    hub_id: str | None = None
    preset: ModelSpec | None = None

    @property
    def display_name(self) -> str:
        if self.preset is not None:
            return self.preset.name
        return self.hub_id or self.folder.name


def resolve(ref: str | os.PathLike[str]) -> ModelRef:
    """Find the files for ``ref``: an existing folder, a preset name, or a hub id."""
    text = str(ref).strip()
    path = Path(text).expanduser()
    if path.is_dir():
        return ModelRef(folder=path.resolve(), source=text)
    if path.exists():
        raise ModelNotFoundError(f"{text}: is a file, not a model folder. Pass the folder that holds it.")
    preset = get_preset(text)
    hub_id = preset.hub_id if preset else text.removeprefix("hf-hub:")
    if preset is None and not _HUB_ID.match(hub_id):
        if text.startswith((".", "/", "~")) or text.count("/") > 1 or (os.sep != "/" and os.sep in text):
            raise ModelNotFoundError(f"{text}: no such model folder.")
        raise ModelNotFoundError(
            f"{text}: not a known model. Use a preset ({', '.join(_preset_names())}), "
            "a Hugging Face hub id such as imageomics/bioclip-2, or a local model folder."
        )
    folder = _download(hub_id, preset)
    return ModelRef(folder=folder, source=text, hub_id=hub_id, preset=preset)


def model_files(folder: Path) -> list[Path]:
    """The files in a model folder that loaders read: configs, tokenizer files and weights."""
    try:
        entries = list(folder.iterdir())
    except PermissionError as exc:
        raise permission_denied(folder) from exc
    return sorted(
        p for p in entries
        if p.suffix in (".safetensors", ".bin") or any(fnmatch.fnmatch(p.name, pat) for pat in _CONFIG_PATTERNS)
    )


def check_model_folder(folder: Path) -> None:
    """Raise a "permission denied" InputError naming the first model file this user may not read."""
    check_readable(model_files(folder))


def stable_ref(ref: str | os.PathLike[str]) -> str:
    """``ref`` as recorded in a saved model or gallery: an existing local folder as an absolute path (so
    the record works from any working directory), a preset or hub id as given."""
    text = str(ref).strip()
    path = Path(text).expanduser()
    return str(path.resolve()) if path.is_dir() else text


def _preset_names() -> list[str]:
    from birdbridge.models.registry import PRESETS

    return list(PRESETS)


def _download(hub_id: str, preset: ModelSpec | None) -> Path:
    """Fetch configs, then one set of weights (safetensors first) from the hub or its local cache."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        folder = Path(snapshot_download(hub_id, allow_patterns=_CONFIG_PATTERNS))
        weights = _pick_weights(hub_id, folder)
        folder = Path(snapshot_download(hub_id, allow_patterns=[*_CONFIG_PATTERNS, weights]))
    except RepositoryNotFoundError as exc:
        raise ModelNotFoundError(
            f"{hub_id}: no such model on the Hugging Face hub (or it is private). Check the id, "
            "or pass a local folder."
        ) from exc
    except GatedRepoError as exc:
        raise ModelNotFoundError(
            f"{hub_id}: the model is gated. Accept its terms on huggingface.co and log in with `hf auth login`."
        ) from exc
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise ModelNotFoundError(offline_message(hub_id, preset)) from exc
    return folder


def _pick_weights(hub_id: str, folder: Path) -> str:
    """Name of the weights file to fetch: the one the hub listing or the cache shows, safetensors first."""
    present = {p.name for p in folder.iterdir()}
    try:
        from huggingface_hub import list_repo_files

        if not os.environ.get("HF_HUB_OFFLINE"):
            present |= set(list_repo_files(hub_id))
    except Exception:  # offline or unreachable: the cache alone decides
        pass
    for name in _WEIGHT_FILES:
        if name in present:
            return name
    uses_open_clip = "open_clip_config.json" in present
    return "open_clip_model.safetensors" if uses_open_clip else "model.safetensors"


def offline_message(hub_id: str, preset: ModelSpec | None = None) -> str:
    from huggingface_hub import constants

    label = f"{preset.name} ({hub_id})" if preset else hub_id
    local = hub_id.split("/")[-1]
    return (
        f"Model {label} is not available: it is not in the Hugging Face cache at {constants.HF_HUB_CACHE} "
        "and the hub cannot be reached from here.\n"
        f"  On a machine with access, run:  hf download {hub_id}   (older: huggingface-cli download {hub_id})\n"
        "  then copy its cache folder here and point HF_HOME at it, or download to a folder:\n"
        f"    hf download {hub_id} --local-dir ./{local}   and pass   --model ./{local}"
    )
