//! Reading files written by other tools: the fixtures were written by pyarrow, numpy and the
//! safetensors Python package (tools/refgen/parquet_readers.py), with their values in
//! expected.json.

use std::path::PathBuf;

use serde_json::Value;
use xlvlm_store::{
    Column, StoreError, read_matrix_npy, read_matrix_parquet, read_matrix_safetensors,
    read_parquet, read_row_ids,
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

fn matrix(value: &Value) -> (usize, usize, Vec<f32>) {
    (
        value["rows"].as_u64().unwrap() as usize,
        value["cols"].as_u64().unwrap() as usize,
        floats(&value["values"]),
    )
}

#[test]
fn pyarrow_file_with_lists_dictionaries_half_and_snappy() {
    let want = &expected()["pyarrow_mixed.parquet"];
    let table = read_parquet(&fixture("pyarrow_mixed.parquet")).unwrap();
    let ints = |name: &str| -> Vec<i64> {
        want[name]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect()
    };
    assert_eq!(table.ints("id").unwrap(), ints("id"));
    assert_eq!(table.ints("big").unwrap(), ints("big"));
    let names: Vec<String> = want["name"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(table.strings("name").unwrap(), names);
    let scores: Vec<f64> = want["score"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(table.floats("score").unwrap(), scores);
    let flags: Vec<bool> = want["flag"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_bool().unwrap())
        .collect();
    assert_eq!(table.bools("flag").unwrap(), flags);
    let emb = table.vector("emb").unwrap();
    assert_eq!((emb.0, emb.1.to_vec()), (3, floats(&want["emb"]["values"])));
    match table.column("emb16").unwrap() {
        Column::Vector { dim, values, half } => {
            assert_eq!((*dim, *half), (2, true));
            assert_eq!(values, &floats(&want["emb16"]["values"]));
        }
        other => panic!("emb16 read as {}", other.type_name()),
    }
    assert_eq!(
        table.metadata.get("source").map(String::as_str),
        Some("pyarrow")
    );
    assert_eq!(
        table.metadata.get("model").map(String::as_str),
        Some("tiny")
    );

    let (rows, cols, values) =
        read_matrix_parquet(&fixture("pyarrow_mixed.parquet"), Some("emb")).unwrap();
    assert_eq!((rows, cols, values), (4, 3, floats(&want["emb"]["values"])));
    let err = read_matrix_parquet(&fixture("pyarrow_mixed.parquet"), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("several vector columns") && err.contains("emb16"),
        "{err}"
    );
}

#[test]
fn bad_pyarrow_files_give_errors_naming_file_column_and_row() {
    let err = read_parquet(&fixture("pyarrow_ragged.parquet"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pyarrow_ragged.parquet") && err.contains("\"v\"") && err.contains("row 2"),
        "{err}"
    );
    let err = read_parquet(&fixture("pyarrow_null.parquet"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pyarrow_null.parquet") && err.contains("null value at row 1"),
        "{err}"
    );
    let err = read_parquet(&fixture("pyarrow_timestamp.parquet")).unwrap_err();
    assert!(matches!(err, StoreError::Format { .. }), "{err}");
    assert!(
        err.to_string().contains("column \"t\" has type Timestamp"),
        "{err}"
    );
}

#[test]
fn npy_in_every_dtype_and_order() {
    let want = expected();
    for name in [
        "f4_c.npy",
        "f8_fortran.npy",
        "f2_c.npy",
        "f4_big_endian.npy",
        "f4_fortran_big_endian.npy",
    ] {
        let got = read_matrix_npy(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, matrix(&want[name]), "{name}");
    }
}

#[test]
fn npy_that_is_not_a_float_matrix_is_rejected() {
    let err = read_matrix_npy(&fixture("f4_1d.npy"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("f4_1d.npy") && err.contains("1 dimensions"),
        "{err}"
    );
    let err = read_matrix_npy(&fixture("i4_2d.npy"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("i4_2d.npy") && err.contains("not a float"),
        "{err}"
    );
    let err = read_matrix_npy(&fixture("one_matrix.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a .npy file"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.npy");
    let bytes = std::fs::read(fixture("f4_c.npy")).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 4]).unwrap();
    let err = read_matrix_npy(&cut).unwrap_err().to_string();
    assert!(
        err.contains("cut.npy") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn safetensors_matrices() {
    let want = expected();
    let got = read_matrix_safetensors(&fixture("one_matrix.safetensors"), None).unwrap();
    assert_eq!(got, matrix(&want["one_matrix.safetensors"]));
    let got = read_matrix_safetensors(&fixture("two_matrices.safetensors"), Some("a")).unwrap();
    assert_eq!(got, matrix(&want["two_matrices.safetensors:a"]));
    let got = read_matrix_safetensors(&fixture("two_matrices.safetensors"), Some("b")).unwrap();
    assert_eq!(got, matrix(&want["two_matrices.safetensors:b"]));

    let err = read_matrix_safetensors(&fixture("two_matrices.safetensors"), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("several 2-D tensors") && err.contains("\"a\""),
        "{err}"
    );
    let err = read_matrix_safetensors(&fixture("one_matrix.safetensors"), Some("bias"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("shape [4]"), "{err}");
    let err = read_matrix_safetensors(&fixture("one_matrix.safetensors"), Some("nope"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no tensor \"nope\"") && err.contains("concepts"),
        "{err}"
    );
}

#[test]
fn row_ids_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ids.txt");
    std::fs::write(&path, "img-1\r\nimg-2\nimg 3\n").unwrap();
    assert_eq!(read_row_ids(&path, 3).unwrap(), ["img-1", "img-2", "img 3"]);
    let err = read_row_ids(&path, 4).unwrap_err().to_string();
    assert!(
        err.contains("ids.txt") && err.contains("3 ids") && err.contains("4 rows"),
        "{err}"
    );
    std::fs::write(&path, "a\n\nc").unwrap();
    let err = read_row_ids(&path, 3).unwrap_err().to_string();
    assert!(err.contains("line 2 is empty"), "{err}");
}
