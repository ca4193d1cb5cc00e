#!/usr/bin/env python3
"""Build tiny, randomly initialised Hugging Face VLM checkpoints fully offline and
dump golden reference activations for them.

No network access is needed: configs, tokenizers (trained here with `tokenizers`),
image processors (explicit args) and weights (random, fixed seed) are all created
locally.  Output layout, one directory per model:

    OUT/<name>/config.json, generation_config.json     (save_pretrained, transformers-5 layout)
    OUT/<name>/model.safetensors                       (save_pretrained; transformers-5 tensor naming)
    OUT/<name>/tokenizer.json, tokenizer_config.json   (tokenizer trained here with `tokenizers`)
    OUT/<name>/processor_config.json, chat_template.jinja
    OUT/<name>/hub_format/                             (same tensors renamed/re-split to the Hub layout +
                                                        4.x-style config.json; verified to give
                                                        bit-identical outputs in transformers)
    OUT/<name>/golden.safetensors                      (inputs + every hidden state, see below)
    OUT/idefics2/golden_split.safetensors, image_40x100.png  (do_image_splitting=True, see idefics2_split_goldens)
    OUT/<name>/golden.json                             (prompt text, shapes, key lists, versions, timings)
    OUT/image.png                                      (the synthetic input image)

golden.safetensors keys:
    input.input_ids, input.attention_mask, input.pixel_values, (input.image_grid_thw,
    input.pixel_attention_mask, ...)  -- exactly what the HF processor produced
    text.hidden_states.{i}  i = 0..L   -- `output_hidden_states=True` of the LM
                                         (0 = input embeddings after image merge, L = after final norm)
    text.layer_output.{i}   i = 0..L-1 -- raw decoder-layer outputs captured with hooks (pre-final-norm)
    vision.layer_output.{i}            -- raw vision encoder layer outputs (hooks)
    image_features                     -- projector/connector output that replaces the image tokens
    logits
    text.attn_output.{i}, text.mlp_output.{i} -- self-attention / MLP outputs of decoder layer i (hooks)
    intervention.{add,projected}.logits      -- forward with a hook on decoder layer
                                                `intervention.layer` that replaces its output h by
                                                h + alpha*v (add) or h - (h.u)u + alpha*u, u = v/|v|
                                                (projected), at every position
    intervention.vector, intervention.alpha, intervention.layer
    generate.output_ids                      -- generate(do_sample=False, max_new_tokens=20)
    generate_intervention.output_ids         -- the same with the additive hook registered
    generate_batch.{input_ids,attention_mask,output_ids}  (text models: two prompts, left padding)

Text-only models (llama, qwen2, mistral) are written by AutoModelForCausalLM; qwen2 is saved sharded
(model.safetensors.index.json) and llama has tied embeddings plus a bfloat16 copy in `bf16/`.

Usage:  python make_tiny_refs.py --out tests/fixtures/hf [--models llava,llama,qwen2,qwen2_vl,idefics2,idefics3,smolvlm,molmo2]
        [--dtype float32|bfloat16]        (~30 s on 2 cores; needs torch, torchvision, transformers 5.24, num2words)
"""
import argparse
import json
import os
import re
import shutil
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

T_START = time.time()
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402

import transformers  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

T_IMPORT = time.time() - T_START
SEED = 1234
DTYPE = torch.float32

CORPUS = [
    "A photo of a cat sitting on a red sofa next to a window.",
    "Two dogs are playing with a ball in the green park.",
    "What is shown in this image? Describe it in detail.",
    "The quick brown fox jumps over the lazy dog.",
    "A man riding a bicycle down a busy city street at night.",
    "How many people are in the picture? Answer with a number.",
    "There is a small boat on the lake under a blue sky.",
    "A plate with pizza, salad and a glass of water on a wooden table.",
    "Is the traffic light red or green? Yes, no, 1, 2, 3, 42, 2024.",
    "user assistant system image picture describe answer question",
    "Ünïcödé tèxt, emojis 🙂 and CJK 猫 should byte-fallback.",
]

PROMPT = "What is shown in this image? Describe the colors."


