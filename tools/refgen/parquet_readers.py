#!/usr/bin/env python3
"""Reference files and reader checks for xlvlm-store (pip install pyarrow polars duckdb numpy safetensors).

  fixtures OUT_DIR   Write small input files the way other tools write them (pyarrow Parquet with
                     snappy/List<float64>/Float16/dictionary strings/nulls, numpy .npy in several
                     dtypes and orders, safetensors) plus expected.json with their values. The Rust
                     tests in crates/store/tests/ read them; Python is not needed to run the tests.
  check FILE...      Read Parquet files written by xlvlm (e.g. by `cargo run --example sample_table`)
                     with pyarrow, polars and duckdb, check that all three agree with the values
                     the example writes, and print schemas, metadata and timings.
  bench [ROWS DIM REPEATS]  pyarrow writing and reading the table of
                     crates/store/examples/bench_parquet.rs (Gaussian float32 vectors, sample_id,
                     position), with pyarrow's defaults and with xlvlm's settings (zstd, no
                     dictionary and BYTE_STREAM_SPLIT for the vector column).
"""
import json
import os
import sys
import time

import numpy as np


def fixtures(out):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from safetensors.numpy import save_file

    os.makedirs(out, exist_ok=True)
    expected = {}

    # A "foreign" feature file: pandas/pyarrow defaults (snappy, dictionary strings), a variable
    # length list<double> vector column whose rows all have length 3, a fixed-size half column.
    emb = np.arange(12, dtype=np.float64).reshape(4, 3) / 8.0 - 0.5
    emb16 = (np.arange(8, dtype=np.float16).reshape(4, 2) / np.float16(4)).astype(np.float16)
    table = pa.table({
        "id": pa.array([10, 11, 12, 13], pa.int32()),
        "name": pa.array(["a", "b", "a", "c"]).dictionary_encode(),
        "score": pa.array([0.5, 1.5, -2.0, 3.25], pa.float32()),
        "flag": pa.array([True, False, True, True]),
        "big": pa.array([1, 2, 3, 2**40], pa.uint64()),
        "emb": pa.array(list(map(list, emb)), pa.list_(pa.float64())),
        "emb16": pa.FixedSizeListArray.from_arrays(pa.array(emb16.ravel(), pa.float16()), 2),
    })
    table = table.replace_schema_metadata({"source": "pyarrow", "model": "tiny"})
    pq.write_table(table, os.path.join(out, "pyarrow_mixed.parquet"), compression="snappy")
    expected["pyarrow_mixed.parquet"] = {
        "id": [10, 11, 12, 13], "name": ["a", "b", "a", "c"], "score": [0.5, 1.5, -2.0, 3.25],
        "flag": [True, False, True, True], "big": [1, 2, 3, 2**40],
        "emb": {"dim": 3, "values": emb.astype(np.float32).ravel().tolist()},
        "emb16": {"dim": 2, "values": emb16.astype(np.float32).ravel().tolist()},
        "metadata": {"source": "pyarrow", "model": "tiny"},
    }
    # Ragged list: row 2 has 2 values instead of 3.
    ragged = pa.table({"v": pa.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0]], pa.list_(pa.float32()))})
    pq.write_table(ragged, os.path.join(out, "pyarrow_ragged.parquet"), compression="zstd")
    # A null in a scalar column at row 1.
    nulls = pa.table({"x": pa.array([1.0, None, 3.0], pa.float64())})
    pq.write_table(nulls, os.path.join(out, "pyarrow_null.parquet"), compression="zstd")
    # A type xlvlm does not read (timestamp).
    ts = pa.table({"t": pa.array([0, 1], pa.timestamp("s"))})
    pq.write_table(ts, os.path.join(out, "pyarrow_timestamp.parquet"), compression="zstd")

    # numpy .npy in every accepted layout, plus two rejected ones.
    m = (np.arange(15, dtype=np.float64).reshape(3, 5) - 7.0) / 4.0
    cases = {
        "f4_c.npy": m.astype("<f4"),
        "f8_fortran.npy": np.asfortranarray(m.astype("<f8")),
        "f2_c.npy": m.astype("<f2"),
        "f4_big_endian.npy": m.astype(">f4"),
        "f4_fortran_big_endian.npy": np.asfortranarray(m.astype(">f4")),
    }
    for name, arr in cases.items():
        np.save(os.path.join(out, name), arr)
        expected[name] = {"rows": 3, "cols": 5, "values": m.astype(np.float32).ravel().tolist()}
    np.save(os.path.join(out, "f4_1d.npy"), np.arange(4, dtype=np.float32))
    np.save(os.path.join(out, "i4_2d.npy"), np.arange(6, dtype=np.int32).reshape(2, 3))

    # safetensors: one 2-D tensor beside a 1-D one; two 2-D tensors (needs a name).
    concepts = (np.arange(8, dtype=np.float32).reshape(2, 4) - 3.0) / 2.0
    save_file({"concepts": concepts, "bias": np.ones(4, np.float32)}, os.path.join(out, "one_matrix.safetensors"))
    save_file({"a": concepts.astype(np.float16), "b": np.zeros((3, 2), np.float64)},
              os.path.join(out, "two_matrices.safetensors"))
    expected["one_matrix.safetensors"] = {"rows": 2, "cols": 4, "values": concepts.ravel().tolist()}
    expected["two_matrices.safetensors:a"] = {"rows": 2, "cols": 4, "values": concepts.ravel().tolist()}
    expected["two_matrices.safetensors:b"] = {"rows": 3, "cols": 2, "values": [0.0] * 6}

    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")
    import pyarrow
    import safetensors
    print("wrote fixtures to", out, "with pyarrow", pyarrow.__version__, "numpy", np.__version__,
          "safetensors", safetensors.__version__)


