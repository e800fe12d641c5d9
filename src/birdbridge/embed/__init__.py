"""The embedding API: recordings, pictures, texts and species in; float32 L2-normalised arrays out."""

from birdbridge.embed.audio import embed_audio, embed_audio_windows
from birdbridge.embed.images import embed_image_files, embed_images
from birdbridge.embed.table import EmbeddingTable
from birdbridge.embed.text import embed_species, embed_texts
from birdbridge.embed.writers import read_table, write_table
from birdbridge.errors import Failure

__all__ = [
    "EmbeddingTable",
    "Failure",
    "embed_audio",
    "embed_audio_windows",
    "embed_image_files",
    "embed_images",
    "embed_species",
    "embed_texts",
    "read_table",
    "write_table",
]
