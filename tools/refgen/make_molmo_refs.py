#!/usr/bin/env python3
"""Goldens for the original Molmo (`model_type = "molmo"`, allenai/Molmo-7B-D-0924), made by the
checkpoint's own remote code.

The remote code is *not* part of xlvlm: this script imports it at run time from the folder given
as `--remote-code DIR`. DIR must hold the unmodified files that ship with
https://huggingface.co/allenai/Molmo-7B-D-0924 : `modeling_molmo.py`, `config_molmo.py`,
`preprocessing_molmo.py`, `image_preprocessing_molmo.py` and `preprocessor_config.json` (the real
processor settings). The files use relative imports; the script loads DIR as a package of its own,
so DIR needs no `__init__.py`.

What it writes under `--out` (default `tests/fixtures/hf/molmo`):

* `tall_57x230.png`, `wide_700x410.png`: two deterministic synthetic images (numpy), next to the
  shared `tests/fixtures/hf/image.png` (90 x 60).
* `processor_golden.safetensors` + `processor_golden.json`, cases k = 0 (image.png), 1 (tall),
  2 (wide):
  - `real.k.*`: `MolmoImageProcessor(**preprocessor_config.json).preprocess(image_u8, 152066,
    152067, 152064, 152065)` with the real settings (336 px crops, patch 14, max_crops 12,
    overlap [4, 4], 12 x 12 tokens): `image_tokens` (i32), `image_input_idx` (i32
    `[crops, 144]`), `image_masks` (f32 `[crops, 576]`), `crop_sums` (f32 `[crops]`, the sum of
    each crop's normalised pixels, summed in f64), `pixels_strided` (f32, the flattened
    `[crops, 576, 588]` crops taken every 61st value, `flat[::61]`), `shape` (i64
    `[crops, 576, 588]`).
  - `tiny.k.*`: `MolmoProcessor(image_processor, tokenizer).process(PROMPT, images=[img], **tiny)`
    of the tiny fixture below: `input_ids` (i64), `images` (f32 `[crops, 64, 588]`),
    `image_input_idx` (i32 `[crops, 16]`), `image_masks` (f32 `[crops, 64]`). `process` applies
    its own `_defaults` (the 0924 values) over the image processor's attributes, so the tiny
    settings are passed as keyword arguments, as any caller of a non-default Molmo must.
* the tiny checkpoint: `config.json` (`model_type` molmo, plus the xlvlm extension keys
  `vision_backbone` and `vit_layers`, see `crates/model/MOLMO.md`), `model.safetensors` (names of
  `MolmoForCausalLM.state_dict()`), `generation_config.json`, tokenizer files,
  `preprocessor_config.json`, `processor_config.json`.
* `golden.safetensors` + `golden.json`: inputs (`input.*`, the tiny processor's output for
  image.png and PROMPT), `vision.layer_output.{i}` (every ViT block, class token included),
  `vision_backbone.image_features` (`[crops, 16, hidden]`, every pooled token of every crop),
  `image_features` (the used ones, in the order of their `<im_patch>` tokens), `text.hidden_states.{i}`,
  `text.layer_output.{i}`, `text.attn_output.{i}` (`attn_out`), `text.mlp_output.{i}` (`ff_out`),
  `logits`, `intervention.*` (as make_tiny_refs.py), `generate.*` and `generate_intervention.*`
  (20 greedy tokens by full forwards of the remote model, with every step's logits);
  `case.k.image_features` and `case.k.last_logits` for k = 1, 2 (the tall and wide images, which
  tile into several crops), whose inputs are the processor golden's `tiny.k.*`.

Environment used (`/work/venvs/molmo`): Python 3.11.7, transformers 4.55.0, torch 2.15.0 (CPU),
torchvision 0.29.2, tensorflow-cpu 2.21.0 (the processor resizes with `tf.image.resize`),
numpy 2.4.6, einops 0.8.2, tokenizers 0.21.4, safetensors 0.8.0, pillow 13.0.0.

Usage: python tools/refgen/make_molmo_refs.py --remote-code DIR [--out tests/fixtures/hf/molmo]
"""
import argparse
import importlib
import json
import os
import sys
import time
import types

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import transformers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_tiny_refs import PROMPT, Capture, Steer, bytelevel_tokenizer, perturb_all_params  # noqa: E402