def sample_vector(rows, dim, half):
    """The values crates/store/examples/sample_table.rs writes: exact in float16 and float32."""
    r = np.arange(rows)[:, None]
    d = np.arange(dim)[None, :]
    v = ((r * dim + d) % 97).astype(np.float64) / 8.0 - 6.0
    return v.astype(np.float16 if half else np.float32)


def check(paths):
    import duckdb
    import polars as pl
    import pyarrow.parquet as pq

    print("versions: pyarrow", __import__("pyarrow").__version__, "polars", pl.__version__, "duckdb", duckdb.__version__)
    ok = True
    for path in paths:
        t0 = time.time(); at = pq.read_table(path); t1 = time.time()
        pf = pl.read_parquet(path); t2 = time.time()
        con = duckdb.connect()
        dd = con.sql(f"SELECT * FROM read_parquet('{path}')").arrow()
        if hasattr(dd, "read_all"):
            dd = dd.read_all()
        t3 = time.time()
        md = pq.ParquetFile(path).metadata
        print(f"== {path}: rows {at.num_rows} | read s: pyarrow {t1 - t0:.3f} polars {t2 - t1:.3f} duckdb {t3 - t2:.3f}")
        print("pyarrow schema:", at.schema.to_string(show_schema_metadata=False).replace("\n", "; "))
        print("polars dtypes:", dict(zip(pf.columns, map(str, pf.dtypes))))
        print("duckdb types:", con.sql(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall())
        kv = {k.decode(): v.decode() for k, v in (md.metadata or {}).items() if k != b"ARROW:schema"}
        print("created_by:", md.created_by, "| key-value metadata:", kv,
              "| codec:", md.row_group(0).column(0).compression if md.num_row_groups else None)
        for rg in range(md.num_row_groups):
            for c in range(md.num_columns):
                col = md.row_group(rg).column(c)
                if rg == 0:
                    print(f"  column {col.path_in_schema}: encodings {col.encodings} {col.compression}")
        rows = at.num_rows
        for name in at.column_names:
            col = at.column(name)
            if col.type.__class__.__name__ == "FixedSizeListType":
                dim = col.type.list_size
                half = str(col.type.value_type) == "halffloat"
                want = sample_vector(rows, dim, half)
                got_pa = np.stack([np.asarray(x, dtype=want.dtype) for x in col.to_pylist()]) if rows else want
                got_pl = np.asarray(pf[name].to_list(), dtype=want.dtype).reshape(rows, dim) if rows else want
                got_dd = np.asarray(dd.column(name).to_pylist(), dtype=want.dtype).reshape(rows, dim) if rows else want
                for tool, got in (("pyarrow", got_pa), ("polars", got_pl), ("duckdb", got_dd)):
                    good = np.array_equal(got, want)
                    ok &= good
                    print(f"  {name}: {tool} values {'match' if good else 'DIFFER'} (dim {dim}, half {half})")
            else:
                a = col.to_pylist()
                good = a == pf[name].to_list() == dd.column(name).to_pylist()
                ok &= good
                print(f"  {name}: pyarrow/polars/duckdb {'agree' if good else 'DISAGREE'}: {a[:3]}...")
    print("ALL OK" if ok else "MISMATCH")
    return 0 if ok else 1


def bench(rows, dim, repeats):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import tempfile

    vec = np.random.RandomState(42).randn(rows, dim).astype(np.float32)
    print("pyarrow", pa.__version__, "numpy", np.__version__)
    for half in (False, True):
        values = vec.astype(np.float16) if half else vec
        vtype = pa.float16() if half else pa.float32()
        item = pa.field("item", vtype, nullable=False)
        table = pa.table({
            "sample_id": pa.array([f"sample-{i}" for i in range(rows)]),
            "position": pa.array(np.arange(rows), pa.int64()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(values.ravel(), vtype), type=pa.list_(item, dim)),
        })
        settings = {
            "pyarrow defaults + zstd": dict(compression="zstd"),
            "xlvlm settings": dict(compression="zstd", use_dictionary=["sample_id", "position"],
                                   use_byte_stream_split=[] if half else ["vector.list.element"],
                                   column_encoding=None),
        }
        for label, kwargs in settings.items():
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "t.parquet")
                w, r = [], []
                for _ in range(repeats):
                    t = time.perf_counter(); pq.write_table(table, path, **kwargs); w.append(time.perf_counter() - t)
                    t = time.perf_counter(); back = pq.read_table(path)
                    flat = back.column("vector").combine_chunks().flatten().to_numpy()
                    if half:
                        flat = flat.astype(np.float32)
                    r.append(time.perf_counter() - t)
                assert back.num_rows == rows
                size = os.path.getsize(path)
            raw = rows * dim * 4
            print(f"pyarrow {rows}x{dim} {'float16' if half else 'float32'} [{label}]: write {np.median(w):.3f} s "
                  f"({raw / 1e6 / np.median(w):.0f} MB/s of f32), read+to f32 numpy {np.median(r):.3f} s "
                  f"({raw / 1e6 / np.median(r):.0f} MB/s), file {size / 1e6:.1f} MB ({size / raw:.2f}x of raw f32); "
                  f"median of {repeats}")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "fixtures":
        fixtures(sys.argv[2])
    elif len(sys.argv) >= 2 and sys.argv[1] == "bench":
        rows, dim, repeats = (list(map(int, sys.argv[2:5])) + [5000, 4096, 5][len(sys.argv[2:5]):])
        bench(rows, dim, repeats)
    elif len(sys.argv) >= 3 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2:]))
    else:
        print(__doc__)
        sys.exit(2)
