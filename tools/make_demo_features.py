#!/usr/bin/env python3
"""Make the small demo feature files under data/demo/ (committed; rerun only on purpose).

Two feature sets of the same 400 samples, as a model before and after fine-tuning would give:
six latent "concepts" (cluster centres) in 48 dimensions; each sample is its concept's centre
plus noise. The fine-tuned features add a per-concept shift. About 10% of samples did not
produce the token of interest (`toi_found = false`), as in real extractions.

    python3 tools/make_demo_features.py          # needs numpy and pyarrow
"""
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

N, D, K = 400, 48, 6
CONCEPTS = ["red", "green", "blue", "yellow", "purple", "orange"]
out = pathlib.Path(__file__).resolve().parent.parent / "data" / "demo"
out.mkdir(parents=True, exist_ok=True)

rng = np.random.default_rng(0)
centres = rng.normal(0, 3, (K, D)).astype(np.float32)
shifts = rng.normal(0, 1.5, (K, D)).astype(np.float32)
labels = rng.integers(0, K, N)
original = centres[labels] + rng.normal(0, 1, (N, D)).astype(np.float32)
finetuned = original + shifts[labels] + rng.normal(0, 0.3, (N, D)).astype(np.float32)
found = rng.random(N) > 0.1
ids = [f"img-{i:04d}" for i in range(N)]


def write(name, vectors, found_mask):
    table = pa.table({
        "sample_id": pa.array(ids),
        "concept": pa.array([CONCEPTS[k] for k in labels]),
        "toi_found": pa.array(found_mask),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), D),
    })
    pq.write_table(table, out / name, compression="zstd")


write("original.parquet", original, found)
write("finetuned.parquet", finetuned, found & (rng.random(N) > 0.05))
print("wrote", sorted(p.name for p in out.iterdir()))
