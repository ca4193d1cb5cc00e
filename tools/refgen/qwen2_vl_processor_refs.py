#!/usr/bin/env python3
"""Reference outputs of transformers' Qwen2-VL processor for the xlvlm-processor tests.

Writes crates/processor/tests/fixtures/qwen2_vl/:
  smart_resize_cases.json   (height, width, factor, min_pixels, max_pixels) -> transformers'
                            smart_resize output, including halves (Python rounds them to even),
                            tiny and extreme sizes
  pixels.safetensors        pixel_values (float16) and image_grid_thw of Qwen2VLImageProcessorPil
                            ("pil.<case>") and of the default torchvision Qwen2VLImageProcessor
                            ("tv.<case>") for the images in ../images and tests/fixtures/hf/image.png
  pixel_cases.json          the cases: image file, min_pixels, max_pixels
  batch_case.json           Qwen2VLProcessor (tests/fixtures/hf/qwen2_vl) on two chats, one with two
                            images of different sizes, left padding: input_ids, attention_mask,
                            mm_token_type_ids, image_grid_thw, pixel_values shape

Usage: python tools/refgen/qwen2_vl_processor_refs.py   (venv with torch, torchvision,
transformers 5.24, pillow; a few seconds, no network)
"""
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402
from transformers import AutoProcessor  # noqa: E402
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (  # noqa: E402
    Qwen2VLImageProcessorPil, smart_resize)
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "crates", "processor", "tests", "fixtures")
OUT = os.path.join(FIX, "qwen2_vl")
HF = os.path.join(ROOT, "tests", "fixtures", "hf")
CLIP = dict(image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
            patch_size=14, temporal_patch_size=2, merge_size=2, resample=3, do_rescale=True,
            rescale_factor=1 / 255, do_normalize=True, do_convert_rgb=True)


def image_path(name):
    return os.path.join(HF, name) if name == "image.png" else os.path.join(FIX, "images", name)


def main():
    os.makedirs(OUT, exist_ok=True)
    resize_cases = []
    sides = [1, 13, 27, 28, 29, 42, 60, 70, 90, 98, 150, 333, 1000, 4000]
    areas = [(56 * 56, 28 * 28 * 1280), (28 * 28 * 4, 28 * 28 * 16), (28 * 28 * 20, 28 * 28 * 40)]
    for h in sides:
        for w in sides:
            if max(h, w) / min(h, w) > 200:
                continue
            for lo, hi in areas:
                out = smart_resize(h, w, factor=28, min_pixels=lo, max_pixels=hi)
                resize_cases.append({"height": h, "width": w, "factor": 28, "min_pixels": lo,
                                     "max_pixels": hi, "resized": [int(out[0]), int(out[1])]})
    with open(os.path.join(OUT, "smart_resize_cases.json"), "w") as f:
        json.dump(resize_cases, f)

    pixel_cases = [("image.png", 3136, 12544), ("astronaut.png", 3136, 12544), ("image.png", 15680, 31360),
                   ("synthetic_rgba.png", 3136, 12544), ("chelsea_pil_decoded.png", 3136, 12544)]
    tensors = {}
    for i, (name, lo, hi) in enumerate(pixel_cases):
        img = Image.open(image_path(name))
        size = {"shortest_edge": lo, "longest_edge": hi}
        for tag, cls in (("pil", Qwen2VLImageProcessorPil), ("tv", Qwen2VLImageProcessor)):
            out = cls(size=size, **CLIP)(images=[img], return_tensors="np")
            tensors[f"{tag}.{i}.pixel_values"] = np.asarray(out["pixel_values"]).astype(np.float16)
            tensors[f"{tag}.{i}.image_grid_thw"] = np.asarray(out["image_grid_thw"]).astype(np.int64)
    save_file(tensors, os.path.join(OUT, "pixels.safetensors"))
    with open(os.path.join(OUT, "pixel_cases.json"), "w") as f:
        json.dump([{"image": n, "min_pixels": lo, "max_pixels": hi} for n, lo, hi in pixel_cases], f, indent=1)

    proc = AutoProcessor.from_pretrained(os.path.join(HF, "qwen2_vl"))
    proc.tokenizer.padding_side = "left"
    chats = [
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown in this image?"}]}],
        [{"role": "user", "content": [{"type": "text", "text": "Compare"}, {"type": "image"},
                                      {"type": "text", "text": "and"}, {"type": "image"},
                                      {"type": "text", "text": "Which one has a cat?"}]}],
    ]
    images = [["image.png"], ["astronaut.png", "chelsea_pil_decoded.png"]]
    texts = [proc.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in chats]
    flat = [Image.open(image_path(n)) for row in images for n in row]
    out = proc(text=texts, images=flat, padding=True, return_tensors="np")
    batch = {"chats": chats, "images": images, "prompts": texts,
             "input_ids": out["input_ids"].tolist(), "attention_mask": out["attention_mask"].tolist(),
             "mm_token_type_ids": out["mm_token_type_ids"].tolist(),
             "image_grid_thw": out["image_grid_thw"].tolist(), "pixel_values_shape": list(out["pixel_values"].shape)}
    with open(os.path.join(OUT, "batch_case.json"), "w") as f:
        json.dump(batch, f, indent=1)
    print(len(resize_cases), "resize cases;", len(pixel_cases), "pixel cases; batch", batch["pixel_values_shape"],
          batch["image_grid_thw"])


if __name__ == "__main__":
    main()
