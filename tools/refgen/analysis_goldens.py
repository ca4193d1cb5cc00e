#!/usr/bin/env python3
"""Goldens for crates/analysis: scikit-learn 1.9.1 / scipy results on small float32 matrices.

Every input matrix is written as float32 .npy and handed to scikit-learn as float64, so the
reference is computed at full precision from exactly the values the Rust side reads.

Usage: python tools/refgen/analysis_goldens.py crates/analysis/tests/goldens
(venv: scikit-learn==1.9.1 numpy scipy threadpoolctl)
"""
import os
import sys

import numpy as np
import scipy
import sklearn
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.decomposition import PCA, DictionaryLearning

out = sys.argv[1]
os.makedirs(out, exist_ok=True)


def save(name, arr, dtype=None):
    arr = np.ascontiguousarray(arr)
    if dtype is not None:
        arr = np.ascontiguousarray(arr.astype(dtype))
    np.save(os.path.join(out, name + ".npy"), arr)


rng = np.random.RandomState(20261127)


def low_rank(n, d, rank, noise):
    scales = 3.0 * 0.6 ** np.arange(rank)
    a = rng.randn(n, rank) * scales
    b = np.linalg.qr(rng.randn(d, rank))[0].T
    return (a @ b + noise * rng.randn(n, d) + rng.randn(d)).astype(np.float32)


# PCA, tall (D x D Gram) and wide (N x N Gram) cases, 5 components.
for name, (n, d) in {"pca_tall": (200, 64), "pca_wide": (40, 64)}.items():
    x = low_rank(n, d, 8, 0.05)
    m = PCA(n_components=5, svd_solver="full").fit(x.astype(np.float64))
    save(f"{name}_x", x)
    save(f"{name}_explained_variance", m.explained_variance_, np.float64)
    save(f"{name}_explained_variance_ratio", m.explained_variance_ratio_, np.float64)
    save(f"{name}_components", m.components_, np.float64)
    save(f"{name}_mean", m.mean_, np.float64)
    save(f"{name}_transform", m.transform(x[:20].astype(np.float64)), np.float64)

# The solver PCA(svd_solver="auto") picks for some shapes (rows, cols, k, 0=full/covariance_eigh 1=randomized).
rule = []
for n, d, k in [(200, 64, 5), (600, 64, 5), (700, 700, 5), (700, 700, 600), (5000, 4096, 20),
                (20000, 900, 20), (20000, 1100, 20), (501, 20, 3), (300, 400, 10)]:
    m = PCA(n_components=k, svd_solver="auto")
    m.fit(np.random.RandomState(0).randn(n, d))
    rule.append([n, d, k, 1 if m._fit_svd_solver == "randomized" else 0])
save("pca_auto_rule", np.array(rule), np.int64)

# k-means from a given init (k-means++ centres picked by scikit-learn), n_init=1.
k = 6
centres = rng.randn(k, 64) * 2.0
labels = rng.randint(0, k, size=200)
x = (centres[labels] + 1.3 * rng.randn(200, 64)).astype(np.float32)
init, _ = kmeans_plusplus(x.astype(np.float64), k, random_state=3)
m = KMeans(n_clusters=k, init=init, n_init=1, max_iter=300, tol=1e-4).fit(x.astype(np.float64))
save("kmeans_x", x)
save("kmeans_init", init, np.float32)
save("kmeans_inertia", np.array(m.inertia_), np.float64)
save("kmeans_labels", m.labels_, np.int64)
save("kmeans_centres", m.cluster_centers_, np.float64)
save("kmeans_n_iter", np.array(m.n_iter_), np.int64)
save("kmeans_distances", m.transform(x[:20].astype(np.float64)), np.float64)

# DictionaryLearning(positive_code=True, cd, lasso_cd), the xl-vlms `snmf`, from a given init.
k = 8
atoms = rng.randn(k, 64)
atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
codes = np.maximum(rng.randn(200, k), 0) * 3.0
x = (codes @ atoms + 0.1 * rng.randn(200, 64)).astype(np.float32)
# Start near (not at) the planted factors so that no atom falls out of use: scikit-learn
# re-draws unused atoms from its own random stream, which no other implementation reproduces.
dict_init = (atoms + 0.5 * rng.randn(k, 64)).astype(np.float32)
dict_init /= np.linalg.norm(dict_init, axis=1, keepdims=True)
code_init = np.abs(codes + rng.randn(200, k)).astype(np.float32)
dl = DictionaryLearning(n_components=k, alpha=1.0, max_iter=20, tol=1e-12, fit_algorithm="cd",
                        transform_algorithm="lasso_cd", positive_code=True,
                        dict_init=dict_init.astype(np.float64), code_init=code_init.astype(np.float64),
                        random_state=0)
code = dl.fit_transform(x.astype(np.float64))
from sklearn.decomposition import dict_learning
for it in range(1, 21):  # guard: every atom stays in use at every iteration
    c, _, _ = dict_learning(x.astype(np.float64), k, alpha=1.0, max_iter=it, tol=1e-12, method="cd",
                            dict_init=dict_init.astype(np.float64), code_init=code_init.astype(np.float64),
                            positive_code=True, random_state=0)
    assert (c ** 2).sum(0).min() > 1e-6, f"an atom fell out of use at iteration {it}"
save("dl_x", x)
save("dl_dict_init", dict_init)
save("dl_code_init", code_init)
save("dl_costs", np.array(dl.error_), np.float64)
save("dl_dictionary", dl.components_, np.float64)
save("dl_code", code, np.float64)
save("dl_transform", dl.transform(x[:20].astype(np.float64)), np.float64)

# Linear sum assignment, square and rectangular.
for name, (r, c) in {"lsa_square": (7, 7), "lsa_wide": (5, 8), "lsa_tall": (8, 5)}.items():
    cost = rng.randn(r, c)
    rows, cols = linear_sum_assignment(cost)
    save(f"{name}_cost", cost, np.float64)
    save(f"{name}_cols", cols, np.int64)
    save(f"{name}_rows", rows, np.int64)

# k-means where one initial centre is far from every point: its cluster is empty at the first
# iteration and scikit-learn re-seeds it with the point farthest from its centre.
x = np.load(os.path.join(out, "kmeans_x.npy"))
init = np.vstack([x[:3], np.full((1, 64), 1000.0, dtype=np.float32)]).astype(np.float32)
m = KMeans(n_clusters=4, init=init.astype(np.float64), n_init=1, max_iter=300, tol=1e-4).fit(x.astype(np.float64))
save("kmeans_empty_init", init)
save("kmeans_empty_inertia", np.array(m.inertia_), np.float64)
save("kmeans_empty_labels", m.labels_, np.int64)
save("kmeans_empty_n_iter", np.array(m.n_iter_), np.int64)

with open(os.path.join(out, "VERSIONS.txt"), "w") as f:
    f.write(f"scikit-learn {sklearn.__version__}\nscipy {scipy.__version__}\nnumpy {np.__version__}\n"
            "generated by tools/refgen/analysis_goldens.py\n")
print("ok", sorted(os.listdir(out)))
