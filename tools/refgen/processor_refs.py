#!/usr/bin/env python3
"""Reference outputs of Hugging Face processors for the xlvlm-processor tests.

Builds two tiny checkpoints' processor files offline (tokenizers trained here with `tokenizers`,
saved by transformers' own `save_pretrained`), then records what transformers / tokenizers /
jinja2 / PIL produce for them, so the Rust tests compare against code nobody here wrote:

  crates/processor/tests/fixtures/
    llava_spm/        LlavaProcessor (transformers-5 layout: processor_config.json with the image
                      processor nested, chat_template.jinja), SentencePiece-style BPE with byte
                      fallback and a BOS post-processor, tokenizer padding side left
    llava_hub/        the same processor in the Hub layout (preprocessor_config.json,
                      chat_template.json, processor_config.json without image settings)
    bytelevel/        a Qwen2-style byte-level BPE tokenizer with ChatML specials, no BOS,
                      and the Qwen2-VL chat template inside tokenizer_config.json
    images/           synthetic.png (drawn here), astronaut.png and chelsea.jpg (scikit-image photos,
                      shrunk)
    tokenizer_cases.json   text -> ids (with / without special tokens) and ids -> text
    chat_cases.json        template + messages -> rendered string (transformers' renderer)
    word_cases.json        whole-word occurrences, found with a regex on the text and mapped to
                           tokens through the tokenizer's own offsets
    processor_cases.json   full processor outputs (input_ids, attention_mask) of padded batches
    strftime_cases.json    Python strftime of fixed UTC times (the `strftime_now` template global)
    pixels.safetensors     pixel_values of CLIPImageProcessorPil (float16) for each image/size

Usage: python tools/refgen/processor_refs.py [OUT]   (default crates/processor/tests/fixtures)
Needs: tokenizers==0.23.3 transformers==5.24.0 pillow==13.0.0 numpy jinja2 scikit-image
safetensors (no torch).  Takes a few seconds.
"""
import json
import os
import re
import shutil
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402

import transformers  # noqa: E402
from transformers import AutoProcessor, AutoTokenizer, CLIPImageProcessorPil, LlavaProcessor, PreTrainedTokenizerFast  # noqa: E402
from transformers.utils.chat_template_utils import render_jinja_template  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "crates", "processor", "tests", "fixtures")

CORPUS = [
    "A photo of a cat sitting on a red sofa next to a window.",
    "Is there snow on the mountain? No, there is not any snow.",
    "What is shown in this image? Describe the colors in detail.",
    "Two giraffes and a zebra are standing near the trees.",
    "How many people are in the picture? Answer with a single number.",
    "Yes. no. Nothing, nobody, none, note, know, snowy, nose.",
    "The quick brown fox jumps over the lazy dog, doesn't it?",
    "Ünïcödé tèxt, emojis 🙂 and CJK 猫 should byte-fallback.",
    "USER: ASSISTANT: user assistant system image picture answer question",
]

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

# Multi-line templates exercise trim_blocks / lstrip_blocks, whitespace control, loop controls,
# namespace, tojson, string methods and raise_exception (Llama-3 / Mistral style constructs).
MULTILINE_TEMPLATE = """{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- set system = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set system = 'You are helpful.' %}
    {%- set loop_messages = messages %}
{%- endif %}
<<SYS>> {{ system | trim }} {{ {'n': loop_messages | length, 'tag': '<a & b>', 'x': 1.5, 'u': 'é'} | tojson }}
{% for message in loop_messages %}
    {% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {% endif %}
    {% if message['role'] == 'user' %}
[INST] {{ message['content'] | trim }} [/INST]
    {% elif message['role'] == 'assistant' %}
 {{ message['content'].strip().lower() }}{{ eos_token }}
    {% endif %}
    {% if loop.index > 3 %}{% break %}{% endif %}
{% endfor %}
{% set ns = namespace(count=0) %}
{% for m in messages %}{% if m['role'] == 'user' %}{% set ns.count = ns.count + 1 %}{% endif %}{% endfor %}
users={{ ns.count }}
{%- if add_generation_prompt %}
<assistant>
{%- endif %}
"""


