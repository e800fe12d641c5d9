"""birdbridge: recognise birds across sound, text and pictures.

The product, from Python (each as the command of the same name does it)::

    import birdbridge as bb

    run = bb.train("distill.yaml")                                     # birdbridge train
    bb.build_gallery(["photos/"], "gallery/", "bioclip-2")              # birdbridge index
    report = bb.search("recordings/", model=run.model, gallery="gallery/")   # birdbridge search
    results = bb.evaluate({"distilled": run.model}, "data/dataset.yaml")     # birdbridge evaluate

The public API is imported lazily so that ``import birdbridge`` (and the CLI's start) stays fast.
``bb.search``, ``bb.train`` and ``bb.evaluate`` are always the functions, also once their packages
(``birdbridge.search``, ...) have been imported; import from those with ``from birdbridge.search... import``.
"""

from __future__ import annotations

import sys
import types

from birdbridge.utils.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    # the product
    "search": "birdbridge.search",
    "SearchEngine": "birdbridge.search",
    "cut_segments": "birdbridge.segments",
    "train": "birdbridge.train.loop",
    "evaluate": "birdbridge.evaluate.runner",
    "EvalSettings": "birdbridge.evaluate.runner",
    "run_experiment": "birdbridge.experiment.runner",
    "Gallery": "birdbridge.gallery.store",
    "build_gallery": "birdbridge.gallery.build",
    "Archive": "birdbridge.archive.store",
    "build_archive": "birdbridge.archive.build",
    "ProbeSet": "birdbridge.probes.train",
    "train_probes": "birdbridge.probes.train",
    # embeddings
    "embed_audio": "birdbridge.embed",
    "embed_audio_windows": "birdbridge.embed",
    "embed_images": "birdbridge.embed",
    "embed_image_files": "birdbridge.embed",
    "embed_texts": "birdbridge.embed",
    "embed_species": "birdbridge.embed",
    "EmbeddingTable": "birdbridge.embed",
    # models
    "load_student": "birdbridge.models.loader",
    "load_teacher": "birdbridge.models.loader",
    "load_text_encoder": "birdbridge.models.loader",
    "list_presets": "birdbridge.models.registry",
    # species and errors
    "BirdbridgeError": "birdbridge.errors",
    "Taxonomy": "birdbridge.species",
    "Species": "birdbridge.species",
    "RangeFilter": "birdbridge.species.where",
    "load_taxonomy_csv": "birdbridge.species",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


class _Package(types.ModuleType):
    """The import system sets each subpackage as an attribute of ``birdbridge`` when it first loads it; where
    the API exports a function of the same name (``search``, ``train``, ``evaluate``), the function stays."""

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, types.ModuleType) and name in _EXPORTS and value.__name__ == f"{__name__}.{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
