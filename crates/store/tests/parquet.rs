//! Parquet round trips, determinism and error reporting of feature tables.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{Float32Array, ListArray, RecordBatch};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::file::reader::{FileReader, SerializedFileReader};
use xlvlm_store::{
    Column, FeatureTable, StoreError, read_parquet, read_parquet_columns, write_parquet,
};

fn every_type_table(rows: usize) -> FeatureTable {
    let dim = 5;
    let vector: Vec<f32> = (0..rows * dim)
        .map(|i| (i % 97) as f32 / 8.0 - 6.0)
        .collect();
    FeatureTable::new()
        .with_column(
            "sample_id",
            Column::Utf8((0..rows).map(|i| format!("s{i}-é")).collect()),
        )
        .with_column(
            "position",
            Column::Int64((0..rows as i64).map(|i| i * 7 - 3).collect()),
        )
        .with_column(
            "score",
            Column::Float64((0..rows).map(|i| i as f64 * 0.25 - 1e300).collect()),
        )
        .with_column(
            "toi_found",
            Column::Bool((0..rows).map(|i| i % 3 == 0).collect()),
        )
        .with_column(
            "vector",
            Column::Vector {
                dim,
                values: vector.clone(),
                half: false,
            },
        )
        .with_column(
            "vector16",
            Column::Vector {
                dim,
                values: vector,
                half: true,
            },
        )
        .with_metadata("model", "toy-llava")
        .with_metadata("hooks", "lm.layers.1,lm.layers.2")
}

#[test]
fn every_column_type_round_trips_with_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.parquet");
    let table = every_type_table(300);
    write_parquet(&path, &table).unwrap();
    let back = read_parquet(&path).unwrap();
    // The Float16 values are multiples of 1/8 below 8 in magnitude: exact in f16.
    assert_eq!(back, table);
    assert_eq!(back.vector("vector16").unwrap().0, 5);
    assert_eq!(
        back.metadata.get("model").map(String::as_str),
        Some("toy-llava")
    );
    assert!(!back.metadata.contains_key("ARROW:schema"));
}

#[test]
fn float16_rounds_values_it_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.parquet");
    let values = vec![0.1f32, 1.0 / 3.0, 1000.7, -65504.0];
    let table = FeatureTable::new().with_column(
        "v",
        Column::Vector {
            dim: 2,
            values: values.clone(),
            half: true,
        },
    );
    write_parquet(&path, &table).unwrap();
    let (dim, back) = read_parquet(&path)
        .unwrap()
        .vector("v")
        .map(|(d, v)| (d, v.to_vec()))
        .unwrap();
    assert_eq!(dim, 2);
    let want: Vec<f32> = values
        .iter()
        .map(|&v| half::f16::from_f32(v).to_f32())
        .collect();
    assert_eq!(back, want);
    assert_ne!(back[0], 0.1);
}

#[test]
fn empty_table_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.parquet");
    let table = every_type_table(0);
    write_parquet(&path, &table).unwrap();
    let back = read_parquet(&path).unwrap();
    assert_eq!(back, table);
    assert_eq!(back.num_rows(), 0);
    assert_eq!(back.vector("vector").unwrap().0, 5);
}

#[test]
fn table_without_columns_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("none.parquet");
    let table = FeatureTable::new().with_metadata("note", "no columns");
    write_parquet(&path, &table).unwrap();
    assert_eq!(read_parquet(&path).unwrap(), table);
}