SEED = 4321
# Molmo-7B-D-0924's image token ids (vocab_size 152064 + 0..3)
REAL_IDS = dict(image_patch_token_id=152066, image_col_token_id=152067, image_start_token_id=152064,
                image_end_token_id=152065)
IMAGE_TOKENS = ["<im_start>", "<im_end>", "<im_patch>", "<im_col>", "<|image|>"]
TINY_VOCAB = 384
TINY_IMAGE = dict(max_crops=4, overlap_margins=[2, 2], base_image_input_size=[112, 112],
                  image_token_length_w=4, image_token_length_h=4, image_patch_size=14,
                  image_padding_mask=True)
TINY_VISION = dict(image_default_input_size=[112, 112], image_patch_size=14, image_pos_patch_size=14,
                   image_emb_dim=32, image_num_heads=2, image_num_key_value_heads=2, image_num_layers=4,
                   image_head_dim=16, image_mlp_dim=64, image_mlp_activations="quick_gelu",
                   image_dropout_rate=0.0, image_num_pos=65, image_norm_eps=1e-5, attention_dropout=0.0,
                   residual_dropout=0.0, initializer_range=0.02)
TINY_VIT_LAYERS = [-2, -4]


def load_remote(folder):
    """The remote-code files of `folder` as the package `molmo_remote` (their relative imports
    need a package)."""
    folder = os.path.abspath(folder)
    for f in ("modeling_molmo.py", "config_molmo.py", "preprocessing_molmo.py", "image_preprocessing_molmo.py",
              "preprocessor_config.json"):
        if not os.path.isfile(os.path.join(folder, f)):
            sys.exit(f"--remote-code {folder}: {f} is missing (the files of allenai/Molmo-7B-D-0924)")
    pkg = types.ModuleType("molmo_remote")
    pkg.__path__ = [folder]
    sys.modules["molmo_remote"] = pkg
    return types.SimpleNamespace(
        modeling=importlib.import_module("molmo_remote.modeling_molmo"),
        config=importlib.import_module("molmo_remote.config_molmo"),
        processing=importlib.import_module("molmo_remote.preprocessing_molmo"),
        image=importlib.import_module("molmo_remote.image_preprocessing_molmo"),
        folder=folder,
    )


