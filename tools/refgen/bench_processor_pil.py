#!/usr/bin/env python3
"""Throughput of transformers' LLaVA-1.5 input preparation on the 640x480 astronaut image, the
baseline of crates/processor/examples/bench_processor.rs:
1. CLIPImageProcessorPil with LLaVA-1.5 settings (336 px);
2. the whole LlavaProcessor call (chat template + image + placeholder expansion + tokenization)
   on the llava_spm fixture's files with the image size raised to 336 px.

Usage: python tools/refgen/bench_processor_pil.py [ITERATIONS]"""
import json
import os
import shutil
import sys
import tempfile
import time

from PIL import Image
import transformers
from transformers import AutoProcessor, CLIPImageProcessorPil

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "crates/processor/tests/fixtures")
n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
img = Image.open(os.path.join(FIX, "images/astronaut.png")).convert("RGB").resize((640, 480), Image.Resampling.LANCZOS)


def rate(fn):
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t)


proc = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}, resample=3,
                             image_mean=[0.48145466, 0.4578275, 0.40821073],
                             image_std=[0.26862954, 0.26130258, 0.27577711])
print(f"transformers {transformers.__version__} CLIPImageProcessorPil 640x480 -> 336: "
      f"{rate(lambda: proc(images=[img], return_tensors='np')):.1f} images/s ({n} images)")

d = tempfile.mkdtemp()
for f in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]:
    shutil.copy(os.path.join(FIX, "llava_spm", f), d)
cfg = json.load(open(os.path.join(FIX, "llava_spm/processor_config.json")))
cfg["image_processor"]["size"] = {"shortest_edge": 336}
cfg["image_processor"]["crop_size"] = {"height": 336, "width": 336}
json.dump(cfg, open(os.path.join(d, "processor_config.json"), "w"))
llava = AutoProcessor.from_pretrained(d)
messages = [{"role": "user", "content": [{"type": "image"},
                                         {"type": "text", "text": "What is shown in this image? Describe the colors."}]}]


def full():
    prompt = llava.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return llava(text=[prompt], images=[img], padding=True, padding_side="left", return_tensors="np")


assert full()["input_ids"].shape[1] > 576
print(f"transformers {transformers.__version__} LlavaProcessor ({type(llava.image_processor).__name__}) full call: "
      f"{rate(full):.1f} samples/s ({n} samples)")
shutil.rmtree(d)
