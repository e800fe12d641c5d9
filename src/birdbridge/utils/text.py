"""Table cells as text."""

from __future__ import annotations

import math
from typing import Any


def optional_text(value: Any) -> str | None:
    """A cell as stripped text; None for None, NaN and blank cells."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None