def synthetic_image(w, h, seed):
    """Gradients, stripes and a few rectangles: deterministic and uneven, so that resizing and
    cropping errors show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * x / max(w - 1, 1)
    g = 255 * y / max(h - 1, 1)
    b = 127 + 120 * np.sin(x / 7.0) * np.cos(y / 11.0)
    img = np.stack([r, g, b], -1)
    for _ in range(6):
        x0, y0 = rng.integers(0, w - 4), rng.integers(0, h - 4)
        x1, y1 = rng.integers(x0 + 2, min(w, x0 + w // 3 + 3)), rng.integers(y0 + 2, min(h, y0 + h // 3 + 3))
        img[y0:y1, x0:x1] = rng.integers(0, 256, 3)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def images(out, fixture_root):
    cases = [("image.png", np.asarray(Image.open(os.path.join(fixture_root, "image.png")).convert("RGB")))]
    for name, (w, h, seed) in [("tall_57x230.png", (57, 230, 1)), ("wide_700x410.png", (700, 410, 2))]:
        arr = synthetic_image(w, h, seed)
        Image.fromarray(arr, "RGB").save(os.path.join(out, name), optimize=True)
        # the PNG round trip is lossless; the goldens are made from the decoded file
        arr = np.asarray(Image.open(os.path.join(out, name)).convert("RGB"))
        cases.append((name, arr))
    return cases


def real_processor_goldens(remote, cases, golden, meta):
    cfg = json.load(open(os.path.join(remote.folder, "preprocessor_config.json")))
    ip = remote.image.MolmoImageProcessor(**cfg)
    for k, (name, arr) in enumerate(cases):
        crops, tokens, idx, masks = ip.preprocess(arr, **REAL_IDS)
        crops = np.asarray(crops, np.float32)
        golden[f"real.{k}.image_tokens"] = torch.from_numpy(np.asarray(tokens, np.int32))
        golden[f"real.{k}.image_input_idx"] = torch.from_numpy(np.asarray(idx, np.int32))
        golden[f"real.{k}.image_masks"] = torch.from_numpy(np.asarray(masks, np.float32))
        golden[f"real.{k}.crop_sums"] = torch.from_numpy(
            crops.astype(np.float64).reshape(crops.shape[0], -1).sum(1).astype(np.float32))
        golden[f"real.{k}.pixels_strided"] = torch.from_numpy(np.ascontiguousarray(crops.reshape(-1)[::61]))
        golden[f"real.{k}.shape"] = torch.tensor(crops.shape, dtype=torch.int64)
        meta[f"real.{k}"] = {"image": name, "height_width": list(arr.shape[:2]), "crops": list(crops.shape),
                             "image_tokens": int(len(tokens)), "patch_tokens": int((tokens == 152066).sum())}


def tiny_tokenizer():
    """Byte-level BPE whose base vocabulary is exactly TINY_VOCAB ids (`<|endoftext|>` = 0, the
    EOS and pad; no BOS), followed by the five image tokens at TINY_VOCAB + 0..4 as in the real
    checkpoint."""
    tok = bytelevel_tokenizer(TINY_VOCAB, [], eos="<|endoftext|>", pad="<|endoftext|>")
    if len(tok) != TINY_VOCAB:
        sys.exit(f"the tiny tokenizer trained to {len(tok)} ids, not {TINY_VOCAB}")
    tok.add_special_tokens({"additional_special_tokens": IMAGE_TOKENS})
    ids = tok.convert_tokens_to_ids(IMAGE_TOKENS)
    assert ids == list(range(TINY_VOCAB, TINY_VOCAB + 5)), ids
    return tok


def save_tokenizer(tok, out):
    tok.save_pretrained(out)
    # transformers 4.x loads the Qwen2 fast tokenizer from tokenizer.json alone, and the remote
    # processor insists on a Qwen2 tokenizer class
    path = os.path.join(out, "tokenizer_config.json")
    tc = json.load(open(path))
    tc["tokenizer_class"] = "Qwen2Tokenizer"
    tc.pop("auto_map", None)
    json.dump(tc, open(path, "w"), indent=2)


def tiny_processor(remote, out):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(out)
    assert type(tok).__name__ == "Qwen2TokenizerFast", type(tok).__name__
    cfg = json.load(open(os.path.join(out, "preprocessor_config.json")))
    ip = remote.image.MolmoImageProcessor(**cfg)
    return remote.processing.MolmoProcessor(image_processor=ip, tokenizer=tok)


def tiny_processor_goldens(proc, cases, golden, meta):
    for k, (name, arr) in enumerate(cases):
        o = proc.process(text=PROMPT, images=[Image.fromarray(arr, "RGB")], **TINY_IMAGE)
        golden[f"tiny.{k}.input_ids"] = o["input_ids"].to(torch.int64).contiguous()
        golden[f"tiny.{k}.images"] = o["images"].to(torch.float32).contiguous()
        golden[f"tiny.{k}.image_input_idx"] = o["image_input_idx"].to(torch.int32).contiguous()
        golden[f"tiny.{k}.image_masks"] = o["image_masks"].to(torch.float32).contiguous()
        meta[f"tiny.{k}"] = {"image": name, "input_ids": int(o["input_ids"].shape[0]),
                             "crops": list(o["images"].shape)}


def write_processor_goldens(out, golden, meta, remote):
    save_file(golden, os.path.join(out, "processor_golden.safetensors"),
              metadata={"transformers": transformers.__version__})
    doc = {
        "made_by": "tools/refgen/make_molmo_refs.py (remote code of allenai/Molmo-7B-D-0924)",
        "real": "MolmoImageProcessor(**preprocessor_config.json of the checkpoint).preprocess(image_u8, "
                + ", ".join(f"{k}={v}" for k, v in REAL_IDS.items()) + ")",
        "tiny": f"MolmoProcessor(tiny fixture).process({PROMPT!r}, images=[image], **{TINY_IMAGE})",
        "keys": {
            "real.k.image_tokens": "i32 [tokens]", "real.k.image_input_idx": "i32 [crops, 144]",
            "real.k.image_masks": "f32 [crops, 576]", "real.k.crop_sums": "f32 [crops], sum of each crop",
            "real.k.pixels_strided": "f32, crops.reshape(-1)[::61]", "real.k.shape": "i64 [crops, 576, 588]",
            "tiny.k.input_ids": "i64 [seq]", "tiny.k.images": "f32 [crops, 64, 588]",
            "tiny.k.image_input_idx": "i32 [crops, 16]", "tiny.k.image_masks": "f32 [crops, 64]",
        },
        "cases": meta,
        "versions": versions(),
    }
    json.dump(doc, open(os.path.join(out, "processor_golden.json"), "w"), indent=1)


def versions():
    import tensorflow as tf
    return {"python": sys.version.split()[0], "transformers": transformers.__version__, "torch": torch.__version__,
            "tensorflow": tf.__version__, "numpy": np.__version__}


def tiny_fixture_files(out):
    """Tokenizer, preprocessor and processor configs of the tiny fixture."""
    tok = tiny_tokenizer()
    save_tokenizer(tok, out)
    pre = {
        "auto_map": {"AutoImageProcessor": "image_preprocessing_molmo.MolmoImageProcessor",
                     "AutoProcessor": "preprocessing_molmo.MolmoProcessor"},
        "base_image_input_size": TINY_IMAGE["base_image_input_size"], "do_normalize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_padding_mask": True,
        "image_patch_size": TINY_IMAGE["image_patch_size"], "image_processor_type": "MolmoImageProcessor",
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_token_length_h": TINY_IMAGE["image_token_length_h"],
        "image_token_length_w": TINY_IMAGE["image_token_length_w"], "max_crops": TINY_IMAGE["max_crops"],
        "overlap_margins": TINY_IMAGE["overlap_margins"], "processor_class": "MolmoProcessor",
    }
    json.dump(pre, open(os.path.join(out, "preprocessor_config.json"), "w"), indent=2)
    json.dump({"auto_map": {"AutoProcessor": "preprocessing_molmo.MolmoProcessor"}, "processor_class": "MolmoProcessor"},
              open(os.path.join(out, "processor_config.json"), "w"), indent=2)
    return tok


def tiny_hf_config(remote):
    """The flat `MolmoConfig` of the tiny checkpoint (Molmo-7B-D-0924's keys, tiny values)."""
    return remote.config.MolmoConfig(
        vocab_size=TINY_VOCAB, embedding_size=TINY_VOCAB, hidden_size=64, intermediate_size=256,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        initializer_range=0.02, use_cache=True, layer_norm_eps=1e-6, rope_theta=1000000.0, clip_qkv=None,
        qkv_bias=True, weight_tying=False, use_position_ids=True, tie_word_embeddings=False,
        attention_layer_norm=False, norm_after=False, layer_norm_type="rms",
        architectures=["MolmoForCausalLM"], eos_token_id=0, pad_token_id=0)


def tiny_model(remote, config):
    """`MolmoForCausalLM` with the `FullMolmoConfig` its `__init__` builds from `config`, except
    for the vision side (which `__init__` fixes to the 7B CLIP ViT): TINY_VISION and
    TINY_VIT_LAYERS."""
    m = remote.modeling
    full = m.FullMolmoConfig(
        image_padding_embed="pad_and_partial_pad",
        image_pooling_2d="attention-meanq",
        attention_layer_norm=config.attention_layer_norm,
        rope_impl="llama",
        vocab_size=config.vocab_size,
        max_sequence_length=config.max_position_embeddings,
        qkv_bias=config.qkv_bias,
        norm_after=config.norm_after,
        embedding_size=config.embedding_size,
        attention_type="sdpa",
        embedding_dropout=0,
        attention_dropout=0,
        residual_dropout=0,
        rope=True,
        weight_tying=False,
        include_bias=False,
        d_model=config.hidden_size,
        mlp_hidden_size=config.intermediate_size,
        n_layers=config.num_hidden_layers,
        additional_vocab_size=128,
        n_heads=config.num_attention_heads,
        n_kv_heads=config.num_key_value_heads,
        rope_theta=config.rope_theta,
        layer_norm_eps=config.layer_norm_eps,
        layer_norm_type=config.layer_norm_type,
        vit_layers=list(TINY_VIT_LAYERS),
        vision_backbone=m.VisionBackboneConfig(**TINY_VISION),
    )
    torch.manual_seed(SEED)
    inner = m.Molmo(full)
    # (`Molmo.reset_parameters` fails on its RMS norms; the parts that work are used)
    inner.vision_backbone.reset_parameters()
    inner.transformer.wte.reset_parameters()
    model = m.MolmoForCausalLM(config, model=inner).to(torch.float32).eval()
    # every weight, bias, norm and pad_embed away from 0 and 1, so a missing or misplaced one shows
    perturb_all_params(model, SEED + 1)
    return model


def save_tiny_model(model, out):
    model.save_pretrained(out, safe_serialization=True)
    # save_pretrained copies the remote code next to the weights; xlvlm does not ship it
    for fn in os.listdir(out):
        if fn.endswith(".py"):
            os.remove(os.path.join(out, fn))
    path = os.path.join(out, "config.json")
    cfg = json.load(open(path))
    cfg.pop("auto_map", None)
    # xlvlm extension: the remote code fixes the vision side to the 7B ViT, so a tiny one is
    # described here (VisionBackboneConfig's field names) for xlvlm to read
    cfg["vision_backbone"] = dict(TINY_VISION)
    cfg["vit_layers"] = list(TINY_VIT_LAYERS)
    json.dump(cfg, open(path, "w"), indent=2, sort_keys=True)


def model_inputs(proc, image):
    o = proc.process(text=PROMPT, images=[Image.fromarray(image, "RGB")], **TINY_IMAGE)
    return {
        "input_ids": o["input_ids"].to(torch.int64)[None],
        "images": o["images"].to(torch.float32)[None],
        "image_input_idx": o["image_input_idx"].to(torch.int64)[None],
        "image_masks": o["image_masks"].to(torch.float32)[None],
    }


def greedy(model, inputs, steps=20):
    """Greedy decoding by full forwards of the remote model (the image features are added at the
    same positions, the new tokens follow); every step's last-position logits."""
    ids, logits = inputs["input_ids"], []
    for _ in range(steps):
        with torch.no_grad():
            o = model(**dict(inputs, input_ids=ids), use_cache=False, return_dict=True)
        last = o.logits[:, -1]
        logits.append(last)
        ids = torch.cat([ids, last.argmax(-1, keepdim=True)], 1)
    return ids[:, inputs["input_ids"].shape[1]:].contiguous(), torch.stack(logits, 1).contiguous()


def model_goldens(model, inputs):
    inner = model.model
    blocks = inner.transformer.blocks
    cap = Capture()
    cap.add("vision.layer_output", inner.vision_backbone.image_vit.transformer.resblocks)
    cap.add("text.layer_output", blocks)
    cap.add("text.attn_output", [b.attn_out for b in blocks])
    cap.add("text.mlp_output", [b.ff_out for b in blocks])
    cap.add("vision_backbone", [inner.vision_backbone])
    with torch.no_grad():
        out = model(**inputs, use_cache=False, output_hidden_states=True, return_dict=True)
    cap.remove()
    golden = {f"input.{k}": v.contiguous() for k, v in inputs.items()}
    golden["input.attention_mask"] = torch.ones_like(inputs["input_ids"])
    for i, h in enumerate(out.hidden_states):
        golden[f"text.hidden_states.{i}"] = h.contiguous()
    for k, v in cap.store.items():
        if k != "vision_backbone.0":
            golden[k] = v.contiguous()
    # the connector's output for every token of every crop, and the used ones in the order of
    # their <im_patch> tokens (what is added to the embeddings)
    feats = cap.store["vision_backbone.0"][0]
    golden["vision_backbone.image_features"] = feats.contiguous()
    golden["image_features"] = used_features(feats, inputs["image_input_idx"][0])
    golden["logits"] = out.logits.contiguous()

    hidden = model.config.hidden_size
    g = torch.Generator().manual_seed(SEED + 7)
    v = torch.randn(hidden, generator=g, dtype=torch.float32)
    alpha, layer = 2.5, 1
    golden["intervention.vector"] = v.contiguous()
    golden["intervention.alpha"] = torch.tensor([alpha], dtype=torch.float32)
    golden["intervention.layer"] = torch.tensor([layer], dtype=torch.int64)
    for mode in ("add", "projected"):
        st = Steer(blocks[layer], v, alpha, mode)
        with torch.no_grad():
            o = model(**inputs, use_cache=False, return_dict=True)
        st.remove()
        golden[f"intervention.{mode}.logits"] = o.logits.contiguous()
    golden["generate.output_ids"], golden["generate.logits"] = greedy(model, inputs)
    st = Steer(blocks[layer], v, alpha, "add")
    golden["generate_intervention.output_ids"], golden["generate_intervention.logits"] = greedy(model, inputs)
    st.remove()
    return golden


def used_features(features, image_input_idx):
    """The pooled tokens of `features` (`[crops, tokens, hidden]`) that `image_input_idx` places,
    in the order of their positions in the sequence."""
    idx = image_input_idx.reshape(-1)
    flat = features.reshape(-1, features.shape[-1])
    order = torch.argsort(torch.where(idx >= 0, idx, idx.max() + 1))[: int((idx >= 0).sum())]
    return flat[order].contiguous()


def multi_crop_goldens(model, inputs, processor_golden, k, golden):
    """Images that tile into several crops (unused pooled tokens, overlap margins): the
    connector output and the last position's logits for the inputs of the processor golden
    `tiny.k.*` (the Rust tests read the inputs from there)."""
    assert torch.equal(inputs["input_ids"][0], processor_golden[f"tiny.{k}.input_ids"])
    assert torch.equal(inputs["images"][0], processor_golden[f"tiny.{k}.images"])
    cap = Capture()
    cap.add("vision_backbone", [model.model.vision_backbone])
    with torch.no_grad():
        out = model(**inputs, use_cache=False, return_dict=True)
    cap.remove()
    golden[f"case.{k}.image_features"] = used_features(cap.store["vision_backbone.0"][0],
                                                       inputs["image_input_idx"][0])
    golden[f"case.{k}.last_logits"] = out.logits[0, -1].contiguous()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--remote-code", required=True, help="folder with the remote-code files of Molmo-7B-D-0924")
    ap.add_argument("--out", default="tests/fixtures/hf/molmo")
    ap.add_argument("--processor-only", action="store_true",
                    help="only the tokenizer, the processor configs and the processor goldens")
    a = ap.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    torch.use_deterministic_algorithms(True)
    remote = load_remote(a.remote_code)
    os.makedirs(a.out, exist_ok=True)
    cases = images(a.out, os.path.dirname(os.path.abspath(a.out)))
    golden, meta = {}, {}
    real_processor_goldens(remote, cases, golden, meta)
    tiny_fixture_files(a.out)
    proc = tiny_processor(remote, a.out)
    tiny_processor_goldens(proc, cases, golden, meta)
    write_processor_goldens(a.out, golden, meta, remote)
    print("processor goldens:", {k: meta[k] for k in sorted(meta)}, flush=True)
    if a.processor_only:
        return 0

    t0 = time.time()
    config = tiny_hf_config(remote)
    model = tiny_model(remote, config)
    save_tiny_model(model, a.out)
    # reload from the saved files, as a user of the checkpoint would
    reloaded = tiny_model(remote, remote.config.MolmoConfig.from_pretrained(a.out))
    from safetensors.torch import load_file
    saved = load_file(os.path.join(a.out, "model.safetensors"))
    missing = set(reloaded.state_dict()) ^ set(saved)
    assert not missing, missing
    reloaded.load_state_dict(saved)
    inputs = model_inputs(proc, cases[0][1])
    assert torch.equal(inputs["input_ids"][0], golden["tiny.0.input_ids"])
    mg = model_goldens(reloaded, inputs)
    for k in (1, 2):
        multi_crop_goldens(reloaded, model_inputs(proc, cases[k][1]), golden, k, mg)
    save_file(mg, os.path.join(a.out, "golden.safetensors"),
              metadata={"model": "molmo", "seed": str(SEED), "dtype": "float32",
                        "transformers": transformers.__version__})
    tok = proc.tokenizer
    rec = {
        "class": "MolmoForCausalLM (remote code of allenai/Molmo-7B-D-0924)",
        "n_params": sum(p.numel() for p in reloaded.parameters()),
        "image": cases[0][0],
        "prompt": PROMPT,
        "processor_kwargs": TINY_IMAGE,
        "n_image_patch_tokens": int((inputs["input_ids"] == tok.convert_tokens_to_ids("<im_patch>")).sum()),
        "golden": {k: list(v.shape) for k, v in mg.items()},
        "generated_text": tok.decode(mg["generate.output_ids"][0]),
        "saved_keys": {k: list(v.shape) for k, v in saved.items()},
        "files": {fn: os.path.getsize(os.path.join(a.out, fn)) for fn in sorted(os.listdir(a.out))},
        "versions": versions(),
        "seconds": round(time.time() - t0, 2),
    }
    json.dump(rec, open(os.path.join(a.out, "golden.json"), "w"), indent=1)
    print(f"model goldens: params={rec['n_params']} tokens={inputs['input_ids'].shape[1]} "
          f"gen={mg['generate.output_ids'].tolist()} t={rec['seconds']}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
