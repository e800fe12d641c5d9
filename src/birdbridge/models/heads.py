"""Projection heads from the student's embedding into the teacher's space (saved in a trained student's folder)."""

from __future__ import annotations

from torch import nn

from birdbridge.errors import ModelFormatError


class ProjectionHead(nn.Module):
    """``linear``: one Linear. ``mlp``: Linear -> GELU -> Dropout -> Linear."""

    def __init__(self, in_dim: int, out_dim: int, kind: str = "linear", hidden_dim: int = 1024, dropout: float = 0.0):
        super().__init__()
        self.in_dim, self.out_dim, self.kind = in_dim, out_dim, kind
        self.hidden_dim, self.dropout = hidden_dim, dropout
        if kind == "linear":
            self.net = nn.Linear(in_dim, out_dim)
        elif kind == "mlp":
            self.net = nn.Sequential(
                nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, out_dim)
            )
        else:
            raise ModelFormatError(f"unknown head type {kind!r}: use 'linear' or 'mlp'")

    def forward(self, x):
        return self.net(x)

    def describe(self) -> dict:
        return {"type": self.kind, "in_dim": self.in_dim, "out_dim": self.out_dim,
                "hidden_dim": self.hidden_dim, "dropout": self.dropout}

    @classmethod
    def from_description(cls, d: dict) -> ProjectionHead:
        try:
            return cls(int(d["in_dim"]), int(d["out_dim"]), str(d["type"]), int(d.get("hidden_dim", 1024)),
                       float(d.get("dropout", 0.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"bad head description {d!r} ({exc})") from exc
