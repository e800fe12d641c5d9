"""Small models in the real hub layouts, for the tests and the offline demo.

The real BioLingual and BioCLIP-2 weights cannot be fetched everywhere. These builders make models
of the same classes, saved in exactly the same layouts (a transformers ``ClapModel`` folder with its
RoBERTa-style tokenizer and ``preprocessor_config.json``), so they load through the same code paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from birdbridge.models.clap_frontend import FrontendConfig
from birdbridge.models.hf_quiet import quiet_transformers
from birdbridge.utils.atomic import atomic_files, write_json

#: A front end small enough for fast tests: 1 s windows at 16 kHz, 101 frames of 32 mel bins.
SMALL_FRONTEND = FrontendConfig(
    sample_rate=16_000, n_mels=32, n_fft=512, hop_length=160, fmin=50.0, fmax=8_000.0, window_s=1.0
)


def small_clap_config(
    frontend: FrontendConfig = SMALL_FRONTEND,
    *,
    vocab_size: int = 512,
    width: int = 32,
    projection_dim: int = 24,
    depths: tuple[int, ...] = (1, 1),
):
    """A tiny unfused ``ClapConfig`` whose HTSAT input fits ``frontend``'s frames and mel bins."""
    from transformers import ClapConfig

    spec_size = 2 * frontend.n_mels
    while spec_size * (spec_size // frontend.n_mels) < frontend.n_frames:
        spec_size *= 2
    patch_hidden = max(4, width // 2 ** (len(depths) - 1))
    audio = {
        "spec_size": spec_size,
        "num_mel_bins": frontend.n_mels,
        "patch_embeds_hidden_size": patch_hidden,
        "hidden_size": patch_hidden * 2 ** (len(depths) - 1),
        "depths": list(depths),
        "num_attention_heads": [max(1, 2**i) for i in range(len(depths))],
        "window_size": 4,
        "patch_size": 4,
        "patch_stride": [4, 4],
        "projection_dim": projection_dim,
        "enable_fusion": False,
        "hidden_dropout_prob": 0.0,
    }
    text = {
        "vocab_size": vocab_size,
        "hidden_size": width,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 2 * width,
        "max_position_embeddings": 66,
        "projection_dim": projection_dim,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }
    return ClapConfig(audio_config=audio, text_config=text, projection_dim=projection_dim)


def train_roberta_tokenizer(corpus: Iterable[str], folder: str | Path, vocab_size: int = 512):
    """A byte-level BPE tokenizer in RoBERTa's file layout (vocab.json + merges.txt), trained on ``corpus``."""
    import json

    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        list(corpus),
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    with atomic_files(folder) as staging:
        bpe.save_model(str(staging))
        vocab = json.loads((staging / "vocab.json").read_text(encoding="utf-8"))
        merges = [tuple(line.split()) for line in (staging / "merges.txt").read_text(encoding="utf-8").splitlines()
                  if line and not line.startswith("#version")]
        tokenizer = RobertaTokenizerFast(vocab=vocab, merges=merges, model_max_length=64)
        if len(tokenizer) <= 5:
            raise RuntimeError(f"{folder}: the trained tokenizer did not load (vocabulary of {len(tokenizer)})")
        tokenizer.save_pretrained(staging)
    return tokenizer


def save_clap_folder(model, folder: str | Path, frontend: FrontendConfig, tokenizer=None) -> Path:
    """Save a ``ClapModel`` as the hub does: config, safetensors, preprocessor config, tokenizer."""
    folder = Path(folder)
    with atomic_files(folder) as staging, quiet_transformers():
        model.save_pretrained(staging, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
    write_json(folder / "preprocessor_config.json", frontend.preprocessor_dict())
    return folder


def build_small_clap(
    folder: str | Path,
    corpus: Iterable[str] = ("a bird sings", "Pica hudsonia", "black-billed magpie"),
    frontend: FrontendConfig = SMALL_FRONTEND,
    seed: int = 0,
    **config_kwargs,
) -> Path:
    """Random small ClapModel + tokenizer, saved in the hub layout at ``folder``."""
    from transformers import ClapModel

    folder = Path(folder)
    tokenizer = train_roberta_tokenizer(corpus, folder, vocab_size=config_kwargs.get("vocab_size", 512))
    config = small_clap_config(frontend, vocab_size=max(len(tokenizer), 8), **{
        k: v for k, v in config_kwargs.items() if k != "vocab_size"
    })
    torch.manual_seed(seed)
    model = ClapModel(config).eval()
    return save_clap_folder(model, folder, frontend, tokenizer)


#: BioLingual's front end (its ``preprocessor_config.json``): 48 kHz, 10 s, 64 mel bins, 50 Hz–14 kHz.
BIOLINGUAL_FRONTEND = FrontendConfig()


def biolingual_architecture_config():
    """The full-size BioLingual architecture: laion CLAP HTSAT-tiny (unfused) + RoBERTa-base, 512-d.

    Random weights of this config have exactly the shapes of the real checkpoint, so the tests and
    benchmarks can prove that it fits and measure its speed without downloading it.
    """
    from transformers import ClapConfig

    audio = {
        "window_size": 8, "num_mel_bins": 64, "spec_size": 256, "hidden_act": "gelu", "patch_size": 4,
        "patch_stride": [4, 4], "num_classes": 527, "hidden_size": 768, "projection_dim": 512,
        "depths": [2, 2, 6, 2], "num_attention_heads": [4, 8, 16, 32], "enable_fusion": False,
        "hidden_dropout_prob": 0.1, "patch_embed_input_channels": 1, "flatten_patch_embeds": True,
        "patch_embeds_hidden_size": 96, "enable_patch_layer_norm": True, "drop_path_rate": 0.0,
        "attention_probs_dropout_prob": 0.0, "qkv_bias": True, "mlp_ratio": 4.0, "aff_block_r": 4,
        "projection_hidden_act": "relu", "layer_norm_eps": 1e-5,
    }
    text = {
        "vocab_size": 50265, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
        "intermediate_size": 3072, "max_position_embeddings": 514, "type_vocab_size": 1,
        "projection_dim": 512, "projection_hidden_act": "relu", "pad_token_id": 1,
    }
    return ClapConfig(audio_config=audio, text_config=text, projection_dim=512)


def build_full_size_biolingual(folder: str | Path, seed: int = 0) -> Path:
    """Random weights in the BioLingual architecture, saved as a hub-layout ClapModel folder."""
    from transformers import ClapModel

    torch.manual_seed(seed)
    with quiet_transformers():
        model = ClapModel(biolingual_architecture_config()).eval()
    return save_clap_folder(model, folder, BIOLINGUAL_FRONTEND)


def small_clip_config(
    *, embed_dim: int = 24, image_size: int = 32, patch_size: int = 8, width: int = 32, layers: int = 1
):
    """A tiny transformers ``CLIPConfig`` that open_clip's layout can represent (CLIP BPE vocabulary)."""
    from transformers import CLIPConfig

    text = {
        "vocab_size": 49408, "hidden_size": width, "intermediate_size": 4 * width, "num_attention_heads": 2,
        "num_hidden_layers": layers, "max_position_embeddings": 77, "hidden_act": "gelu",
        "projection_dim": embed_dim, "bos_token_id": 49406, "eos_token_id": 49407,
    }
    vision = {
        "hidden_size": width, "intermediate_size": 4 * width, "num_attention_heads": max(1, width // 16),
        "num_hidden_layers": layers, "image_size": image_size, "patch_size": patch_size, "hidden_act": "gelu",
        "projection_dim": embed_dim,
    }
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=embed_dim)


def build_small_clip(folder: str | Path, seed: int = 0, **config_kwargs) -> Path:
    """Random small CLIP saved in open_clip's hub layout (``open_clip_config.json`` + safetensors)."""
    from transformers import CLIPModel

    from birdbridge.models.openclip_convert import save_openclip_folder

    torch.manual_seed(seed)
    with quiet_transformers():
        model = CLIPModel(small_clip_config(**config_kwargs)).eval()
    return save_openclip_folder(model, folder)