# --------------------------------------------------------------------------------------
# tokenizers
# --------------------------------------------------------------------------------------
def spm_like_tokenizer(vocab_size, specials, bos="<s>", eos="</s>", unk="<unk>", add_bos=True):
    """Llama-2 / Mistral style: BPE with byte fallback on '▁'-marked words."""
    tok = Tokenizer(models.BPE(unk_token=unk, byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    tok.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    base = [unk, bos, eos] + [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=base, show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    tok.add_special_tokens(specials)
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, unk_token=unk, pad_token=unk,
        extra_special_tokens={}, clean_up_tokenization_spaces=False,
    )
    return fast


QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def bytelevel_tokenizer(vocab_size, specials, eos, pad, bos=None):
    """Qwen2 / SmolLM (GPT-2 family) style byte-level BPE, no BOS added."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[eos] + ([bos] if bos else []), show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.add_special_tokens([s for s in specials if s not in (eos, bos)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=eos, pad_token=pad, bos_token=bos, unk_token=None,
        extra_special_tokens={}, clean_up_tokenization_spaces=False,
    )
    return fast


def padded_vocab(tok, multiple=64):
    n = len(tok)
    return ((n + multiple - 1) // multiple) * multiple


# --------------------------------------------------------------------------------------
# synthetic image
# --------------------------------------------------------------------------------------
def make_image(w=90, h=60):
    """Deterministic, non-square RGB image with gradients and shapes (no external data)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = (255 * x / (w - 1)).astype(np.uint8)
    g = (255 * y / (h - 1)).astype(np.uint8)
    b = (127 + 127 * np.sin(x / 5.0) * np.cos(y / 7.0)).astype(np.uint8)
    img = Image.fromarray(np.stack([r, g, b], -1), "RGB")
    d = ImageDraw.Draw(img)
    d.rectangle([10, 10, 35, 30], fill=(255, 0, 0))
    d.ellipse([50, 20, 80, 50], fill=(0, 0, 255), outline=(255, 255, 255))
    d.line([0, h - 1, w - 1, 0], fill=(0, 0, 0), width=2)
    return img


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def perturb_all_params(model, seed):
    """Random init leaves LayerNorm weight=1/bias=0 and some biases 0.  Make every tensor
    non-trivial so that a wrong norm (1+w vs w), a missing bias or a transposed matrix is
    detected by the comparison."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype)
            if p.ndim == 1 and ("norm" in name or "ln" in name.split(".")[-2]) and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * noise)
            elif p.ndim == 1:
                p.copy_(0.05 * noise)
            else:
                std = float(p.float().std()) if p.numel() > 1 else 0.02
                p.add_(0.5 * max(std, 0.02) * noise)


def tensors_in(path):
    out = {}
    with safe_open(path, "pt") as f:
        for k in f.keys():
            t = f.get_tensor(k)
            out[k] = {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")}
    return out


class Capture:
    """Forward hooks on a list of modules; stores output[0] (or output)."""

    def __init__(self):
        self.store = {}
        self.handles = []

    def add(self, prefix, modules):
        for i, m in enumerate(modules):
            def hook(_m, _inp, out, key=f"{prefix}.{i}"):
                o = out[0] if isinstance(out, (tuple, list)) else out
                if hasattr(o, "last_hidden_state"):
                    o = o.last_hidden_state
                self.store[key] = o.detach().clone()
            self.handles.append(m.register_forward_hook(hook))

    def remove(self):
        for h in self.handles:
            h.remove()


def flat_inputs(inputs):
    out = {}
    for k, v in inputs.items():
        if isinstance(v, torch.Tensor):
            out[f"input.{k}"] = v.contiguous()
    return out


def max_abs(a, b):
    return float((a.float() - b.float()).abs().max())


# --------------------------------------------------------------------------------------
# model builders: each returns (model, processor, meta)
# --------------------------------------------------------------------------------------
LLAVA_TEMPLATE = (  # llava-hf/llava-1.5-7b-hf chat_template.json
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

QWEN2VL_TEMPLATE = (  # Qwen/Qwen2-VL-2B-Instruct
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content"
    " or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' "
    "or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}"
    "{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)

IDEFICS2_TEMPLATE = (  # HuggingFaceM4/idefics2-8b
    "{% for message in messages %}{{message['role'].capitalize()}}{% if message['content'][0]['type'] == 'image' %}"
    "{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}"
    "{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
SMOLVLM_TEMPLATE = "<|im_start|>" + IDEFICS2_TEMPLATE  # HuggingFaceTB/SmolVLM-*-Instruct style


def build_llava():
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)
    tok = spm_like_tokenizer(400, ["<image>"])
    vocab = padded_vocab(tok)
    image_size, patch = 56, 14
    vc = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                          image_size=image_size, patch_size=patch, projection_dim=32, hidden_act="quick_gelu")
    tc = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=4, vocab_size=vocab, max_position_embeddings=256, rms_norm_eps=1e-5,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    cfg = LlavaConfig(vision_config=vc, text_config=tc, image_token_id=tok.convert_tokens_to_ids("<image>"),
                      vision_feature_layer=-2, vision_feature_select_strategy="default",
                      projector_hidden_act="gelu", image_seq_length=(image_size // patch) ** 2,
                      pad_token_id=tok.pad_token_id)
    model = LlavaForConditionalGeneration(cfg)
    ip = CLIPImageProcessor(  # llava-1.5 preprocessor_config.json, sizes shrunk 336 -> 56
        do_resize=True, size={"shortest_edge": image_size}, resample=3, do_center_crop=True,
        crop_size={"height": image_size, "width": image_size}, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711], do_convert_rgb=True)
    proc = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=patch,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=LLAVA_TEMPLATE)
    hooks = lambda m: {"vision.layer_output": m.model.vision_tower.encoder.layers,
                       "text.layer_output": m.model.language_model.layers}
    return model, proc, hooks


def build_qwen2_vl():
    from transformers import (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor,
                              Qwen2VLProcessor, Qwen2VLVideoProcessor)
    specials = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
                "<|image_pad|>", "<|video_pad|>"]
    tok = bytelevel_tokenizer(400, specials, eos="<|endoftext|>", pad="<|endoftext|>")
    vocab = padded_vocab(tok)
    ids = {s: tok.convert_tokens_to_ids(s) for s in specials}
    cfg = Qwen2VLConfig(
        vision_config=dict(depth=2, embed_dim=64, hidden_size=64, num_heads=4, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, in_channels=3, hidden_act="quick_gelu"),
        text_config=dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                                             "mrope_section": [2, 3, 3]},
                         bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         tie_word_embeddings=True),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True)  # Qwen2-VL-2B ties lm_head to embed_tokens
    model = Qwen2VLForConditionalGeneration(cfg)
    kw = dict(patch_size=14, temporal_patch_size=2, merge_size=2, min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16,
              image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
              resample=3, do_rescale=True, rescale_factor=1 / 255, do_normalize=True, do_convert_rgb=True)
    ip = Qwen2VLImageProcessor(**kw)
    vp = Qwen2VLVideoProcessor(**kw)
    proc = Qwen2VLProcessor(image_processor=ip, tokenizer=tok, video_processor=vp, chat_template=QWEN2VL_TEMPLATE)
    hooks = lambda m: {"vision.layer_output": m.model.visual.blocks,
                       "text.layer_output": m.model.language_model.layers}
    return model, proc, hooks


def build_idefics2():
    from transformers import (Idefics2Config, Idefics2ForConditionalGeneration, Idefics2ImageProcessor,
                              Idefics2Processor)
    specials = ["<fake_token_around_image>", "<image>", "<end_of_utterance>"]
    tok = spm_like_tokenizer(400, specials)
    vocab = padded_vocab(tok)
    n_latents = 8
    cfg = Idefics2Config(
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           image_size=56, patch_size=14, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6),
        perceiver_config=dict(hidden_size=64, resampler_n_latents=n_latents, resampler_depth=2, resampler_n_heads=4,
                              resampler_head_dim=16, num_key_value_heads=2, rms_norm_eps=1e-5, hidden_act="silu"),
        text_config=dict(model_type="mistral", vocab_size=vocab, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                         max_position_embeddings=512, sliding_window=None, pad_token_id=tok.pad_token_id,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id),
        image_token_id=tok.convert_tokens_to_ids("<image>"), tie_word_embeddings=False)
    model = Idefics2ForConditionalGeneration(cfg)
    ip = Idefics2ImageProcessor(do_convert_rgb=True, do_resize=True, size={"shortest_edge": 28, "longest_edge": 56},
                                resample=2, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                                image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_pad=True,
                                do_image_splitting=False)
    proc = Idefics2Processor(image_processor=ip, tokenizer=tok, image_seq_len=n_latents,
                             chat_template=IDEFICS2_TEMPLATE)
    hooks = lambda m: {"vision.layer_output": m.model.vision_model.encoder.layers,
                       "connector.perceiver_layer_output": m.model.connector.perceiver_resampler.layers,
                       "text.layer_output": m.model.text_model.layers}
    return model, proc, hooks


def _idefics3_like(kind):
    import transformers as T
    specials = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"] + [
        f"<row_{r}_col_{c}>" for r in range(1, 4) for c in range(1, 4)]
    if kind == "idefics3":
        # the template carries the BOS literally (as the real Idefics3 template does), so the
        # tokenizer must not add another one
        tok = spm_like_tokenizer(400, specials + ["<|begin_of_text|>"], add_bos=False)
        template = "<|begin_of_text|>" + IDEFICS2_TEMPLATE
    else:
        specials = ["<|im_start|>"] + specials
        tok = bytelevel_tokenizer(400, specials, eos="<end_of_utterance>", pad="<|im_end|>", bos="<|im_start|>")
        template = SMOLVLM_TEMPLATE
    vocab = padded_vocab(tok)
    img, patch, scale = 56, 14, 2
    seq = (img // patch) ** 2 // scale ** 2
    Cfg = T.Idefics3Config if kind == "idefics3" else T.SmolVLMConfig
    Model = T.Idefics3ForConditionalGeneration if kind == "idefics3" else T.SmolVLMForConditionalGeneration
    cfg = Cfg(
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           image_size=img, patch_size=patch, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6),
        text_config=dict(model_type="llama", vocab_size=vocab, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                         max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=False),
        image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=scale, tie_word_embeddings=False)
    model = Model(cfg)
    ipkw = dict(do_convert_rgb=True, do_resize=True, size={"longest_edge": 2 * img}, resample=1,
                do_image_splitting=True, max_image_size={"longest_edge": img}, do_rescale=True,
                rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
                do_pad=True)
    if kind == "idefics3":
        ip = T.Idefics3ImageProcessor(**ipkw)
        proc = T.Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=seq, chat_template=template)
    else:
        ip = T.SmolVLMImageProcessor(**ipkw)
        vp = T.SmolVLMVideoProcessor(do_resize=True, size={"longest_edge": 2 * img},
                                     max_image_size={"longest_edge": img}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
        proc = T.SmolVLMProcessor(image_processor=ip, tokenizer=tok, video_processor=vp, image_seq_len=seq,
                                  chat_template=template)
    hooks = lambda m: {"vision.layer_output": m.model.vision_model.encoder.layers,
                       "text.layer_output": m.model.text_model.layers}
    return model, proc, hooks


def build_idefics3():
    return _idefics3_like("idefics3")


def build_smolvlm():
    return _idefics3_like("smolvlm")


MOLMO2_TEMPLATE = (  # NOT the real allenai template (unknown offline); a minimal ChatML-like stand-in
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|image|>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_molmo2():
    """Molmo2 (native in transformers 5.x).  The original Molmo-7B-D-0924 is remote code only."""
    import transformers as T
    im_specials = ["<im_start>", "<im_end>", "<im_patch>", "<im_col>", "<low_res_im_start>", "<frame_start>",
                   "<frame_end>", "<im_low>", "<|image|>", "<|video|>"]
    tok = bytelevel_tokenizer(400, ["<|im_start|>", "<|im_end|>"], eos="<|endoftext|>", pad="<|endoftext|>")
    base_vocab = len(tok)  # special image tokens go to the "additional vocab" rows, as in the real model
    tok.add_special_tokens({"additional_special_tokens": im_specials})
    tok.image_token, tok.video_token = "<|image|>", "<|video|>"
    ids = {s: tok.convert_tokens_to_ids(s) for s in im_specials}
    crop, patch = 56, 14
    cfg = T.Molmo2Config(
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                           num_key_value_heads=4, head_dim=16, image_size=[crop, crop], patch_size=patch),
        adapter_config=dict(vision_feature_layer=[-1, -3], hidden_size=64, num_attention_heads=4,
                            num_key_value_heads=4, head_dim=16, intermediate_size=128, text_hidden_size=64),
        text_config=dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                         vocab_size=base_vocab, additional_vocab_size=len(tok) - base_vocab + 2,
                         num_hidden_layers=2, intermediate_size=128, max_position_embeddings=1024,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
        image_start_token_id=ids["<im_start>"], low_res_image_start_token_id=ids["<low_res_im_start>"],
        image_end_token_id=ids["<im_end>"], image_patch_id=ids["<im_patch>"],
        frame_start_token_id=ids["<frame_start>"], frame_end_token_id=ids["<frame_end>"])
    model = T.Molmo2ForConditionalGeneration(cfg)
    ip = T.Molmo2ImageProcessor(size={"height": crop, "width": crop}, max_crops=4, overlap_margins=[1, 1],
                                patch_size=patch, pooling_size=[2, 2], resample=2, do_rescale=True,
                                rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    vp = T.Molmo2VideoProcessor(size={"height": crop, "width": crop}, patch_size=patch, pooling_size=[2, 2])
    proc = T.Molmo2Processor(image_processor=ip, video_processor=vp, tokenizer=tok, chat_template=MOLMO2_TEMPLATE)
    hooks = lambda m: {"vision.layer_output": m.model.vision_tower.layers,
                       "text.layer_output": m.model.language_model.layers}
    return model, proc, hooks


LLAMA2_TEMPLATE = (  # Llama-2-chat style, without a system prompt
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] "
    "+ ' [/INST]' }}{% else %}{{ ' ' + message['content'] + eos_token }}{% endif %}{% endfor %}"
)
CHATML_TEMPLATE = (  # Qwen2-Instruct style
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_llama():
    """Plain Llama text LM: GQA (4 query / 2 key-value heads), tied embeddings, rope_theta 10000."""
    from transformers import LlamaConfig, LlamaForCausalLM
    tok = spm_like_tokenizer(400, [])
    tok.chat_template = LLAMA2_TEMPLATE
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=padded_vocab(tok), max_position_embeddings=256,
                      rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg)
    hooks = lambda m: {"text.layer_output": m.model.layers}
    return model, tok, hooks


def build_qwen2():
    """Qwen2 text LM: q/k/v biases, GQA (4/2), rope_theta 1e6, untied lm_head."""
    from transformers import Qwen2Config, Qwen2ForCausalLM
    tok = bytelevel_tokenizer(400, ["<|im_start|>", "<|im_end|>"], eos="<|im_end|>", pad="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": ["<|endoftext|>"]})
    tok.chat_template = CHATML_TEMPLATE
    cfg = Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=padded_vocab(tok), max_position_embeddings=512,
                      rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                      tie_word_embeddings=False, bos_token_id=None, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    model = Qwen2ForCausalLM(cfg)
    hooks = lambda m: {"text.layer_output": m.model.layers}
    return model, tok, hooks


def build_mistral():
    """Mistral text LM: GQA (4/2) with a sliding window (8) shorter than the prompt, so the
    window mask matters."""
    from transformers import MistralConfig, MistralForCausalLM
    tok = spm_like_tokenizer(400, [])
    tok.chat_template = LLAMA2_TEMPLATE
    cfg = MistralConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, vocab_size=padded_vocab(tok), max_position_embeddings=256,
                        rms_norm_eps=1e-5, sliding_window=8, tie_word_embeddings=False,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = MistralForCausalLM(cfg)
    hooks = lambda m: {"text.layer_output": m.model.layers}
    return model, tok, hooks


TEXT_MODELS = ("llama", "qwen2", "mistral")

BUILDERS = {"llava": build_llava, "llama": build_llama, "qwen2": build_qwen2, "mistral": build_mistral, "qwen2_vl": build_qwen2_vl, "idefics2": build_idefics2,
            "idefics3": build_idefics3, "smolvlm": build_smolvlm, "molmo2": build_molmo2}


# --------------------------------------------------------------------------------------
# hub-format copy (what the real checkpoints on the Hub look like)
# --------------------------------------------------------------------------------------
def to_hub_tensors(name, tensors, cfg):
    """transformers 5 `save_pretrained` reverts its internal renames, except where it can't:
    * LLaVA: a model built from scratch is saved without the `vision_model.` level of
      CLIPVisionModel, while llava-hf/llava-1.5-*-hf stores `vision_tower.vision_model.*`.
    * Molmo2: the embedding is saved as two *equal halves* `wte.embedding`/`wte.new_embedding`
      (reverse of a Concatenate), whereas the real files split at `text_config.vocab_size`."""
    out = {}
    for k, t in tensors.items():
        h = k
        if name == "llava" and k.startswith("vision_tower.") and not k.startswith("vision_tower.vision_model."):
            h = "vision_tower.vision_model." + k[len("vision_tower."):]
        out[h] = t
    if name == "molmo2":
        full = torch.cat([out.pop("model.transformer.wte.embedding"), out.pop("model.transformer.wte.new_embedding")])
        v = cfg["text_config"]["vocab_size"]
        out["model.transformer.wte.embedding"] = full[:v].contiguous()
        out["model.transformer.wte.new_embedding"] = full[v:].contiguous()
    return out


def legacy_config(name, cfg):
    """transformers 5 writes `rope_parameters` and `dtype`; Hub configs written by 4.x use
    `rope_theta` / `rope_scaling` and `torch_dtype`, and Qwen2-VL keeps the text params flat."""
    def fix(d):
        if not isinstance(d, dict):
            return
        rp = d.pop("rope_parameters", None)
        if rp is not None and not str(d.get("model_type", "")).endswith("_vision"):
            d["rope_theta"] = rp.get("rope_theta")
            if "mrope_section" in rp:
                d["rope_scaling"] = {"type": "mrope", "mrope_section": rp["mrope_section"]}
            elif rp.get("rope_type", "default") != "default":
                d["rope_scaling"] = {k: v for k, v in rp.items() if k != "rope_theta"}
        d.pop("layer_types", None)
        if "dtype" in d:
            d["torch_dtype"] = d.pop("dtype")
        for v in list(d.values()):
            fix(v)
    cfg = json.loads(json.dumps(cfg))
    fix(cfg)
    if name == "qwen2_vl":  # Qwen/Qwen2-VL-*: text params at the top level, no text_config
        tc = cfg.pop("text_config")
        tc.pop("model_type", None)
        for k, v in tc.items():
            cfg.setdefault(k, v)
    return cfg


# --------------------------------------------------------------------------------------
# main per-model routine
# --------------------------------------------------------------------------------------
def language_model_of(m):
    inner = m.model
    for attr in ("language_model", "text_model"):
        if hasattr(inner, attr):
            return getattr(inner, attr)
    return inner


class Steer:
    """Forward hook on one decoder layer that rewrites its output h (every position):
    add:       h + alpha * v
    projected: h - (h . u) u + alpha * u,  u = v / |v|"""

    def __init__(self, layer, v, alpha, mode):
        self.v, self.alpha, self.mode = v, alpha, mode
        self.handle = layer.register_forward_hook(self)

    def __call__(self, _m, _inp, out):
        h = out[0] if isinstance(out, (tuple, list)) else out
        if self.mode == "add":
            h2 = h + self.alpha * self.v
        else:
            u = self.v / self.v.norm()
            h2 = h - (h @ u).unsqueeze(-1) * u + self.alpha * u
        if isinstance(out, (tuple, list)):
            return (h2,) + tuple(out[1:])
        return h2

    def remove(self):
        self.handle.remove()


def extra_goldens(name, model, inputs, tok, golden):
    """Intervention and greedy-generation goldens shared by all families."""
    lm = language_model_of(model)
    layers = lm.layers
    hidden = model.config.get_text_config().hidden_size
    g = torch.Generator().manual_seed(SEED + 7)
    v = torch.randn(hidden, generator=g, dtype=torch.float32).to(DTYPE)
    alpha, layer = 2.5, 1
    golden["intervention.vector"] = v.contiguous()
    golden["intervention.alpha"] = torch.tensor([alpha], dtype=torch.float32)
    golden["intervention.layer"] = torch.tensor([layer], dtype=torch.int64)
    for mode in ("add", "projected"):
        st = Steer(layers[layer], v, alpha, mode)
        with torch.no_grad():
            o = model(**inputs, return_dict=True)
        st.remove()
        golden[f"intervention.{mode}.logits"] = o.logits.contiguous()

    gen_kw = dict(do_sample=False, max_new_tokens=20, num_beams=1, top_p=None, top_k=None, temperature=None,
                  return_dict_in_generate=True, output_logits=True)
    with torch.no_grad():
        out = model.generate(**inputs, **gen_kw)
    # random tiny models often repeat one token, so the raw logits of every step are kept too
    golden["generate.output_ids"] = out.sequences[:, inputs["input_ids"].shape[1]:].contiguous()
    golden["generate.logits"] = torch.stack(out.logits, 1).contiguous()
    st = Steer(layers[layer], v, alpha, "add")
    with torch.no_grad():
        out = model.generate(**inputs, **gen_kw)
    st.remove()
    golden["generate_intervention.output_ids"] = out.sequences[:, inputs["input_ids"].shape[1]:].contiguous()
    golden["generate_intervention.logits"] = torch.stack(out.logits, 1).contiguous()

    if name in TEXT_MODELS:
        tok.padding_side = "left"
        batch = tok(["The quick brown fox", "A man riding a bicycle down a busy city street at night. Two"],
                    return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**batch, **gen_kw)
        golden["generate_batch.input_ids"] = batch["input_ids"].contiguous()
        golden["generate_batch.attention_mask"] = batch["attention_mask"].contiguous()
        golden["generate_batch.output_ids"] = out.sequences[:, batch["input_ids"].shape[1]:].contiguous()
        golden["generate_batch.logits"] = torch.stack(out.logits, 1).contiguous()


def padded_image_goldens(model, inputs, golden):
    """The SigLIP side on an image whose lower-right part is padding (as the Idefics processors pad
    images of different sizes): `pixel_attention_mask` gives the padded patches bucketed position
    ids and masks them as keys (Idefics3: a patch with any real pixel is real; Idefics2: only one
    whose pixels are all real).  The first image (tile) of the fixture, cut to its upper 3/4 and
    left half and zero-padded back to its size."""
    px = inputs["pixel_values"][:, :1].clone()
    h, w = px.shape[-2:]
    mask = torch.zeros((1, 1, h, w), dtype=torch.int64)
    real_h, real_w = h * 3 // 4, w // 2
    mask[..., :real_h, :real_w] = 1
    px = px * mask[:, :, None].to(px.dtype)
    with torch.no_grad():
        out = model.model.get_image_features(pixel_values=px, pixel_attention_mask=mask)
    golden["padded.pixel_values"] = px[0].contiguous()
    golden["padded.pixel_attention_mask"] = mask[0].contiguous()
    golden["padded.vision_last_hidden_state"] = out.last_hidden_state.contiguous()
    golden["padded.image_features"] = torch.cat(list(out.pooler_output)).contiguous()


def idefics2_split_goldens(d, image):
    """`golden_split.safetensors` in the idefics2 fixture `d`: the saved model and processor with
    `do_image_splitting=True` (four quarters plus the whole image, padded to a common size with a
    `pixel_attention_mask`), on the fixture image (`split.*`) and on a left-padded batch of two
    chats whose images differ in size (`batch.*`).  Written on its own so the other goldens of
    the fixture stay as they are."""
    from transformers import AutoModelForImageTextToText, AutoProcessor
    model = AutoModelForImageTextToText.from_pretrained(d, dtype=DTYPE, attn_implementation="eager").eval()
    proc = AutoProcessor.from_pretrained(d)
    proc.image_processor.do_image_splitting = True
    proc.tokenizer.padding_side = "left"
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    prompt = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    short = [{"role": "user", "content": [{"type": "text", "text": "Describe"}, {"type": "image"}]}]
    golden = {}
    # the second image is saved so that preprocessing can be checked from the same pixels
    small = image.resize((40, 100))
    small.save(os.path.join(d, "image_40x100.png"))
    cases = {"split": ([prompt], [[image]]),
             "batch": ([prompt, proc.apply_chat_template(short, add_generation_prompt=True, tokenize=False)],
                       [[image], [small]])}
    for key, (texts, images) in cases.items():
        inputs = proc(text=texts, images=images, padding=True, return_tensors="pt")
        with torch.no_grad():
            out = model(**inputs, return_dict=True)
        for k, v in inputs.items():
            golden[f"{key}.input.{k}"] = v.contiguous()
        golden[f"{key}.image_features"] = torch.cat(list(out.image_outputs.pooler_output)).contiguous()
        golden[f"{key}.logits"] = out.logits.contiguous()
    save_file(golden, os.path.join(d, "golden_split.safetensors"),
              metadata={"model": "idefics2", "seed": str(SEED), "dtype": str(DTYPE),
                        "transformers": transformers.__version__})


def run_one(name, out_root, image, report):
    t0 = time.time()
    torch.manual_seed(SEED)
    model, proc, hooks = BUILDERS[name]()
    is_text = name in TEXT_MODELS
    model = model.to(DTYPE).eval()
    perturb_all_params(model, SEED + 1)
    d = os.path.join(out_root, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    # qwen2 is written in shards to exercise model.safetensors.index.json
    model.save_pretrained(d, max_shard_size="150KB" if name == "qwen2" else "5GB")
    proc.save_pretrained(d)
    t_build = time.time() - t0

    # ---- reload everything from disk, offline, exactly as a user would -------------
    t1 = time.time()
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer
    Auto = AutoModelForCausalLM if is_text else AutoModelForImageTextToText
    model2 = Auto.from_pretrained(d, dtype=DTYPE, attn_implementation="eager").eval()
    proc2 = AutoTokenizer.from_pretrained(d) if is_text else AutoProcessor.from_pretrained(d)
    sd1, sd2 = model.state_dict(), model2.state_dict()
    reload_diff = max(max_abs(sd1[k], sd2[k]) for k in sd1)
    assert set(sd1) == set(sd2) and reload_diff == 0.0, ("reload mismatch", reload_diff)

    if is_text:
        messages = [{"role": "user", "content": PROMPT}]
        prompt = proc2.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = proc2([prompt], return_tensors="pt", add_special_tokens=False)
    else:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
        prompt = proc2.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = proc2(text=[prompt], images=[[image]] if name in ("idefics2", "idefics3", "smolvlm") else [image],
                       return_tensors="pt")
    inputs = {k: v for k, v in inputs.items() if k != "token_type_ids"}
    cap = Capture()
    for prefix, mods in hooks(model2).items():
        cap.add(prefix, mods)
    lm_layers = language_model_of(model2).layers
    cap.add("text.attn_output", [l.self_attn for l in lm_layers])
    cap.add("text.mlp_output", [l.mlp for l in lm_layers])
    with torch.no_grad():
        out = model2(**inputs, output_hidden_states=True, return_dict=True)
    cap.remove()
    t_fwd = time.time() - t1

    golden = flat_inputs(inputs)
    hs = out.hidden_states
    for i, h in enumerate(hs):
        golden[f"text.hidden_states.{i}"] = h.contiguous()
    for k, v in cap.store.items():
        golden[k] = v.contiguous()
    golden["logits"] = out.logits.contiguous()
    io = getattr(out, "image_outputs", None)
    ihs = getattr(io, "pooler_output", None) if io is not None else None
    if ihs is None:
        ihs = getattr(out, "image_hidden_states", None)
    if ihs is not None:
        golden["image_features"] = (ihs if isinstance(ihs, torch.Tensor) else torch.cat(list(ihs))).contiguous()
    elif name == "qwen2_vl":
        with torch.no_grad():
            f = model2.model.get_image_features(pixel_values=inputs["pixel_values"],
                                                image_grid_thw=inputs["image_grid_thw"])
        f = getattr(f, "pooler_output", f)
        golden["image_features"] = (torch.cat(list(f)) if isinstance(f, (tuple, list)) else f).contiguous()
    if name == "qwen2_vl":  # M-RoPE: 3D positions, rope deltas and the decoder's cos/sin tables
        with torch.no_grad():
            pos, deltas = model2.model.get_rope_index(
                inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"],
                image_grid_thw=inputs["image_grid_thw"], attention_mask=inputs["attention_mask"])
            cos, sin = model2.model.language_model.rotary_emb(hs[0], pos)
        golden["rope.position_ids"] = pos.contiguous()
        golden["rope.deltas"] = deltas.contiguous()
        golden["rope.cos"] = cos.contiguous()
        golden["rope.sin"] = sin.contiguous()
        # a left-padded batch of two chats whose three images have different sizes (vision
        # attention within each image, per-row 3D positions and rope deltas during generation)
        proc2.tokenizer.padding_side = "left"
        two = [{"role": "user", "content": [{"type": "text", "text": "Compare"}, {"type": "image"},
                                            {"type": "text", "text": "and"}, {"type": "image"}]}]
        texts = [prompt, proc2.apply_chat_template(two, add_generation_prompt=True, tokenize=False)]
        imgs = [image, image.resize((150, 40)), image.resize((56, 112))]
        batch = {k: v for k, v in proc2(text=texts, images=imgs, padding=True, return_tensors="pt").items()
                 if k != "token_type_ids"}
        gen_kw = dict(do_sample=False, max_new_tokens=20, num_beams=1, top_p=None, top_k=None, temperature=None,
                      return_dict_in_generate=True, output_logits=True)
        with torch.no_grad():
            bo = model2(**batch, return_dict=True)
            gen = model2.generate(**batch, **gen_kw)
        for k, v in batch.items():
            golden[f"batch.input.{k}"] = v.contiguous()
        golden["batch.logits"] = bo.logits.contiguous()
        golden["batch.generate.output_ids"] = gen.sequences[:, batch["input_ids"].shape[1]:].contiguous()
        golden["batch.generate.logits"] = torch.stack(gen.logits, 1).contiguous()
    if name in ("llava", "idefics2", "idefics3", "smolvlm", "qwen2_vl", "molmo2") + TEXT_MODELS:
        extra_goldens(name, model2, inputs, proc2 if is_text else proc2.tokenizer, golden)
    if name in ("idefics2", "idefics3", "smolvlm"):
        padded_image_goldens(model2, inputs, golden)
    if name == "idefics2":
        idefics2_split_goldens(d, image)
    if name in ("idefics3", "smolvlm"):
        # the PIL backend too (`input.pixel_values` come from the default torchvision one; the two
        # differ by up to 2 uint8 steps), so preprocessing can be checked against either
        from transformers import AutoImageProcessor
        pil = AutoImageProcessor.from_pretrained(d, use_fast=False)
        assert type(pil).__name__.endswith("Pil"), type(pil).__name__
        pil_out = pil([[image]], return_tensors="pt")
        golden["input_pil.pixel_values"] = pil_out["pixel_values"].contiguous()
        golden["input_pil.pixel_attention_mask"] = pil_out["pixel_attention_mask"].contiguous()
    save_file(golden, os.path.join(d, "golden.safetensors"),
              metadata={"model": name, "seed": str(SEED), "dtype": str(DTYPE), "transformers": transformers.__version__})

    # ---- semantics check of hidden_states vs raw layer outputs ----------------------
    L = len(hs) - 1
    sem = {"n_hidden_states": len(hs)}
    lo = [cap.store.get(f"text.layer_output.{i}") for i in range(L)]
    if all(x is not None for x in lo):
        sem["hs[i]==layer_out[i-1] for 1<=i<L"] = max(max_abs(hs[i], lo[i - 1]) for i in range(1, L)) if L > 1 else None
        sem["hs[L]-layer_out[L-1] (raw)"] = max_abs(hs[L], lo[L - 1])
        with torch.no_grad():
            sem["hs[L]-norm(layer_out[L-1])"] = max_abs(hs[L], language_model_of(model2).norm(lo[L - 1]))

    # ---- hub-format copy: legacy config + Hub tensor names, single file, must give identical outputs --
    hd = os.path.join(d, "hub_format")
    os.makedirs(hd)
    saved, meta = {}, None
    for fn in sorted(os.listdir(d)):
        if fn.endswith(".safetensors") and not fn.startswith("golden"):
            with safe_open(os.path.join(d, fn), "pt") as f:
                saved.update({k: f.get_tensor(k) for k in f.keys()})
                meta = f.metadata()
    cfg_saved = json.load(open(os.path.join(d, "config.json")))
    hub_t = to_hub_tensors(name, saved, cfg_saved)
    save_file(hub_t, os.path.join(hd, "model.safetensors"), metadata=meta)
    with open(os.path.join(hd, "config.json"), "w") as f:
        json.dump(legacy_config(name, cfg_saved), f, indent=2)
    for fn in os.listdir(d):
        if (fn != "config.json" and not fn.startswith("golden") and not fn.startswith("model.safetensors")
                and (fn.endswith(".json") or fn.endswith(".jinja"))):
            shutil.copy(os.path.join(d, fn), hd)
    m3 = Auto.from_pretrained(hd, dtype=DTYPE, attn_implementation="eager").eval()
    with torch.no_grad():
        o3 = m3(**inputs, output_hidden_states=True)
    hub = {"renamed_or_resplit": sorted(set(hub_t) ^ set(saved)) [:6],
           "n_renamed": len(set(hub_t) - set(saved)),
           "logits_maxdiff_vs_golden": max_abs(o3.logits, out.logits),
           "hidden_maxdiff_vs_golden": max(max_abs(a, b) for a, b in zip(o3.hidden_states, hs))}
    assert hub["logits_maxdiff_vs_golden"] == 0.0, hub
    del m3

    if name == "llama":  # a bfloat16 copy of the same weights (loader dtype conversion)
        bd = os.path.join(d, "bf16")
        os.makedirs(bd)
        save_file({k: t.to(torch.bfloat16).contiguous() for k, t in saved.items()},
                  os.path.join(bd, "model.safetensors"), metadata=meta)
        cfg_bf = dict(cfg_saved, dtype="bfloat16")
        with open(os.path.join(bd, "config.json"), "w") as f:
            json.dump(cfg_bf, f, indent=2)

    def sz(p):
        return os.path.getsize(p)

    st_files = [os.path.join(d, fn) for fn in sorted(os.listdir(d))
                if fn.endswith(".safetensors") and not fn.startswith("golden")]
    saved_keys = {}
    for fp in st_files:
        saved_keys.update(tensors_in(fp))
    rec = {
        "class": type(model2).__name__,
        "processor": type(proc2).__name__,
        "image_processor": type(proc2.image_processor).__name__ if not is_text else None,
        "tokenizer": type(proc2 if is_text else proc2.tokenizer).__name__,
        "n_params": sum(p.numel() for p in model2.parameters()),
        "files": {fn: sz(os.path.join(d, fn)) for fn in sorted(os.listdir(d)) if os.path.isfile(os.path.join(d, fn))},
        "prompt": prompt,
        "n_image_tokens": int((inputs["input_ids"] == model2.config.image_token_id).sum()) if not is_text else 0,
        "golden": {k: list(v.shape) for k, v in golden.items()},
        "generated_text": (proc2 if is_text else proc2.tokenizer).decode(golden["generate.output_ids"][0]),
        "hidden_state_semantics": sem,
        "hub_format": hub,
        "saved_keys": saved_keys,
        "hub_keys": tensors_in(os.path.join(hd, "model.safetensors")),
        "seconds": {"build_save": round(t_build, 2), "reload_forward": round(time.time() - t1, 2),
                    "forward_only": round(t_fwd, 2)},
    }
    with open(os.path.join(d, "golden.json"), "w") as f:
        json.dump(rec, f, indent=1)
    report[name] = rec
    print(f"[{name}] ok  params={rec['n_params']}  tokens={inputs['input_ids'].shape[1]}  "
          f"image_tokens={rec['n_image_tokens']}  hidden_states={len(hs)}  sem={sem}  hub={hub}  "
          f"gen={golden['generate.output_ids'].tolist()}  t={time.time() - t0:.1f}s", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/hf")
    ap.add_argument("--models", default="llava,llama,qwen2,mistral")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="weights are saved and the reference forward runs in this dtype")
    ap.add_argument("--idefics2-split-only", action="store_true",
                    help="only (re)write golden_split.safetensors of an existing idefics2 fixture under --out")
    a = ap.parse_args()
    global DTYPE
    DTYPE = getattr(torch, a.dtype)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    torch.use_deterministic_algorithms(True)
    os.makedirs(a.out, exist_ok=True)
    image = make_image()
    if a.idefics2_split_only:
        idefics2_split_goldens(os.path.join(a.out, "idefics2"), image)
        return 0
    image.save(os.path.join(a.out, "image.png"))
    report_path = os.path.join(a.out, "report.json")
    # entries of models not rebuilt in this run, and the run-level fields of the run that first
    # wrote the report, are kept as they are
    run = {"dtype": a.dtype, "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                                          "transformers": transformers.__version__, "numpy": np.__version__},
           "import_seconds": round(T_IMPORT, 2)}
    report = json.load(open(report_path)) if os.path.isfile(report_path) else run
    if report["dtype"] != a.dtype or report["versions"]["transformers"] != transformers.__version__:
        sys.exit(f"{report_path} was made with {report['dtype']} / transformers {report['versions']['transformers']}; "
                 "rebuild every model into a fresh --out instead of mixing runs")
    failures = {}
    for name in a.models.split(","):
        try:
            run_one(name, a.out, image, report)
        except Exception as e:  # keep going, report at the end
            import traceback
            traceback.print_exc()
            failures[name] = repr(e)[:500]
    report["failures"] = {k: v for k, v in report.get("failures", {}).items() if k not in a.models.split(",")}
    report["failures"].update(failures)
    report.setdefault("total_seconds", round(time.time() - T_START, 2))
    with open(report_path, "w") as f:
        json.dump(report, f, indent=1)
    print("total", report["total_seconds"], "s; failures:", failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
