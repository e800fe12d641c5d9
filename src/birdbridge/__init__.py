"""birdbridge: recognise birds across sound, text and pictures.

The public API is imported lazily so that ``import birdbridge`` (and the CLI's start) stays fast.
"""

from __future__ import annotations

from birdbridge.utils.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "embed_audio": "birdbridge.embed",
    "embed_audio_windows": "birdbridge.embed",
    "embed_images": "birdbridge.embed",
    "embed_image_files": "birdbridge.embed",
    "embed_texts": "birdbridge.embed",
    "embed_species": "birdbridge.embed",
    "EmbeddingTable": "birdbridge.embed",
    "Gallery": "birdbridge.gallery.store",
    "build_gallery": "birdbridge.gallery.build",
    "load_student": "birdbridge.models.loader",
    "load_teacher": "birdbridge.models.loader",
    "load_text_encoder": "birdbridge.models.loader",
    "list_presets": "birdbridge.models.registry",
    "BirdbridgeError": "birdbridge.errors",
    "Taxonomy": "birdbridge.species",
    "Species": "birdbridge.species",
    "load_taxonomy_csv": "birdbridge.species",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