def spm_tokenizer(vocab_size, specials):
    """Llama-2 style: BPE with byte fallback on '▁'-marked words, BOS post-processor."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    tok.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    base = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=base,
                                                        show_progress=False))
    tok.add_special_tokens(specials)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<unk>", padding_side="left", extra_special_tokens={},
                                   clean_up_tokenization_spaces=False)


QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
              r"|\s+(?!\S)|\s+")


def bytelevel_tokenizer(vocab_size, specials):
    """Qwen2 style byte-level BPE with the look-ahead split regex, no BOS."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"], show_progress=False))
    tok.add_special_tokens(specials)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None, extra_special_tokens={},
                                   clean_up_tokenization_spaces=False)


def clip_pil(size, crop, crop_w=None):
    return CLIPImageProcessorPil(
        do_resize=True, size={"shortest_edge": size}, resample=3, do_center_crop=True,
        crop_size={"height": crop, "width": crop_w or crop}, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
        do_convert_rgb=True)


def synthetic_image(w=90, h=60):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = (255 * x / (w - 1)).astype(np.uint8)
    g = (255 * y / (h - 1)).astype(np.uint8)
    b = (127 + 127 * np.sin(x / 4.0) * np.cos(y / 6.0)).astype(np.uint8)
    img = Image.fromarray(np.stack([r, g, b], -1), "RGB")
    d = ImageDraw.Draw(img)
    d.rectangle([8, 8, 30, 28], fill=(255, 0, 0))
    d.ellipse([48, 18, 82, 52], fill=(0, 0, 255), outline=(255, 255, 255))
    d.line([0, h - 1, w - 1, 0], fill=(0, 0, 0), width=2)
    return img


TEXTS = [
    "What is shown in this image? Describe the colors.",
    "USER: <image>\nWhat is it? ASSISTANT:",
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Hi<|im_end|>\n",
    "Ünïcödé tèxt, emojis 🙂 and CJK 猫 — byte fallback.",
    "  leading spaces and\ttabs\n\nnew lines  ",
    "1234567 numbers 3.14 and I'm can't we'll",
    "No, there is no snow. not now, nobody knows.",
    "",
]

WORD_TEXTS = [
    ("No, there is no snow on it. Not now!", ["no", "snow", "not", "now"]),
    ("Is there snow? no", ["no", "snow"]),
    ("Two giraffes and a zebra; giraffes are tall.", ["giraffes", "zebra", "are"]),
    ("The cat 猫 sat 🙂 on the mat.", ["猫", "cat", "mat", "at"]),
    ("nobody knows, NO!", ["no", "knows"]),
]


def word_spans(tok, text, word, case_insensitive):
    enc = tok._tokenizer.encode(text, add_special_tokens=False)
    flags = re.IGNORECASE if case_insensitive else 0
    spans = []
    for m in re.finditer(r"(?<![^\W_])" + re.escape(word) + r"(?![^\W_])", text, flags):
        # every token whose character offsets overlap the match (a CJK character or an emoji can
        # be several byte-fallback tokens)
        toks = [i for i, (s, e) in enumerate(enc.offsets) if s < m.end() and e > m.start()]
        spans.append([toks[0], toks[-1]])
    return enc.ids, spans


