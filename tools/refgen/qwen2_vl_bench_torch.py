#!/usr/bin/env python3
"""PyTorch/transformers side of crates/model/examples/bench_qwen2_vl.rs.

Builds a random ~100M-parameter Qwen2-VL-shaped model (ViT 6 blocks of width 384, 6 heads,
patch 14, merge 2; Qwen2 decoder 10 layers of width 640, 10 heads / 2 KV heads, MLP 1728, vocab
32064, M-RoPE sections [8, 12, 12]) and one input: a 448x448 image (32x32 patches -> 256
`<|image_pad|>` tokens) inside 42 text tokens. Saves it with save_pretrained under
OUT/qwen2vl100m with `bench_inputs.safetensors`, then times transformers in float32 with eager
attention: one forward over the prompt (all logits), the vision tower + merger alone
(`get_image_features`), and greedy generation of 20 new tokens.
Prints JSON.

Usage: python tools/refgen/qwen2_vl_bench_torch.py [--out /tmp/xlvlm-bench] [--iters 5] [--threads 2]
"""
import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration  # noqa: E402

IMAGE, START, END = 32001, 32002, 32003
NEW_TOKENS = 20


def build(out_dir):
    torch.manual_seed(0)
    cfg = Qwen2VLConfig(
        vision_config=dict(depth=6, embed_dim=384, hidden_size=640, num_heads=6, mlp_ratio=4, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, in_channels=3),
        text_config=dict(vocab_size=32064, hidden_size=640, intermediate_size=1728, num_hidden_layers=10,
                         num_attention_heads=10, num_key_value_heads=2, max_position_embeddings=4096,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                          "mrope_section": [8, 12, 12]},
                         bos_token_id=None, eos_token_id=2, pad_token_id=0),
        image_token_id=IMAGE, video_token_id=32004, vision_start_token_id=START, vision_end_token_id=END)
    model = Qwen2VLForConditionalGeneration(cfg).eval()
    model.save_pretrained(out_dir)
    g = torch.Generator().manual_seed(1)
    text = torch.randint(3, 31000, (40,), generator=g)
    grid = torch.tensor([[1, 32, 32]])
    ids = torch.cat([text[:5], torch.tensor([START]), torch.full((256,), IMAGE), torch.tensor([END]), text[5:]])
    ids = ids.unsqueeze(0)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
              "mm_token_type_ids": (ids == IMAGE).long(),
              "pixel_values": torch.randn(1024, 3 * 2 * 14 * 14, generator=g), "image_grid_thw": grid}
    save_file({k: v.contiguous() for k, v in inputs.items()}, os.path.join(out_dir, "bench_inputs.safetensors"))
    return sum(p.numel() for p in model.parameters()), inputs


def timed(fn, iters):
    fn()  # warm-up
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), sum(times) / len(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/xlvlm-bench")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out_dir = os.path.join(a.out, "qwen2vl100m")
    os.makedirs(out_dir, exist_ok=True)
    params, inputs = build(out_dir)
    model = Qwen2VLForConditionalGeneration.from_pretrained(out_dir, dtype=torch.float32,
                                                            attn_implementation="eager").eval()
    tokens = inputs["input_ids"].numel()
    gen_kw = dict(do_sample=False, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, num_beams=1,
                  top_p=None, top_k=None, temperature=None)
    with torch.no_grad():
        f_best, f_mean = timed(lambda: model(**inputs), a.iters)
        v_best, v_mean = timed(lambda: model.model.get_image_features(inputs["pixel_values"],
                                                                      inputs["image_grid_thw"]), a.iters)
        g_best, g_mean = timed(lambda: model.generate(**inputs, **gen_kw), a.iters)
    print(json.dumps({
        "torch": torch.__version__, "threads": a.threads, "params": params, "prompt_tokens": tokens,
        "forward": {"best_s": round(f_best, 4), "mean_s": round(f_mean, 4),
                    "tokens_per_s_best": round(tokens / f_best, 1), "tokens_per_s_mean": round(tokens / f_mean, 1)},
        "vision_and_merger": {"best_s": round(v_best, 4), "mean_s": round(v_mean, 4)},
        "generate_20": {"best_s": round(g_best, 4), "mean_s": round(g_mean, 4)},
    }, indent=1))


if __name__ == "__main__":
    main()
