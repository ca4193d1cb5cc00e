#!/usr/bin/env python3
"""PyTorch/transformers side of crates/model/examples/bench_forward.rs.

1. Builds a random ~100M-parameter LLaVA-1.5-shaped model (CLIP ViT 336px/14 -> 576 image
   tokens, 6 vision layers of width 384; Llama decoder 10 layers of width 640, vocab 32064),
   saves it with save_pretrained under OUT/llava100m together with `bench_inputs.safetensors`
   (input_ids with 576 image tokens + 40 text tokens, attention_mask, pixel_values).
2. Times transformers' forward (eager attention, float32, all logits) on that input and on the
   committed tiny fixture (tests/fixtures/hf/llava, golden inputs), and prints tokens/s as JSON.

Usage: python tools/refgen/model_bench_torch.py [--out /tmp/xlvlm-bench] [--iters 5] [--threads 2]
"""
import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig,  # noqa: E402
                          LlavaForConditionalGeneration)

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "..", "..", "tests", "fixtures", "hf", "llava")


def build_100m(out_dir):
    torch.manual_seed(0)
    vc = CLIPVisionConfig(hidden_size=384, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=6,
                          image_size=336, patch_size=14, hidden_act="quick_gelu")
    tc = LlamaConfig(hidden_size=640, intermediate_size=1728, num_hidden_layers=10, num_attention_heads=10,
                     num_key_value_heads=10, vocab_size=32064, max_position_embeddings=4096,
                     bos_token_id=1, eos_token_id=2, pad_token_id=0)
    cfg = LlavaConfig(vision_config=vc, text_config=tc, image_token_id=32000, vision_feature_layer=-2,
                      vision_feature_select_strategy="default", projector_hidden_act="gelu", image_seq_length=576)
    model = LlavaForConditionalGeneration(cfg).eval()
    model.save_pretrained(out_dir)
    g = torch.Generator().manual_seed(1)
    text = torch.randint(3, 31000, (40,), generator=g)
    ids = torch.cat([text[:5], torch.full((576,), 32000), text[5:]]).unsqueeze(0)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
              "pixel_values": torch.randn(1, 3, 336, 336, generator=g)}
    save_file({k: v.contiguous() for k, v in inputs.items()}, os.path.join(out_dir, "bench_inputs.safetensors"))
    return model, inputs, sum(p.numel() for p in model.parameters())


def tiny():
    model = LlavaForConditionalGeneration.from_pretrained(TINY, dtype=torch.float32, attn_implementation="eager").eval()
    with safe_open(os.path.join(TINY, "golden.safetensors"), "pt") as f:
        inputs = {k: f.get_tensor("input." + k) for k in ("input_ids", "attention_mask", "pixel_values")}
    return model, inputs, sum(p.numel() for p in model.parameters())


def time_forward(model, inputs, iters):
    with torch.no_grad():
        model(**inputs)  # warm-up
        times = []
        for _ in range(iters):
            t = time.perf_counter()
            model(**inputs)
            times.append(time.perf_counter() - t)
    tokens = inputs["input_ids"].numel()
    best, mean = min(times), sum(times) / len(times)
    return {"tokens": tokens, "best_s": round(best, 4), "mean_s": round(mean, 4),
            "tokens_per_s_best": round(tokens / best, 1), "tokens_per_s_mean": round(tokens / mean, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/xlvlm-bench")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out_dir = os.path.join(a.out, "llava100m")
    os.makedirs(out_dir, exist_ok=True)
    results = {"torch": torch.__version__, "threads": a.threads}
    m, inp, n = tiny()
    results["tiny"] = dict(params=n, **time_forward(m, inp, a.iters * 4))
    m, inp, n = build_100m(out_dir)
    m = LlavaForConditionalGeneration.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager").eval()
    results["llava100m"] = dict(params=n, **time_forward(m, inp, a.iters))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