def main():
    os.makedirs(OUT, exist_ok=True)
    img_dir = os.path.join(OUT, "images")
    os.makedirs(img_dir, exist_ok=True)

    # ---- images -------------------------------------------------------------------------------
    import skimage.data
    synthetic = synthetic_image()
    synthetic.save(os.path.join(img_dir, "synthetic.png"))
    astro = Image.fromarray(skimage.data.astronaut()).resize((200, 150), Image.Resampling.LANCZOS)
    astro.save(os.path.join(img_dir, "astronaut.png"))
    chelsea = Image.fromarray(skimage.data.chelsea()).resize((180, 120), Image.Resampling.LANCZOS)
    chelsea.save(os.path.join(img_dir, "chelsea.jpg"), quality=90)
    # PIL's (libjpeg-turbo's) decoding of that JPEG, lossless: separates decoder differences from
    # preprocessing differences
    Image.open(os.path.join(img_dir, "chelsea.jpg")).convert("RGB").save(os.path.join(img_dir, "chelsea_pil_decoded.png"))
    # RGBA with transparency: exercises the composite-onto-white conversion
    rgba = synthetic.convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, rgba.width, dtype=np.uint8), (rgba.height, 1))
    rgba.putalpha(Image.fromarray(alpha, "L"))
    rgba.save(os.path.join(img_dir, "synthetic_rgba.png"))

    pixels = {}
    pixel_meta = []
    # (image, shortest edge, crop height, crop width): up- and down-sampling, non-square crops,
    # and a crop larger than the resized image (zero padding)
    pixel_cases = [("synthetic.png", 224, 224, 224), ("synthetic.png", 56, 56, 56), ("astronaut.png", 112, 112, 112),
                   ("astronaut.png", 64, 48, 64), ("chelsea.jpg", 96, 96, 96), ("chelsea_pil_decoded.png", 96, 96, 96), ("synthetic_rgba.png", 56, 56, 56),
                   ("astronaut.png", 40, 48, 64)]
    for name, size, crop_h, crop_w in pixel_cases:
        # reopened from disk: the Rust side decodes the same files
        img = Image.open(os.path.join(img_dir, name))
        pv = clip_pil(size, crop_h, crop_w)(images=[img], return_tensors="np")["pixel_values"][0]
        key = f"{name}@{size}/{crop_h}x{crop_w}"
        pixels[key] = pv.astype(np.float16)
        pixel_meta.append({"key": key, "image": name, "shortest_edge": size, "crop_height": crop_h,
                           "crop_width": crop_w, "shape": list(pv.shape)})
    save_file(pixels, os.path.join(OUT, "pixels.safetensors"),
              metadata={"transformers": transformers.__version__, "backend": "CLIPImageProcessorPil"})

    # ---- checkpoints --------------------------------------------------------------------------
    spm = spm_tokenizer(420, ["<image>"])
    llava = LlavaProcessor(image_processor=clip_pil(56, 56), tokenizer=spm, patch_size=14,
                           vision_feature_select_strategy="default", num_additional_image_tokens=1,
                           chat_template=LLAVA_TEMPLATE)
    d_llava = os.path.join(OUT, "llava_spm")
    shutil.rmtree(d_llava, ignore_errors=True)
    llava.save_pretrained(d_llava)

    d_hub = os.path.join(OUT, "llava_hub")
    shutil.rmtree(d_hub, ignore_errors=True)
    os.makedirs(d_hub)
    for fn in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(os.path.join(d_llava, fn), d_hub)
    pc = json.load(open(os.path.join(d_llava, "processor_config.json")))
    ip = pc.pop("image_processor")
    ip["processor_class"] = "LlavaProcessor"
    json.dump(ip, open(os.path.join(d_hub, "preprocessor_config.json"), "w"), indent=2)
    json.dump(pc, open(os.path.join(d_hub, "processor_config.json"), "w"), indent=2)
    json.dump({"chat_template": LLAVA_TEMPLATE}, open(os.path.join(d_hub, "chat_template.json"), "w"), indent=2)

    qwen_specials = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"]
    bl = bytelevel_tokenizer(420, qwen_specials)
    bl.chat_template = QWEN2VL_TEMPLATE
    d_bl = os.path.join(OUT, "bytelevel")
    shutil.rmtree(d_bl, ignore_errors=True)
    bl.save_pretrained(d_bl)
    # Older text checkpoints keep the template inside tokenizer_config.json
    tc_path = os.path.join(d_bl, "tokenizer_config.json")
    tc = json.load(open(tc_path))
    jinja = os.path.join(d_bl, "chat_template.jinja")
    if os.path.exists(jinja):
        tc["chat_template"] = open(jinja).read()
        os.remove(jinja)
    json.dump(tc, open(tc_path, "w"), indent=2, ensure_ascii=False)

    # ---- tokenizer cases (reloaded from disk as a user would) ----------------------------------
    tok_cases = {}
    toks = {}
    for name, d in [("llava_spm", d_llava), ("llava_hub", d_hub), ("bytelevel", d_bl)]:
        tok = AutoTokenizer.from_pretrained(d)
        toks[name] = tok
        cases = []
        for t in TEXTS:
            ids = tok(t, add_special_tokens=True)["input_ids"]
            cases.append({"text": t, "ids": ids,
                          "ids_no_special": tok(t, add_special_tokens=False)["input_ids"],
                          "decoded": tok.decode(ids, skip_special_tokens=False),
                          "decoded_skip_special": tok.decode(ids, skip_special_tokens=True)})
        tok_cases[name] = {"tokenizer_class": type(tok).__name__, "pad_token_id": tok.pad_token_id,
                           "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
                           "padding_side": tok.padding_side, "cases": cases}
    json.dump(tok_cases, open(os.path.join(OUT, "tokenizer_cases.json"), "w"), ensure_ascii=False, indent=1)

    # ---- chat template cases -------------------------------------------------------------------
    img_q = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown in this image?"}]}]
    multi_turn = img_q + [
        {"role": "assistant", "content": [{"type": "text", "text": "A cat on a sofa."}]},
        {"role": "user", "content": [{"type": "text", "text": "What colour is it?"}, {"type": "image"}]}]
    system_first = [{"role": "system", "content": [{"type": "text", "text": "Answer in one word."}]}] + img_q
    plain = [{"role": "system", "content": "  Be brief.  "}, {"role": "user", "content": "Hello there "},
             {"role": "assistant", "content": " Hi! HOW can I help? "}, {"role": "user", "content": "Count to 3"}]
    bad_order = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<unk>"}
    templates = {"llava": LLAVA_TEMPLATE, "qwen2_vl": QWEN2VL_TEMPLATE, "idefics2": IDEFICS2_TEMPLATE,
                 "multiline": MULTILINE_TEMPLATE}
    conversations = {"image_question": img_q, "multi_turn": multi_turn, "system_first": system_first,
                     "plain_text": plain, "bad_order": bad_order}
    chat_cases = []
    for tname, template in templates.items():
        for cname, conv in conversations.items():
            if tname != "multiline" and cname in ("plain_text", "bad_order"):
                continue
            if tname == "multiline" and cname not in ("plain_text", "bad_order"):
                continue
            for agp in (False, True):
                # extra template variables (apply_chat_template's **kwargs) override special tokens
                for extra in ({}, {"add_vision_id": True, "bos_token": "<BOS>"}):
                    if extra and tname not in ("qwen2_vl", "multiline"):
                        continue
                    try:
                        out, _ = render_jinja_template([conv], chat_template=template, add_generation_prompt=agp,
                                                       **{**specials, **extra})
                        expected, error = out[0], None
                    except Exception as e:  # noqa: BLE001  (the error message is the reference)
                        expected, error = None, str(e)
                    chat_cases.append({"template": tname, "conversation": cname, "add_generation_prompt": agp,
                                       "vars": extra, "messages": conv, "expected": expected, "error": error})
    # how plain values print: jinja2 writes Python's str() (True, None, 1.0)
    value_template = "{{ flag }}|{{ not flag }}|{{ nothing }}|{{ 1.0 }}|{{ 2 / 4 }}|{{ 7 // 2 }}|{{ [1, 2] }}|{{ missing }}"
    value_vars = {"flag": True, "nothing": None}
    out, _ = render_jinja_template([img_q], chat_template=value_template, **value_vars)
    chat_cases.append({"template": "python_values", "conversation": "image_question", "add_generation_prompt": False,
                       "vars": value_vars, "messages": img_q, "expected": out[0], "error": None})
    templates["python_values"] = value_template
    # the checkpoints' own templates through the processor / tokenizer API
    proc = AutoProcessor.from_pretrained(d_llava)
    proc_hub = AutoProcessor.from_pretrained(d_hub)
    ckpt_cases = []
    for cname in ("image_question", "multi_turn", "system_first"):
        for agp in (False, True):
            ckpt_cases.append({"checkpoint": "llava_spm", "conversation": cname, "add_generation_prompt": agp,
                               "messages": conversations[cname],
                               "expected": proc.apply_chat_template(conversations[cname], add_generation_prompt=agp,
                                                                    tokenize=False)})
            ckpt_cases.append({"checkpoint": "llava_hub", "conversation": cname, "add_generation_prompt": agp,
                               "messages": conversations[cname],
                               "expected": proc_hub.apply_chat_template(conversations[cname],
                                                                        add_generation_prompt=agp, tokenize=False)})
            ckpt_cases.append({"checkpoint": "bytelevel", "conversation": cname, "add_generation_prompt": agp,
                               "messages": conversations[cname],
                               "expected": toks["bytelevel"].apply_chat_template(
                                   conversations[cname], add_generation_prompt=agp, tokenize=False)})
    json.dump({"specials": specials, "templates": templates, "cases": chat_cases, "checkpoint_cases": ckpt_cases},
              open(os.path.join(OUT, "chat_cases.json"), "w"), ensure_ascii=False, indent=1)

    # ---- whole-word cases ----------------------------------------------------------------------
    word_cases = []
    for name in ("llava_spm", "bytelevel"):
        for text, words in WORD_TEXTS:
            for w in words:
                for ci in (True, False):
                    ids, spans = word_spans(toks[name], text, w, ci)
                    word_cases.append({"tokenizer": name, "text": text, "word": w, "case_insensitive": ci,
                                       "ids": ids, "spans": spans,
                                       "pieces": toks[name].convert_ids_to_tokens(ids)})
    json.dump(word_cases, open(os.path.join(OUT, "word_cases.json"), "w"), ensure_ascii=False, indent=1)

    # ---- full processor cases ------------------------------------------------------------------
    proc_cases = []
    synthetic_disk = Image.open(os.path.join(img_dir, "synthetic.png"))
    astro_disk = Image.open(os.path.join(img_dir, "astronaut.png"))
    for ck, p in (("llava_spm", proc), ("llava_hub", proc_hub)):
        prompts = [p.apply_chat_template(img_q, add_generation_prompt=True, tokenize=False),
                   p.apply_chat_template(multi_turn, add_generation_prompt=True, tokenize=False)]
        for side in ("left", "right"):
            out = p(text=prompts, images=[synthetic_disk, astro_disk, synthetic_disk], padding=True,
                    padding_side=side, return_tensors="np")
            proc_cases.append({"checkpoint": ck, "padding_side": side, "conversations": ["image_question", "multi_turn"],
                               "images": [["synthetic.png"], ["astronaut.png", "synthetic.png"]],
                               "prompts": prompts, "input_ids": out["input_ids"].tolist(),
                               "attention_mask": out["attention_mask"].tolist(),
                               "pixel_values_shape": list(out["pixel_values"].shape),
                               "image_token_id": p.image_token_id})
        # text-only prompt through the processor (no images): BOS added by the tokenizer
        out = p(text=["No snow here."], return_tensors="np")
        proc_cases.append({"checkpoint": ck, "padding_side": "left", "conversations": [], "images": [[]],
                           "prompts": ["No snow here."], "input_ids": out["input_ids"].tolist(),
                           "attention_mask": out["attention_mask"].tolist(), "pixel_values_shape": None,
                           "image_token_id": p.image_token_id})
    json.dump(proc_cases, open(os.path.join(OUT, "processor_cases.json"), "w"), ensure_ascii=False, indent=1)
    # strftime_now: transformers' template global is datetime.now().strftime(format); fixed UTC times
    from datetime import datetime, timezone
    stamps = [0, 951782400, 1709164799, 1719792000 + 13 * 3600 + 5 * 60 + 9, 4107542400, -86400 * 365, 1234567890]
    formats = ["%d %b %Y", "%Y-%m-%d %H:%M:%S", "%A %B %d, %y", "%a %j %w %u %I %p", "%F %T %%", "%h"]
    json.dump([{"timestamp": t, "format": f, "expected": datetime.fromtimestamp(t, timezone.utc).strftime(f)}
               for t in stamps for f in formats],
              open(os.path.join(OUT, "strftime_cases.json"), "w"), indent=1)
    json.dump({"transformers": transformers.__version__, "pixel_cases": pixel_meta},
              open(os.path.join(OUT, "pixels.json"), "w"), indent=1)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
