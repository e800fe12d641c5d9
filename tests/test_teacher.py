"""Teacher = open_clip checkpoints loaded into transformers' CLIPModel; open_clip's own code is the reference."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from birdbridge.errors import ModelFormatError, ModelNotFoundError
from birdbridge.models.clip_tokenizer import ASSETS_DIR
from birdbridge.models.openclip_convert import (
    clip_config_from_openclip,
    load_openclip_folder,
    save_openclip_folder,
)
from birdbridge.models.teacher import Teacher
from openclip_reference import (
    build_openclip_model,
    make_openclip_checkpoint,
    model_config,
    oc_model,
    reference_image_features,
    reference_preprocess,
    reference_text_features,
    sample_images,
    save_hub_layout,
)

TEXTS = [
    "a bird",
    "",
    "Animalia Chordata Aves Passeriformes Corvidae Pica hudsonia with common name black-billed magpie",
    "a photo of Turdus migratorius, the American Robin",
    " ".join(["warbler"] * 150),  # longer than 77 tokens
    "Café crème, naïve ÉCOLE — 鳥 🐦",
    "&amp;lt;i&amp;gt;Parus major&amp;lt;/i&amp;gt; &quot;great tit&quot;",
]
IMAGES = sample_images()
IMAGE_KINDS = ["rgb", "rgba", "gray_l", "palette_p", "la", "tall", "wide", "tiny_5x7", "large_1000x300"]
MIN_COSINE = 0.9999
MAX_ABS = 1e-4  # on unit vectors; the conversion is exact up to float rounding (~1e-7)


def assert_close_embeddings(ours: torch.Tensor, ref: torch.Tensor, labels: list[str]) -> None:
    assert ours.shape == ref.shape
    assert ours.dtype == torch.float32 and ours.device.type == "cpu"
    assert torch.allclose(ours.norm(dim=-1), torch.ones(len(ours)), atol=1e-5)
    cos = (ours * ref).sum(-1)
    for label, value in zip(labels, cos.tolist(), strict=True):
        assert value >= MIN_COSINE, f"{label}: cosine {value:.6f}"
    assert (ours - ref).abs().max().item() < MAX_ABS


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[tuple[bool, str], tuple[Path, torch.nn.Module]]:
    """Four tiny open_clip checkpoints: GELU / QuickGELU, safetensors / bin."""
    out = {}
    for i, (quick, fmt) in enumerate([(False, "safetensors"), (True, "bin"), (False, "bin"), (True, "safetensors")]):
        folder = tmp_path_factory.mktemp(f"oc-{'quick' if quick else 'gelu'}-{fmt}")
        out[quick, fmt] = folder, make_openclip_checkpoint(folder, quick_gelu=quick, fmt=fmt, seed=i)
    return out


@pytest.fixture(scope="module")
def gelu_teacher(checkpoints) -> tuple[Teacher, torch.nn.Module, Path]:
    folder, ref = checkpoints[False, "safetensors"]
    return Teacher.from_folder(folder, device="cpu"), ref, folder


@pytest.mark.parametrize("quick_gelu", [False, True], ids=["gelu", "quick_gelu"])
@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_embeddings_match_open_clip(checkpoints, quick_gelu: bool, fmt: str) -> None:
    folder, ref = checkpoints[quick_gelu, fmt]
    teacher = Teacher.from_folder(folder, device="cpu")
    assert teacher.model.config.text_config.hidden_act == ("quick_gelu" if quick_gelu else "gelu")
    assert_close_embeddings(teacher.encode_texts(TEXTS), reference_text_features(ref, TEXTS), TEXTS)
    images = [IMAGES[k] for k in IMAGE_KINDS]
    pixels = torch.stack([reference_preprocess(im, size=64) for im in images])
    assert_close_embeddings(teacher.encode_images(images), reference_image_features(ref, pixels), IMAGE_KINDS)


def test_wrong_activation_would_be_detected(checkpoints, tmp_path) -> None:
    """The comparison is sharp enough to catch a GELU / QuickGELU mix-up."""
    folder, ref = checkpoints[True, "safetensors"]
    shutil.copytree(folder, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "open_clip_config.json").read_text())
    del cfg["model_cfg"]["quick_gelu"]
    (tmp_path / "m" / "open_clip_config.json").write_text(json.dumps(cfg))
    wrong = Teacher.from_folder(tmp_path / "m", device="cpu")
    assert (wrong.encode_texts(TEXTS) - reference_text_features(ref, TEXTS)).abs().max() > 10 * MAX_ABS


def test_full_image_size_and_other_shapes(tmp_path) -> None:
    """224-px images, 32-px patches, 48-wide heads, mlp_ratio 2, 3 layers."""
    ref = make_openclip_checkpoint(
        tmp_path, image_size=224, vision={"patch_size": 32, "head_width": 16, "mlp_ratio": 2.0, "layers": 3},
        text={"mlp_ratio": 3.0, "heads": 4}, embed_dim=40,
    )  # fmt: skip
    teacher = Teacher.from_folder(tmp_path, device="cpu")
    assert (teacher.image_size, teacher.embed_dim, teacher.context_length) == (224, 40, 77)
    assert teacher.model.config.vision_config.num_attention_heads == 4
    images = [IMAGES[k] for k in IMAGE_KINDS]
    pixels = torch.stack([reference_preprocess(im, size=224) for im in images])
    assert_close_embeddings(teacher.encode_images(images), reference_image_features(ref, pixels), IMAGE_KINDS)
    assert_close_embeddings(teacher.encode_texts(TEXTS), reference_text_features(ref, TEXTS), TEXTS)


def test_custom_text_layout_and_final_ln_after_pool(tmp_path) -> None:
    """open_clip's CustomTextCLIP key layout (``text.*``) and LayerNorm-after-pooling load too."""
    ref = make_openclip_checkpoint(
        tmp_path,
        vision={"final_ln_after_pool": True},
        text={"final_ln_after_pool": True},
        extra_model_cfg={"custom_text": True},
    )
    assert any(k.startswith("text.transformer.") for k in ref.state_dict())
    teacher = Teacher.from_folder(tmp_path, device="cpu")
    assert_close_embeddings(teacher.encode_texts(TEXTS), reference_text_features(ref, TEXTS), TEXTS)
    pixels = torch.stack([reference_preprocess(IMAGES[k], size=64) for k in IMAGE_KINDS])
    assert_close_embeddings(teacher.encode_images(pixels), reference_image_features(ref, pixels), IMAGE_KINDS)


