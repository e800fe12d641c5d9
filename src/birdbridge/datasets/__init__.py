"""Dataset adapters: SSW60, iNatSounds and generic manifests, loaded into one :class:`Dataset` model;
annotated soundscapes (:func:`load_soundscapes`), cut into labelled windows for multi-label evaluation."""

from birdbridge.datasets.base import MODALITIES, AudioItem, Dataset, ImageItem, Item, VideoItem
from birdbridge.datasets.detect import LAYOUTS, detect_layout, load_dataset, load_descriptor
from birdbridge.datasets.inatsounds import INATSOUNDS_SPLITS, load_inatsounds
from birdbridge.datasets.manifest import load_manifest
from birdbridge.datasets.soundscape import (
    Annotation,
    LabelledWindow,
    Recording,
    SoundscapeDataset,
    SoundscapeWindows,
    load_soundscapes,
    read_soundscapes,
)
from birdbridge.datasets.ssw60 import IMAGE_SOURCES, load_ssw60

__all__ = [
    "IMAGE_SOURCES",
    "INATSOUNDS_SPLITS",
    "LAYOUTS",
    "MODALITIES",
    "Annotation",
    "AudioItem",
    "Dataset",
    "ImageItem",
    "Item",
    "LabelledWindow",
    "Recording",
    "SoundscapeDataset",
    "SoundscapeWindows",
    "VideoItem",
    "detect_layout",
    "load_dataset",
    "load_descriptor",
    "load_inatsounds",
    "load_manifest",
    "load_soundscapes",
    "load_ssw60",
    "read_soundscapes",
]
