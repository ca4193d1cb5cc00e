#!/usr/bin/env python3
"""The remote code's side of `cargo run --release -p xlvlm-model --example bench_molmo -- molmo`:
the tiny Molmo-7B-D-layout fixture (tests/fixtures/hf/molmo, float32, CPU, 2 threads) run by the
checkpoint's own `MolmoForCausalLM` (remote code of allenai/Molmo-7B-D-0924), timed the same way
as the Rust side (one warm-up, then `iters` runs; best and mean):

* forward: one pass over the golden prompt (`input.input_ids`, `input.images`,
  `input.image_input_idx`, `input.image_masks`: 79 tokens, 2 crops), logits at every position,
  no KV cache kept (`use_cache=False`);
* generate 20: greedy decoding of 20 new tokens with the remote model's own generation path,
  `MolmoForCausalLM.generate_from_batch(batch, GenerationConfig(max_new_tokens=20,
  min_new_tokens=20, do_sample=False, use_cache=True))` (transformers' `generate` with the remote
  `prepare_inputs_for_generation`: the prefill sees the images, then one token per step with the
  key/value cache). `min_new_tokens=20` keeps EOS from ending it early. The tokens must equal the
  golden's `generate.output_ids` (made by full forwards without a cache).

The model is built and loaded exactly as `make_molmo_refs.py` reloads the fixture: its
`tiny_model` on `MolmoConfig.from_pretrained(fixture)`, then `load_state_dict` of the fixture's
`model.safetensors`. The remote code is imported from `--remote-code DIR` (the unmodified files
of allenai/Molmo-7B-D-0924, as for make_molmo_refs.py); xlvlm does not ship it.

Environment used (`/work/venvs/molmo`): Python 3.11.7, transformers 4.55.0, torch 2.15.0 (CPU),
tensorflow-cpu 2.21.0 (imported by the remote processor module), einops 0.8.2, numpy 2.4.6,
safetensors 0.8.0.

Usage: python tools/refgen/model_bench_molmo.py --remote-code DIR [iters]      (iters: default 20)
"""
import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import GenerationConfig, GenerationMixin  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_molmo_refs import load_remote, tiny_model  # noqa: E402

FIXTURE = os.path.join(HERE, "..", "..", "tests", "fixtures", "hf", "molmo")
NEW_TOKENS = 20


def report(what, tokens, times):
    best, mean = min(times), sum(times) / len(times)
    print(f"molmo tiny {what} [remote code, transformers {transformers.__version__}, torch {torch.__version__}]: "
          f"{tokens} tokens, best {best:.4f}s mean {mean:.4f}s -> {tokens / best:.1f} tokens/s (best), "
          f"{tokens / mean:.1f} (mean)")


def timed(iters, run):
    """One warm-up, then `iters` timed runs (seconds each)."""
    run()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return times


def with_generation(model):
    """What the remote code expects of the transformers it was written for (4.4x), on 4.55: the
    model's class becomes a subclass of the remote one that (1) adds `GenerationMixin`, which
    `PreTrainedModel` no longer brings since 4.50 (else `generate_from_batch`'s
    `super().generate(...)` finds no `generate`), and (2) keeps `generate` from making a
    `DynamicCache` up front: the remote forward takes the legacy per-layer `(key, value)` tuples it
    returns itself (else its `past_key_values[0][0].size(-2)` fails on the empty cache). Nothing
    of the remote code changes."""
    model.__class__ = type("MolmoForCausalLMWithGeneration", (type(model), GenerationMixin), {
        "_supports_default_dynamic_cache": classmethod(lambda cls: False),
    })


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--remote-code", required=True, help="folder with the remote-code files of Molmo-7B-D-0924")
    ap.add_argument("iters", nargs="?", type=int, default=20)
    a = ap.parse_args()
    if a.iters < 1:
        sys.exit("iters must be at least 1")
    torch.set_num_threads(2)
    remote = load_remote(a.remote_code)
    model = tiny_model(remote, remote.config.MolmoConfig.from_pretrained(FIXTURE))
    model.load_state_dict(load_file(os.path.join(FIXTURE, "model.safetensors")))
    model.eval()
    with_generation(model)
    golden = load_file(os.path.join(FIXTURE, "golden.safetensors"))
    inputs = {k: golden[f"input.{k}"] for k in ("input_ids", "images", "image_input_idx", "image_masks")}
    expected = golden["generate.output_ids"]
    tokens = inputs["input_ids"].shape[1]

    def forward():
        model(**inputs, use_cache=False, return_dict=True)

    config = GenerationConfig(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
                              num_beams=1, use_cache=True, eos_token_id=model.config.eos_token_id,
                              pad_token_id=model.config.pad_token_id)

    def generate():
        out = model.generate_from_batch(inputs, config)
        new = out[:, tokens:]
        if not torch.equal(new, expected):
            sys.exit(f"generate_from_batch gave {new.tolist()}, the golden has {expected.tolist()}")

    with torch.no_grad():
        report("forward", tokens, timed(a.iters, forward))
        report(f"generate {NEW_TOKENS}", NEW_TOKENS, timed(a.iters, generate))


if __name__ == "__main__":
    main()
