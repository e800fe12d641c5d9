"""User-facing errors (the CLI prints their message alone, without a traceback) and skipped inputs."""

from __future__ import annotations

from dataclasses import dataclass


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


@dataclass(frozen=True)
class Failure:
    """An input that a batch job skipped, and why (``message`` names the input).

    Every layer reports skipped inputs with this one type; :meth:`as_json` is the ``{"input", "error"}``
    object that results files (such as ``birdbridge evaluate``'s ``results.json``) hold.
    """

    source: str
    message: str

    def as_json(self) -> dict[str, str]:
        return {"input": self.source, "error": self.message}
