"""Species lists, BioCLIP text forms and prompts, and cached species text embeddings."""

from birdbridge.species.encoding import class_embeddings, prompt_embeddings
from birdbridge.species.labels import (
    SpeciesArg,
    as_taxonomy,
    parse_species_label,
    parse_species_list,
    read_species_list,
    taxonomy_from_names,
)
from birdbridge.species.names import SpeciesLabel, split_scientific_name, split_species_label
from birdbridge.species.prompts import PromptSpec, species_prompts
from birdbridge.species.sampler import PromptSampler
from birdbridge.species.taxonomy import (
    Species,
    Taxonomy,
    UnknownSpeciesError,
    load_taxonomy_csv,
    normalize_rank_name,
)
from birdbridge.species.templates import OPENAI_TEMPLATES, TEMPLATE_SETS, resolve_templates
from birdbridge.species.text_cache import (
    TextEncoder,
    cache_dir,
    clear_cache,
    species_text_embeddings,
    variant_text_embeddings,
)
from birdbridge.species.text_forms import TextForm, parse_forms, parse_text_form, text_for

__all__ = [
    "OPENAI_TEMPLATES",
    "TEMPLATE_SETS",
    "PromptSampler",
    "PromptSpec",
    "Species",
    "SpeciesArg",
    "SpeciesLabel",
    "Taxonomy",
    "TextEncoder",
    "TextForm",
    "UnknownSpeciesError",
    "as_taxonomy",
    "cache_dir",
    "class_embeddings",
    "clear_cache",
    "load_taxonomy_csv",
    "normalize_rank_name",
    "parse_forms",
    "parse_species_label",
    "parse_species_list",
    "parse_text_form",
    "prompt_embeddings",
    "read_species_list",
    "resolve_templates",
    "species_prompts",
    "species_text_embeddings",
    "split_scientific_name",
    "split_species_label",
    "taxonomy_from_names",
    "text_for",
    "variant_text_embeddings",
]