def test_preprocess_cfg_is_used(tmp_path) -> None:
    pp = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "resize_mode": "squash", "interpolation": "bilinear"}
    ref = make_openclip_checkpoint(tmp_path, preprocess_cfg=pp)
    teacher = Teacher.from_folder(tmp_path, device="cpu")
    pre = teacher.preprocessor
    assert (pre.mean, pre.std) == ((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    assert (pre.resize_mode, pre.interpolation) == ("squash", "bilinear")
    images = [IMAGES[k] for k in ("tall", "rgba")]
    pixels = torch.stack([reference_preprocess(im, size=64, **pp) for im in images])
    assert (torch.stack([teacher.preprocess(im) for im in images]) - pixels).abs().max() < 1e-5
    assert_close_embeddings(teacher.encode_images(images), reference_image_features(ref, pixels), ["tall", "rgba"])


def test_teacher_interface(gelu_teacher) -> None:
    teacher, _, folder = gelu_teacher
    assert not teacher.model.training
    assert not any(p.requires_grad for p in teacher.model.parameters())
    assert not any(t.is_meta for t in [*teacher.model.parameters(), *teacher.model.buffers()])
    assert (teacher.embed_dim, teacher.context_length, teacher.image_size) == (48, 77, 64)
    assert teacher.device == torch.device("cpu") and teacher.name == folder.name
    assert teacher.layout == "open_clip"
    assert teacher.tokenize(["a bird", "b"]).shape == (2, 77)
    assert teacher.preprocess(IMAGES["rgb"]).shape == (3, 64, 64)
    assert teacher.encode_texts([]).shape == (0, 48)
    assert teacher.encode_images([]).shape == (0, 48)
    assert teacher.encode_texts("one text").shape == (1, 48)
    default = Teacher.from_folder(folder, name="bioclip-test")
    assert default.device.type in ("cpu", "cuda", "mps") and default.name == "bioclip-test"


def test_loading_never_initialises_weights(checkpoints, monkeypatch) -> None:
    """The CLIPModel is built on the meta device: no weight is initialised before being replaced."""
    from transformers.models.clip.modeling_clip import CLIPPreTrainedModel

    original = CLIPPreTrainedModel._init_weights
    real = []

    def spy(self, module):
        real.extend(p for p in module.parameters(recurse=False) if not p.is_meta)
        return original(self, module)

    monkeypatch.setattr(CLIPPreTrainedModel, "_init_weights", spy)
    teacher = Teacher.from_folder(checkpoints[False, "safetensors"][0], device="cpu")
    assert not real
    type(teacher.model)(teacher.model.config)  # the spy does see an ordinary construction
    assert real


def test_default_name_from_hub_cache_path(checkpoints, tmp_path) -> None:
    snapshot = tmp_path / "hub" / "models--imageomics--bioclip-2" / "snapshots" / "0123abcd"
    shutil.copytree(checkpoints[False, "safetensors"][0], snapshot)
    assert Teacher.from_folder(snapshot, device="cpu").name == "bioclip-2"
    other = tmp_path / "hub" / "models--someone--tiny-clip" / "snapshots" / "ffff"
    shutil.copytree(checkpoints[False, "safetensors"][0], other)
    assert Teacher.from_folder(other, device="cpu").name == "someone/tiny-clip"


def test_batching_and_tensor_input_keep_order(gelu_teacher) -> None:
    teacher, _, _ = gelu_teacher
    whole = teacher.encode_texts(TEXTS)
    assert torch.allclose(teacher.encode_texts(TEXTS, batch_size=2), whole, atol=1e-6)
    assert torch.allclose(teacher.encode_texts(TEXTS[::-1], batch_size=3), whole.flip(0), atol=1e-6)
    images = [IMAGES[k] for k in IMAGE_KINDS]
    from_pil = teacher.encode_images(images, batch_size=4)
    from_tensor = teacher.encode_images(torch.stack([teacher.preprocess(im) for im in images]), batch_size=32)
    assert torch.allclose(from_pil, from_tensor, atol=1e-6)
    assert torch.allclose(teacher.encode_images(teacher.preprocess(images[0])), from_pil[:1], atol=1e-6)


def test_fingerprint_is_stable_and_content_based(checkpoints, tmp_path) -> None:
    folder, _ = checkpoints[False, "bin"]
    first = Teacher.from_folder(folder, device="cpu").fingerprint
    assert first == Teacher.from_folder(folder, device="cpu").fingerprint
    shutil.copytree(folder, tmp_path / "copy")
    assert Teacher.from_folder(tmp_path / "copy", device="cpu").fingerprint == first
    other, _ = checkpoints[False, "safetensors"]
    assert Teacher.from_folder(other, device="cpu").fingerprint != first


def test_save_round_trip_into_open_clip(gelu_teacher, tmp_path) -> None:
    teacher, ref, folder = gelu_teacher
    out = save_openclip_folder(teacher.model, tmp_path / "saved", preprocess_cfg={"resize_mode": "longest"})
    assert sorted(p.name for p in out.iterdir()) == ["open_clip_config.json", "open_clip_model.safetensors"]
    saved_cfg = json.loads((out / "open_clip_config.json").read_text())
    original_cfg = json.loads((folder / "open_clip_config.json").read_text())["model_cfg"]
    assert saved_cfg["preprocess_cfg"]["resize_mode"] == "longest"
    # open_clip's own class accepts the file with strict=True and computes the same function
    clip = oc_model.CLIP(**saved_cfg["model_cfg"]).eval()
    clip.load_state_dict(load_file(str(out / "open_clip_model.safetensors")), strict=True)
    assert set(clip.state_dict()) == set(ref.state_dict())
    for key, value in ref.state_dict().items():
        assert torch.equal(clip.state_dict()[key], value), key
    same_config = clip_config_from_openclip(saved_cfg["model_cfg"]).to_dict()
    assert same_config == clip_config_from_openclip(original_cfg).to_dict()
    assert_close_embeddings(reference_text_features(clip, TEXTS), teacher.encode_texts(TEXTS), TEXTS)
    # and birdbridge reads it back
    again = Teacher.from_folder(out, device="cpu")
    assert torch.equal(again.encode_texts(TEXTS), teacher.encode_texts(TEXTS))
    assert again.preprocessor.resize_mode == "longest"


def test_save_round_trip_quick_gelu_and_odd_shapes(tmp_path) -> None:
    ref = make_openclip_checkpoint(
        tmp_path / "src", quick_gelu=True, vision={"head_width": 16, "mlp_ratio": 2.0}, text={"heads": 4}
    )
    model, _, _ = load_openclip_folder(tmp_path / "src")
    save_openclip_folder(model, tmp_path / "out")
    cfg = json.loads((tmp_path / "out" / "open_clip_config.json").read_text())["model_cfg"]
    assert cfg["quick_gelu"] is True and cfg["vision_cfg"]["head_width"] == 16
    clip = oc_model.CLIP(**cfg).eval()
    clip.load_state_dict(load_file(str(tmp_path / "out" / "open_clip_model.safetensors")), strict=True)
    assert_close_embeddings(reference_text_features(clip, TEXTS), reference_text_features(ref, TEXTS), TEXTS)


def test_plain_hf_clip_folder(gelu_teacher, tmp_path) -> None:
    teacher, ref, _ = gelu_teacher
    folder = tmp_path / "hf"
    teacher.model.save_pretrained(folder)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(ASSETS_DIR / name, folder / name)
    hf = Teacher.from_folder(folder, device="cpu")
    assert hf.layout == "hf_clip" and hf.embed_dim == 48
    assert_close_embeddings(hf.encode_texts(TEXTS), reference_text_features(ref, TEXTS), TEXTS)
    pixels = torch.stack([reference_preprocess(IMAGES[k], size=64) for k in IMAGE_KINDS])
    assert_close_embeddings(hf.encode_images(pixels), reference_image_features(ref, pixels), IMAGE_KINDS)
    (folder / "vocab.json").unlink()
    (folder / "merges.txt").unlink()
    bundled = Teacher.from_folder(folder, device="cpu")  # no tokenizer files: the bundled CLIP BPE
    assert torch.equal(bundled.tokenize(TEXTS), hf.tokenize(TEXTS))


# ------------------------------------------------------------------------------------------------ errors


def _edit_config(folder: Path, edit) -> None:
    path = folder / "open_clip_config.json"
    cfg = json.loads(path.read_text())
    edit(cfg["model_cfg"])
    path.write_text(json.dumps(cfg))


@pytest.mark.parametrize(
    ("field", "edit"),
    [
        ("timm_model_name", lambda c: c["vision_cfg"].update(timm_model_name="vit_base_patch16_224")),
        ("hf_model_name", lambda c: c["text_cfg"].update(hf_model_name="roberta-base")),
        ("ls_init_value", lambda c: c["vision_cfg"].update(ls_init_value=1e-5)),
        ("attentional_pool", lambda c: c["vision_cfg"].update(attentional_pool=True)),
        ("pool_type", lambda c: c["vision_cfg"].update(pool_type="avg")),
        ("pool_type", lambda c: c["text_cfg"].update(pool_type="last")),
        ("proj_type", lambda c: c["text_cfg"].update(proj_type="none")),
        ("proj_bias", lambda c: c["text_cfg"].update(proj_bias=True)),
        ("no_causal_mask", lambda c: c["text_cfg"].update(no_causal_mask=True)),
        ("embed_cls", lambda c: c["text_cfg"].update(embed_cls=True)),
        ("qk_norm", lambda c: c["vision_cfg"].update(qk_norm=True)),
        ("scale_fc", lambda c: c["text_cfg"].update(scale_fc=True)),
        ("block_type", lambda c: c["text_cfg"].update(block_type="custom")),
        ("no_ln_pre", lambda c: c["vision_cfg"].update(no_ln_pre=True)),
        ("layers", lambda c: c["vision_cfg"].update(layers=[3, 4, 6, 3])),
        ("image_size", lambda c: c["vision_cfg"].update(image_size=[64, 96])),
        ("tokenizer_kwargs", lambda c: c["text_cfg"].update(tokenizer_kwargs={"clean": "canonicalize"})),
        ("hf_tokenizer_name", lambda c: c["text_cfg"].update(hf_tokenizer_name="bert-base-uncased")),
        ("multimodal_cfg", lambda c: c.update(multimodal_cfg={"width": 512})),
        ("init_logit_bias", lambda c: c.update(init_logit_bias=-10)),
        ("mystery_option", lambda c: c["text_cfg"].update(mystery_option=1)),
        ("embed_dim", lambda c: c.pop("embed_dim")),
    ],
)
def test_unsupported_configs_are_refused_clearly(checkpoints, tmp_path, field: str, edit) -> None:
    folder = tmp_path / "unsupported-model"
    shutil.copytree(checkpoints[False, "safetensors"][0], folder)
    _edit_config(folder, edit)
    with pytest.raises(ModelFormatError) as err:
        Teacher.from_folder(folder, device="cpu")
    message = str(err.value)
    assert "unsupported-model" in message and field in message, message


def _copy_with_weights(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    weights = dst / "open_clip_model.safetensors"
    state = load_file(str(weights))
    edit(state)
    save_file(state, str(weights))
    return weights


def test_missing_unexpected_and_misshapen_weights(checkpoints, tmp_path) -> None:
    src = checkpoints[False, "safetensors"][0]
    _copy_with_weights(src, tmp_path / "missing", lambda s: s.pop("visual.transformer.resblocks.1.attn.in_proj_bias"))
    key = r"visual\.transformer\.resblocks\.1\.attn\.in_proj_bias"
    with pytest.raises(ModelFormatError, match=rf"missing.*{key}") as err:
        Teacher.from_folder(tmp_path / "missing", device="cpu")
    assert "open_clip_model.safetensors" in str(err.value) and str(tmp_path / "missing") in str(err.value)

    _copy_with_weights(src, tmp_path / "extra", lambda s: s.update({"visual.attn_pool.query": torch.zeros(2, 2)}))
    with pytest.raises(ModelFormatError, match=r"unexpected.*visual\.attn_pool\.query"):
        Teacher.from_folder(tmp_path / "extra", device="cpu")

    _copy_with_weights(src, tmp_path / "shape", lambda s: s.update({"ln_final.weight": torch.ones(7)}))
    with pytest.raises(ModelFormatError, match=r"ln_final\.weight has shape \(7,\), expected \(32,\)"):
        Teacher.from_folder(tmp_path / "shape", device="cpu")


def test_wrapped_and_prefixed_bin_loads(checkpoints, tmp_path) -> None:
    """``{"state_dict": ...}`` wrappers and DataParallel ``module.`` prefixes, as open_clip accepts."""
    folder, ref = checkpoints[False, "safetensors"]
    shutil.copytree(folder, tmp_path / "wrapped")
    (tmp_path / "wrapped" / "open_clip_model.safetensors").unlink()
    state = {f"module.{k}": v for k, v in ref.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "wrapped" / "open_clip_pytorch_model.bin")
    teacher = Teacher.from_folder(tmp_path / "wrapped", device="cpu")
    assert_close_embeddings(teacher.encode_texts(TEXTS), reference_text_features(ref, TEXTS), TEXTS)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_corrupt_files_name_the_file(checkpoints, tmp_path) -> None:
    src = checkpoints[False, "safetensors"][0]
    shutil.copytree(src, tmp_path / "truncated")
    weights = tmp_path / "truncated" / "open_clip_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelFormatError, match=r"open_clip_model\.safetensors") as err:
        Teacher.from_folder(tmp_path / "truncated", device="cpu")
    assert "truncated" in str(err.value)

    shutil.copytree(checkpoints[False, "bin"][0], tmp_path / "garbage")
    (tmp_path / "garbage" / "open_clip_pytorch_model.bin").write_bytes(b"\x80\x04 this is not a checkpoint")
    with pytest.raises(ModelFormatError, match=r"open_clip_pytorch_model\.bin"):
        Teacher.from_folder(tmp_path / "garbage", device="cpu")

    shutil.copytree(src, tmp_path / "noweights")
    (tmp_path / "noweights" / "open_clip_model.safetensors").unlink()
    with pytest.raises(ModelFormatError, match=r"noweights.*no weights"):
        Teacher.from_folder(tmp_path / "noweights", device="cpu")

    shutil.copytree(src, tmp_path / "badjson")
    (tmp_path / "badjson" / "open_clip_config.json").write_text("{not json")
    with pytest.raises(ModelFormatError, match=r"badjson.*open_clip_config\.json"):
        Teacher.from_folder(tmp_path / "badjson", device="cpu")


def test_not_a_teacher_folder(tmp_path) -> None:
    with pytest.raises(ModelNotFoundError):
        Teacher.from_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFormatError, match="empty"):
        Teacher.from_folder(tmp_path / "empty")
    (tmp_path / "clap").mkdir()
    (tmp_path / "clap" / "config.json").write_text(json.dumps({"model_type": "clap"}))
    with pytest.raises(ModelFormatError, match="clap"):
        Teacher.from_folder(tmp_path / "clap")


# -------------------------------------------------------------------------------------------- full size

_SLOW_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    import torch
    from PIL import Image
    from birdbridge.models.loader import detect_layout, load_teacher
    from pathlib import Path
    folder, out = sys.argv[1], sys.argv[2]
    start = time.perf_counter()
    assert detect_layout(Path(folder)) == "open_clip"
    teacher = load_teacher(folder, device="cpu")  # through the registry's factory
    load_s = time.perf_counter() - start
    text = teacher.encode_texts([sys.argv[3]])
    image = teacher.encode_images(torch.load(sys.argv[4]))
    total_s = time.perf_counter() - start
    torch.save({"text": text, "image": image}, out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"load_s": load_s, "load_and_embed_s": total_s, "peak_rss_mib": peak}))
    """
)


@pytest.mark.slow
def test_full_size_bioclip2_architecture(tmp_path) -> None:
    """BioCLIP-2's architecture (open_clip ViT-L-14) with random weights, in the hub layout."""
    started = time.perf_counter()
    cfg = model_config("ViT-L-14")
    assert cfg["embed_dim"] == 768 and cfg["vision_cfg"]["width"] == 1024 and cfg["text_cfg"]["width"] == 768
    ref = build_openclip_model(cfg, seed=0)
    folder = tmp_path / "bioclip-2-arch"
    save_hub_layout(ref, cfg, folder)
    text = "Animalia Chordata Aves Passeriformes Corvidae Pica hudsonia with common name black-billed magpie"
    pixels = reference_preprocess(IMAGES["rgb"], size=224).unsqueeze(0)
    torch.save(pixels, tmp_path / "pixels.pt")
    ref_text = reference_text_features(ref, [text])
    ref_image = reference_image_features(ref, pixels)
    del ref  # free the reference before loading ours (in a child process, to measure its peak memory)
    built_s = time.perf_counter() - started
    size_gb = (folder / "open_clip_model.safetensors").stat().st_size / 1e9

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _SLOW_CHILD, str(folder), str(tmp_path / "out.pt"), text, str(tmp_path / "pixels.pt")],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    ours = torch.load(tmp_path / "out.pt")
    assert ours["text"].shape == (1, 768) and ours["image"].shape == (1, 768)
    assert_close_embeddings(ours["text"], ref_text, ["text"])
    assert_close_embeddings(ours["image"], ref_image, ["image"])
    print(
        f"\nViT-L/14 ({size_gb:.2f} GB safetensors): reference build+save {built_s:.1f} s; "
        f"Teacher.from_folder {stats['load_s']:.1f} s; load+embed {stats['load_and_embed_s']:.1f} s; "
        f"child peak RSS {stats['peak_rss_mib']:.0f} MiB"
    )
