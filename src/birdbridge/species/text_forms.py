"""BioCLIP's text forms: how a species is named in a prompt.

The forms follow the BioCLIP papers; a species without a common name falls back: ``common`` -> the
scientific name, ``taxonomic_common`` -> ``taxonomic``, ``scientific_common`` -> ``scientific``. The
taxonomic form joins the ranks that are known (empty ranks are skipped). Common names are used as given
(no change of case).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import Enum

from birdbridge.errors import InputError
from birdbridge.species.taxonomy import Species


class TextForm(str, Enum):
    """How a species is named in a prompt."""

    TAXONOMIC = "taxonomic"
    TAXONOMIC_COMMON = "taxonomic_common"
    SCIENTIFIC = "scientific"
    COMMON = "common"
    SCIENTIFIC_COMMON = "scientific_common"

    def __str__(self) -> str:
        return self.value


_VALID_FORMS = "taxonomic, taxonomic_common (or 'taxonomic+common'), scientific, common, scientific_common"


def parse_text_form(value: str | TextForm, source: str = "text form") -> TextForm:
    """A form's name in any case -> TextForm.

    ``+`` may join the two names of a combined form (``taxonomic+common``, ``Scientific + Common``): that is
    how the BioCLIP papers name them, and how the error message offers them.
    """
    if isinstance(value, TextForm):
        return value
    if isinstance(value, str):
        name = re.sub(r"\s*\+\s*", "_", value.strip().lower())
        if name in TextForm._value2member_map_:
            return TextForm(name)
    raise InputError(source, f"unknown text form {value!r}", f"valid forms: {_VALID_FORMS}")


def parse_forms(
    value: str | TextForm | Iterable[str | TextForm], source: str = "text forms"
) -> tuple[TextForm, ...]:
    """One form, a comma-separated string of forms, or a sequence of forms; no repeats, at least one."""
    items = (
        value.split(",")
        if isinstance(value, str)
        else [value]
        if isinstance(value, TextForm)
        else list(value)
    )
    forms = tuple(parse_text_form(item.strip() if isinstance(item, str) else item, source) for item in items)
    if not forms:
        raise InputError(source, "no text form given", f"valid forms: {_VALID_FORMS}")
    repeated = sorted({f.value for f in forms if forms.count(f) > 1})
    if repeated:
        raise InputError(source, f"text form {repeated[0]!r} is listed twice", "list each form once")
    return forms


def text_for(species: Species, form: TextForm | str) -> str:
    """The species' name in one text form (see the module docstring for fallbacks)."""
    form = parse_text_form(form)
    if form in (TextForm.TAXONOMIC, TextForm.TAXONOMIC_COMMON):
        base = " ".join(rank for rank in species.taxonomy_path if rank)
    elif form in (TextForm.SCIENTIFIC, TextForm.SCIENTIFIC_COMMON):
        base = species.scientific_name
    else:
        return species.common_name or species.scientific_name
    if form in (TextForm.TAXONOMIC_COMMON, TextForm.SCIENTIFIC_COMMON) and species.common_name:
        return f"{base} with common name {species.common_name}"
    return base
