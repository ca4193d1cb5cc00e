#!/usr/bin/env python3
"""scikit-learn side of crates/analysis/BENCHMARKS.md.

Writes a random 5000x4096 float32 matrix (numpy RandomState(0).randn) to OUT/x.npy and a
k-means++ initialisation of it to OUT/kmeans_init.npy, then times, each in its own process with a
wall-clock cap: PCA(20) randomized and full, KMeans(20) (k-means++, n_init='auto' = 1) and KMeans from
the saved init, and DictionaryLearning(20, positive_code=True, fit_algorithm='cd',
transform_algorithm='lasso_cd') — xl-vlms' `snmf`. scikit-learn gets the float32 values as float64, as
in shared/reference/refgen/sklearn_timing.py. DictionaryLearning runs with verbose=2 so the cost it
reached before the cap can be read from its per-iteration lines.

Usage: python analysis_bench.py OUT_DIR [--cap 300] [--shape 5000x4096] > sklearn.jsonl
Then:  cargo run --release -p xlvlm-analysis --example bench_decompose -- OUT_DIR/x.npy \
           --kmeans-init OUT_DIR/kmeans_init.npy --snmf-target <dl best_cost>
(the benchmark's snmf is the accelerated scheme; add --snmf-plain for scikit-learn's own)
"""
import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time

import numpy as np

CHILD = r'''
import sys, time, json, numpy as np
from threadpoolctl import threadpool_info
algo, path, init_path = sys.argv[1], sys.argv[2], sys.argv[3]
X = np.load(path).astype(np.float64)
t = time.time()
if algo in ("pca_randomized", "pca_full"):
    from sklearn.decomposition import PCA
    m = PCA(n_components=20, svd_solver=algo[4:], random_state=0).fit(X)
    extra = {"explained_variance_sum": float(m.explained_variance_.sum()),
             "evr_sum": float(m.explained_variance_ratio_.sum())}
elif algo in ("kmeans", "kmeans_init"):
    from sklearn.cluster import KMeans
    init = np.load(init_path).astype(np.float64) if algo == "kmeans_init" else "k-means++"
    m = KMeans(n_clusters=20, init=init, n_init=1 if algo == "kmeans_init" else "auto", random_state=0).fit(X)
    extra = {"inertia": float(m.inertia_), "n_iter": int(m.n_iter_)}
elif algo == "dl":
    from sklearn.decomposition import DictionaryLearning
    m = DictionaryLearning(n_components=20, positive_code=True, fit_algorithm="cd",
                           transform_algorithm="lasso_cd", random_state=0, verbose=2)
    m.fit(X)
    extra = {"n_iter": int(m.n_iter_), "cost": float(m.error_[-1])}
print("RESULT", json.dumps({"seconds": round(time.time() - t, 2), **extra,
      "blas": [(i["internal_api"], i["num_threads"]) for i in threadpool_info()]}), flush=True)
'''

ITER = re.compile(r"Iteration\s+(\d+) \(elapsed time:\s*(\d+)s.*current cost\s+([-\d.e+naninf]+)\)")


def child_cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(algo, path, init_path, cap):
    t, cpu0 = time.time(), child_cpu_seconds()
    try:
        p = subprocess.run([sys.executable, "-u", "-c", CHILD, algo, path, init_path],
                           capture_output=True, text=True, timeout=cap)
        out, status = p.stdout, ("ok" if p.returncode == 0 else f"rc={p.returncode} {p.stderr[-300:]}")
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        status = f"timeout after {cap}s"
    # CPU seconds of the child (all threads; loading X included): unlike wall time, not
    # stretched by other jobs on the machine.
    rec = {"algo": algo, "status": status, "wall_s": round(time.time() - t, 1),
           "cpu_s": round(child_cpu_seconds() - cpu0, 1)}
    res = [json.loads(l[7:]) for l in out.splitlines() if l.startswith("RESULT")]
    if res:
        rec["result"] = res[0]
    if algo == "dl":
        # "Iteration i (elapsed ...s, current cost C)" prints the cost after iteration i-1.
        costs = [(int(m.group(1)), int(m.group(2)), float(m.group(3)))
                 for m in map(ITER.search, out.splitlines()) if m]
        finite = [c for c in costs if np.isfinite(c[2])]
        rec["iterations_started"] = len(costs)
        if finite:
            rec["first_cost"] = finite[0][2]
            rec["best_cost"] = min(c[2] for c in finite)
            rec["elapsed_at_best_s"] = finite[-1][1]
        rec["first_lines"], rec["last_lines"] = costs[:3], costs[-3:]
    return rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--cap", type=int, default=300)
    ap.add_argument("--shape", default="5000x4096")
    ap.add_argument("--algos", default="pca_randomized,pca_full,kmeans,kmeans_init,dl")
    a = ap.parse_args()
    n, d = map(int, a.shape.split("x"))
    os.makedirs(a.out, exist_ok=True)
    path, init_path = os.path.join(a.out, "x.npy"), os.path.join(a.out, "kmeans_init.npy")
    X = np.random.RandomState(0).randn(n, d).astype(np.float32)
    np.save(path, X)
    from sklearn.cluster import kmeans_plusplus
    init, _ = kmeans_plusplus(X.astype(np.float64), 20, random_state=0)
    np.save(init_path, init.astype(np.float32))
    for algo in filter(None, a.algos.split(",")):
        print(json.dumps(run(algo, path, init_path, a.cap)), flush=True)


if __name__ == "__main__":
    main()
