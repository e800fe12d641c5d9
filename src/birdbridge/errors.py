"""User-facing errors: the CLI prints their message alone, without a traceback."""

from __future__ import annotations


class BirdbridgeError(Exception):
    """An error whose message tells the user what went wrong and what to do."""


class ModelNotFoundError(BirdbridgeError):
    """A model name, hub id or folder that cannot be resolved to files on disk."""


class ModelFormatError(BirdbridgeError):
    """A model folder whose files are not in a layout birdbridge can load."""


class InputError(BirdbridgeError):
    """A bad input file or field; the message names it."""

    def __init__(self, source: str, problem: str, hint: str = "") -> None:
        self.source = str(source)
        self.problem = problem
        self.hint = hint
        message = f"{self.source}: {problem}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class AudioError(InputError):
    """An audio file that cannot be read or holds unusable samples."""


class ImageError(InputError):
    """An image file that cannot be decoded."""
