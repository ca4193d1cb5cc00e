#!/usr/bin/env python3
"""transformers' side of `cargo run --release -p xlvlm-model --example bench_molmo`: the tiny
Molmo2 fixture (tests/fixtures/hf/molmo2/hub_format, float32, CPU, eager attention, 2 threads),
one forward pass over the golden inputs and greedy generation of 20 tokens, timed the same way
(one warm-up, then `iters` runs; best and mean).

Usage:  python tools/refgen/model_bench_molmo2.py [iters]      (venv with torch + transformers 5.24)
"""
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import AutoModelForImageTextToText  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "hf", "molmo2")


def report(what, tokens, times):
    best, mean = min(times), sum(times) / len(times)
    print(f"molmo2 tiny {what} [transformers {transformers.__version__}, torch {torch.__version__}]: {tokens} tokens, best {best:.4f}s "
          f"mean {mean:.4f}s -> {tokens / best:.1f} tokens/s (best), {tokens / mean:.1f} (mean)")


def main():
    iters = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    torch.set_num_threads(2)
    golden = load_file(os.path.join(ROOT, "golden.safetensors"))
    inputs = {k[len("input."):]: v for k, v in golden.items() if k.startswith("input.")}
    model = AutoModelForImageTextToText.from_pretrained(
        os.path.join(ROOT, "hub_format"), dtype=torch.float32, attn_implementation="eager").eval()
    tokens = inputs["input_ids"].shape[1]
    with torch.no_grad():
        model(**inputs)
        times = []
        for _ in range(iters):
            t = time.perf_counter()
            model(**inputs)
            times.append(time.perf_counter() - t)
        report("forward", tokens, times)
        kw = dict(do_sample=False, max_new_tokens=20, min_new_tokens=20, num_beams=1, top_p=None, top_k=None,
                  temperature=None)
        model.generate(**inputs, **kw)
        times = []
        for _ in range(iters):
            t = time.perf_counter()
            out = model.generate(**inputs, **kw)
            times.append(time.perf_counter() - t)
            assert out.shape[1] - tokens == 20
        report("generate 20", 20, times)


if __name__ == "__main__":
    main()
