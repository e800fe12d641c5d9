"""``birdbridge models``: the named presets."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from birdbridge.cli.common import AsJson, console
from birdbridge.models.registry import list_presets


def models_cmd(as_json: AsJson = False) -> None:
    """List the model presets. A hub id or a local folder works wherever a preset name does."""
    presets = list_presets()
    if as_json:
        print(json.dumps([p.as_dict() for p in presets], indent=2))
        return
    table = Table(title="birdbridge model presets")
    for col in ("name", "hub id", "kind", "architecture", "dim", "audio", "image"):
        table.add_column(col)
    for p in presets:
        audio = f"{p.sample_rate // 1000} kHz, {p.window_s:g} s" if p.sample_rate else ""
        image = f"{p.image_size} px, {p.context_length} tokens" if p.image_size else ""
        table.add_row(p.name, p.hub_id, p.kind, p.architecture, str(p.embed_dim), audio, image)
    console.print(table)
    console.print("Any hub id (org/name) or local model folder is accepted wherever a preset name is.")


def register(app: typer.Typer) -> None:
    app.command("models")(models_cmd)