#[test]
fn nan_in_a_vector_is_an_error_naming_column_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nan.parquet");
    let mut values = vec![0.5f32; 12];
    values[7] = f32::NAN;
    let table = FeatureTable::new()
        .with_column("id", Column::Int64(vec![0, 1, 2, 3]))
        .with_column(
            "hidden",
            Column::Vector {
                dim: 3,
                values,
                half: false,
            },
        );
    let err = write_parquet(&path, &table).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::InvalidTable { .. }), "{message}");
    assert!(
        message.contains("\"hidden\"")
            && message.contains("row 2")
            && message.contains("nan.parquet"),
        "{message}"
    );
    assert!(!path.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn validate_reports_inconsistent_tables() {
    let cases = [
        (
            FeatureTable::new()
                .with_column("a", Column::Int64(vec![1, 2]))
                .with_column("b", Column::Bool(vec![true])),
            "column \"b\" has 1 rows",
        ),
        (
            FeatureTable::new().with_column(
                "v",
                Column::Vector {
                    dim: 4,
                    values: vec![0.0; 6],
                    half: false,
                },
            ),
            "not a multiple of dim 4",
        ),
        (
            FeatureTable::new().with_column(
                "v",
                Column::Vector {
                    dim: 0,
                    values: vec![],
                    half: false,
                },
            ),
            "dim 0",
        ),
        (
            FeatureTable::new()
                .with_column("a", Column::Int64(vec![1]))
                .with_column("a", Column::Int64(vec![2])),
            "appears twice",
        ),
        (
            FeatureTable::new().with_column(
                "h",
                Column::Vector {
                    dim: 1,
                    values: vec![1e6],
                    half: true,
                },
            ),
            "outside the Float16 range",
        ),
        (
            FeatureTable::new().with_column(
                "v",
                Column::Vector {
                    dim: 2,
                    values: vec![0.0, 0.0, f32::INFINITY, 0.0],
                    half: false,
                },
            ),
            "row 1, element 0",
        ),
    ];
    // Past the first scan chunk: the reported position is still exact.
    let mut wide = vec![0.25f32; 3000];
    wide[2500] = f32::NAN;
    let message = FeatureTable::new()
        .with_column(
            "w",
            Column::Vector {
                dim: 1000,
                values: wide,
                half: false,
            },
        )
        .validate()
        .unwrap_err()
        .to_string();
    assert!(message.contains("row 2, element 500"), "{message}");
    for (table, expected) in cases {
        let message = table.validate().unwrap_err().to_string();
        assert!(
            message.contains(expected),
            "{message:?} should contain {expected:?}"
        );
    }
    every_type_table(3).validate().unwrap();
}

#[test]
fn writes_are_deterministic_and_carry_no_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.parquet");
    let b = dir.path().join("b.parquet");
    write_parquet(&a, &every_type_table(1000)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    write_parquet(&b, &every_type_table(1000)).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let reader = SerializedFileReader::new(std::fs::File::open(&a).unwrap()).unwrap();
    let created_by = reader
        .metadata()
        .file_metadata()
        .created_by()
        .unwrap()
        .to_string();
    assert_eq!(created_by, "parquet-rs version 60.1.0");
    // No temporary files are left next to the output.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a.parquet", "b.parquet"]);
}

#[test]
fn vector_columns_use_zstd_without_dictionary() {
    use parquet::basic::{Compression, Encoding};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.parquet");
    write_parquet(&path, &every_type_table(50)).unwrap();
    let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let row_group = reader.metadata().row_group(0);
    for column in row_group.columns() {
        assert!(
            matches!(column.compression(), Compression::ZSTD(_)),
            "{:?}",
            column.column_path()
        );
        let path = column.column_path().string();
        let encodings: Vec<Encoding> = column.encodings().collect();
        if path.starts_with("vector") {
            assert!(
                !encodings.contains(&Encoding::RLE_DICTIONARY),
                "{path}: {encodings:?}"
            );
            assert!(column.dictionary_page_offset().is_none(), "{path}");
        }
        if path.starts_with("vector.") {
            assert!(
                encodings.contains(&Encoding::BYTE_STREAM_SPLIT),
                "{path}: {encodings:?}"
            );
        }
    }
}

#[test]
fn projection_reads_only_the_named_columns_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.parquet");
    let table = every_type_table(20);
    write_parquet(&path, &table).unwrap();
    let some = read_parquet_columns(&path, &["toi_found", "sample_id"]).unwrap();
    let names: Vec<&str> = some.columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["toi_found", "sample_id"]);
    assert_eq!(some.strings("sample_id"), table.strings("sample_id"));
    assert_eq!(some.bools("toi_found"), table.bools("toi_found"));
    let err = read_parquet_columns(&path, &["sample_id", "position", "sample_id"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("appears twice"), "{err}");
    let err = read_parquet_columns(&path, &["nope"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no column \"nope\"") && err.contains("sample_id"),
        "{err}"
    );
}

#[test]
fn large_vectors_span_several_batches_and_row_groups() {
    // 3000 rows × 2048 f32 = 24 MiB: more than one write batch (16 MiB).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.parquet");
    let (rows, dim) = (3000, 2048);
    let values: Vec<f32> = (0..rows * dim)
        .map(|i| ((i * 7919) % 10007) as f32 * 1e-3)
        .collect();
    let table = FeatureTable::new()
        .with_column("id", Column::Int64((0..rows as i64).collect()))
        .with_column(
            "v",
            Column::Vector {
                dim,
                values,
                half: false,
            },
        );
    write_parquet(&path, &table).unwrap();
    assert_eq!(read_parquet(&path).unwrap(), table);
}

fn write_list_file(path: &Path, rows: &[Vec<f32>]) {
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let values: Vec<f32> = rows.iter().flatten().copied().collect();
    let offsets = OffsetBuffer::from_lengths(rows.iter().map(Vec::len));
    let list = ListArray::new(
        item.clone(),
        offsets,
        Arc::new(Float32Array::from(values)),
        None,
    );
    let schema = Arc::new(Schema::new(vec![Field::new(
        "v",
        DataType::List(item),
        false,
    )]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(list)]).unwrap();
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[test]
fn list_vectors_are_read_when_rows_have_one_length() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("list.parquet");
    write_list_file(&path, &[vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0, 6.0]]);
    let table = read_parquet(&path).unwrap();
    assert_eq!(
        table.vector("v"),
        Some((2, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0][..]))
    );

    let ragged = dir.path().join("ragged.parquet");
    write_list_file(&ragged, &[vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0]]);
    let err = read_parquet(&ragged).unwrap_err().to_string();
    assert!(
        err.contains("ragged.parquet") && err.contains("row 2"),
        "{err}"
    );
}

#[test]
fn io_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let under_file = file.join("t.parquet");
    let err = write_parquet(&under_file, &every_type_table(2)).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
    assert!(err.to_string().contains("plain-file"), "{err}");

    let missing = dir.path().join("missing.parquet");
    let err = read_parquet(&missing).unwrap_err();
    assert!(
        matches!(err, StoreError::Io { .. }) && err.to_string().contains("missing.parquet"),
        "{err}"
    );

    let garbage = dir.path().join("garbage.parquet");
    std::fs::write(&garbage, b"this is not parquet at all").unwrap();
    let err = read_parquet(&garbage).unwrap_err();
    assert!(
        matches!(err, StoreError::Parquet { .. }) && err.to_string().contains("garbage.parquet"),
        "{err}"
    );

    // A file cut short (as a crash without the atomic rename would leave it).
    let good = dir.path().join("good.parquet");
    write_parquet(&good, &every_type_table(100)).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.parquet");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = read_parquet(&cut).unwrap_err();
    assert!(err.to_string().contains("cut.parquet"), "{err}");
}
