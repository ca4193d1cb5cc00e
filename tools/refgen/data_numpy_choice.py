"""Goldens for xlvlm-data's `dataset_size` subsets: the indices that
`np.random.default_rng(seed).choice(population, size, replace=False)` returns, which is how the
Python seed draws a dataset subset (it passes the list of items instead of a count; the
items picked are the same).

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install numpy==2.2.6
    /tmp/venv/bin/python tools/refgen/data_numpy_choice.py > crates/data/tests/fixtures/numpy_choice.json
"""
import json

import numpy as np

CASES = [
    # (seed, population, size): Floyd's algorithm below 10 000 or for small fractions,
    # the tail shuffle above; seeds of one and two 32-bit words; empty and full draws.
    (0, 100, 10),
    (0, 10, 10),
    (1, 100, 10),
    (42, 1000, 999),
    (2**40 + 7, 500, 20),
    (2**32 - 1, 50, 5),
    (0, 5, 0),
    (3, 20000, 400),
    (5, 20000, 401),
    (0, 20000, 600),
    (7, 10001, 300),
    (123, 123456, 2000),
]


def main():
    cases = []
    for seed, population, size in CASES:
        indices = np.random.default_rng(seed).choice(population, size, replace=False)
        cases.append({"seed": seed, "population": population, "size": size,
                      "indices": [int(i) for i in indices]})
    # The seed passes its list of items; the same items come out.
    items = [{"id": i} for i in range(100)]
    by_items = np.random.default_rng(0).choice(items, 10, replace=False)
    assert [item["id"] for item in by_items] == cases[0]["indices"]
    print(json.dumps({"numpy": np.__version__, "cases": cases}))


if __name__ == "__main__":
    main()
