#!/usr/bin/env python3
"""Throughput of transformers' CLIPImageProcessorPil with LLaVA-1.5 settings (336 px) on the
640x480 astronaut image, the baseline of crates/processor/examples/bench_processor.rs.

Usage: python tools/refgen/bench_processor_pil.py [ITERATIONS]"""
import os
import sys
import time

from PIL import Image
from transformers import CLIPImageProcessorPil

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
img = Image.open(os.path.join(ROOT, "crates/processor/tests/fixtures/images/astronaut.png")).convert("RGB")
img = img.resize((640, 480), Image.Resampling.LANCZOS)
proc = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}, resample=3,
                             image_mean=[0.48145466, 0.4578275, 0.40821073],
                             image_std=[0.26862954, 0.26130258, 0.27577711])
proc(images=[img], return_tensors="np")
t = time.perf_counter()
for _ in range(n):
    proc(images=[img], return_tensors="np")
s = time.perf_counter() - t
print(f"transformers {__import__('transformers').__version__} CLIPImageProcessorPil 640x480 -> 336: "
      f"{n / s:.1f} images/s ({n} images in {s:.3f} s)")
