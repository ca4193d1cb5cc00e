//! Feature tables as Parquet files (zstd), readable by pyarrow, polars and duckdb.
//!
//! On disk: scalar columns are non-nullable Utf8 / Int64 / Float64 / Boolean; a vector column is
//! `FixedSizeList<Float32, dim>` (or `Float16` when `half`), written without dictionary encoding
//! and, for Float32, with BYTE_STREAM_SPLIT (groups the bytes of each float, which zstd compresses
//! much better than interleaved floats). Files are deterministic: the same table gives the same
//! bytes (no timestamps or random ids; `created_by` is the constant parquet-rs version string).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, FixedSizeListArray, Float16Array, Float32Array, Float64Array,
    Int64Array, RecordBatch, RecordBatchOptions, StringArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::error::{Result, StoreError};
use crate::fsutil;
use crate::table::{Column, FeatureTable};

/// zstd level 1 (Arrow C++'s default): on byte-stream-split floats it was both faster and
/// slightly smaller than level 3 (BENCHMARKS.md).
const ZSTD_LEVEL: i32 = 1;
/// Row groups are cut at about this many encoded bytes, so readers can stream big tables.
const ROW_GROUP_BYTES: usize = 128 << 20;
/// Values per internal column-writer call (parquet-rs default 1024): a vector column has
/// rows × dim values, and larger calls cut the per-call overhead.
const WRITE_BATCH_VALUES: usize = 1 << 16;
/// Rows are handed to the writer in batches of about this many bytes of vector data, which bounds
/// the extra memory of the Arrow copy.
const BATCH_BYTES: usize = 16 << 20;
/// Key of the Arrow schema that parquet-rs and pyarrow embed in the key-value metadata; it is an
/// encoding detail, not user metadata.
const ARROW_SCHEMA_KEY: &str = parquet::arrow::ARROW_SCHEMA_META_KEY;
/// Name of the child field of a vector column (pyarrow's convention for list items).
const VECTOR_ITEM: &str = "item";

/// Writes `table` to `path` atomically (temporary file, fsync, rename). The table is validated
/// first; an invalid table leaves `path` untouched.
pub fn write_parquet(path: &Path, table: &FeatureTable) -> Result<()> {
    table.validate().map_err(|err| match err {
        StoreError::InvalidTable { reason, .. } => StoreError::InvalidTable {
            path: Some(path.to_path_buf()),
            reason,
        },
        other => other,
    })?;
    let schema = arrow_schema(table);
    let props = writer_properties(path, table, &schema)?;
    let parquet_err = |source| StoreError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    fsutil::write_atomic_with(path, |file, _tmp| {
        let mut writer =
            ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(parquet_err)?;
        let rows = table.num_rows();
        let batch_rows = batch_rows(table);
        let mut start = 0;
        while start < rows {
            let end = (start + batch_rows).min(rows);
            let batch = record_batch(path, table, &schema, start, end)?;
            writer.write(&batch).map_err(parquet_err)?;
            start = end;
        }
        writer.into_inner().map_err(parquet_err)
    })
}

/// Reads a whole Parquet file as a feature table (see [`read_parquet_columns`] for the accepted
/// column types).
pub fn read_parquet(path: &Path) -> Result<FeatureTable> {
    read_parquet_impl(path, None)
}

/// Reads only the named columns (in the order given), e.g. the metadata columns without the
/// vectors. An unknown name is an error listing the columns the file has.
///
/// Accepted column types, so that files written by other tools can be imported:
/// Utf8/LargeUtf8/Utf8View and dictionary-encoded strings -> `Utf8`; all integer types -> `Int64`
/// (UInt64 values above `i64::MAX` are an error); Float16/32/64 -> `Float64`; Boolean -> `Bool`;
/// FixedSizeList, List or LargeList of Float16/32/64 -> `Vector` (all rows the same length,
/// else an error naming the row; `half` is set when the values are Float16). Nulls are an error
/// naming the column and row.
pub fn read_parquet_columns(path: &Path, columns: &[&str]) -> Result<FeatureTable> {
    read_parquet_impl(path, Some(columns))
}

fn read_parquet_impl(path: &Path, wanted: Option<&[&str]>) -> Result<FeatureTable> {
    let parquet_err = |source| StoreError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(StoreError::io("open", path))?;
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_err)?;
    let metadata: BTreeMap<String, String> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
        .filter(|kv| kv.key != ARROW_SCHEMA_KEY)
        .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
        .collect();
    let schema = builder.schema().clone();
    // Root indices of the wanted columns, in the order the caller asked for them.
    let order: Vec<usize> = match wanted {
        None => (0..schema.fields().len()).collect(),
        Some(names) => names
            .iter()
            .map(|name| {
                schema.index_of(name).map_err(|_| StoreError::Format {
                    path: path.to_path_buf(),
                    reason: format!(
                        "no column {name:?}; the file has {:?}",
                        schema
                            .fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                    ),
                })
            })
            .collect::<Result<_>>()?,
    };
    if wanted.is_some() {
        let mask = ProjectionMask::roots(builder.parquet_schema(), order.iter().copied());
        builder = builder.with_projection(mask);
    }
    let rows = builder.metadata().file_metadata().num_rows().max(0) as usize;
    // Position of each wanted column inside the projected batches (projection keeps file order).
    let mut projected: Vec<usize> = order.clone();
    projected.sort_unstable();
    projected.dedup();
    let mut builders: Vec<ColumnBuilder> = order
        .iter()
        .map(|&index| ColumnBuilder::new(path, schema.field(index), rows))
        .collect::<Result<_>>()?;
    let reader = builder.build().map_err(parquet_err)?;
    let mut row_offset = 0;
    for batch in reader {
        let batch = batch.map_err(|source| StoreError::Arrow {
            path: path.to_path_buf(),
            source,
        })?;
        for (column_builder, &index) in builders.iter_mut().zip(&order) {
            let batch_index = projected.binary_search(&index).unwrap_or(index);
            column_builder.append(path, batch.column(batch_index).as_ref(), row_offset)?;
        }
        row_offset += batch.num_rows();
    }
    let columns = order
        .iter()
        .zip(builders)
        .map(|(&index, column_builder)| {
            (schema.field(index).name().clone(), column_builder.finish())
        })
        .collect();
    let table = FeatureTable { columns, metadata };
    table.validate().map_err(|err| match err {
        StoreError::InvalidTable { reason, .. } => StoreError::Format {
            path: path.to_path_buf(),
            reason,
        },
        other => other,
    })?;
    Ok(table)
}

fn arrow_schema(table: &FeatureTable) -> SchemaRef {
    let fields: Vec<Field> = table
        .columns
        .iter()
        .map(|(name, column)| Field::new(name, arrow_type(column), false))
        .collect();
    Arc::new(Schema::new(fields))
}

fn arrow_type(column: &Column) -> DataType {
    match column {
        Column::Utf8(_) => DataType::Utf8,
        Column::Int64(_) => DataType::Int64,
        Column::Float64(_) => DataType::Float64,
        Column::Bool(_) => DataType::Boolean,
        Column::Vector { dim, half, .. } => {
            let item = if *half {
                DataType::Float16
            } else {
                DataType::Float32
            };
            DataType::FixedSizeList(Arc::new(Field::new(VECTOR_ITEM, item, false)), *dim as i32)
        }
    }
}

fn writer_properties(
    path: &Path,
    table: &FeatureTable,
    schema: &Schema,
) -> Result<WriterProperties> {
    let parquet_err = |source| StoreError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let zstd = ZstdLevel::try_new(ZSTD_LEVEL).map_err(parquet_err)?;
    let key_values: Vec<KeyValue> = table
        .metadata
        .iter()
        .map(|(key, value)| KeyValue::new(key.clone(), value.clone()))
        .collect();
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(zstd))
        .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
        .set_write_batch_size(WRITE_BATCH_VALUES)
        .set_key_value_metadata((!key_values.is_empty()).then_some(key_values));
    // The leaf paths of vector columns (e.g. `vector.list.item`) as parquet-rs will name them.
    let parquet_schema = ArrowSchemaConverter::new()
        .convert(schema)
        .map_err(parquet_err)?;
    for leaf in parquet_schema.columns() {
        let root = &leaf.path().parts()[0];
        if let Some(Column::Vector { half, .. }) = table.column(root) {
            // Activations are high-entropy floats: a dictionary only costs time (and grows the
            // file), and min/max statistics over all elements of all vectors help no query.
            props = props
                .set_column_dictionary_enabled(leaf.path().clone(), false)
                .set_column_statistics_enabled(leaf.path().clone(), EnabledStatistics::None);
            // BYTE_STREAM_SPLIT only for Float32: duckdb 2.0 rejects it on Float16 (a
            // FIXED_LEN_BYTE_ARRAY column).
            if !half {
                props = props.set_column_encoding(leaf.path().clone(), Encoding::BYTE_STREAM_SPLIT);
            }
        }
    }
    Ok(props.build())
}

/// Rows per Arrow batch handed to the writer.
fn batch_rows(table: &FeatureTable) -> usize {
    let row_bytes: usize = table
        .columns
        .iter()
        .map(|(_, column)| match column {
            Column::Vector { dim, .. } => dim * 4,
            _ => 8,
        })
        .sum();
    (BATCH_BYTES / row_bytes.max(1)).clamp(1, 1 << 16)
}

fn record_batch(
    path: &Path,
    table: &FeatureTable,
    schema: &SchemaRef,
    start: usize,
    end: usize,
) -> Result<RecordBatch> {
    let arrays: Vec<ArrayRef> = table
        .columns
        .iter()
        .map(|(_, column)| -> ArrayRef {
            match column {
                Column::Utf8(values) => {
                    Arc::new(StringArray::from_iter_values(&values[start..end]))
                }
                Column::Int64(values) => Arc::new(Int64Array::from(values[start..end].to_vec())),
                Column::Float64(values) => {
                    Arc::new(Float64Array::from(values[start..end].to_vec()))
                }
                Column::Bool(values) => Arc::new(BooleanArray::from(values[start..end].to_vec())),
                Column::Vector { dim, values, half } => {
                    let slice = &values[start * dim..end * dim];
                    let (item, child): (DataType, ArrayRef) = if *half {
                        let halves: Vec<half::f16> =
                            slice.iter().map(|&v| half::f16::from_f32(v)).collect();
                        (DataType::Float16, Arc::new(Float16Array::from(halves)))
                    } else {
                        (
                            DataType::Float32,
                            Arc::new(Float32Array::from(slice.to_vec())),
                        )
                    };
                    let field = Arc::new(Field::new(VECTOR_ITEM, item, false));
                    Arc::new(FixedSizeListArray::new(field, *dim as i32, child, None))
                }
            }
        })
        .collect();
    let options = RecordBatchOptions::new().with_row_count(Some(end - start));
    RecordBatch::try_new_with_options(schema.clone(), arrays, &options).map_err(|source| {
        StoreError::Arrow {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Accumulates one column across record batches, converting the accepted Arrow types.
enum ColumnBuilder {
    Utf8(Vec<String>),
    Int64(Vec<i64>),
    Float64(Vec<f64>),
    Bool(Vec<bool>),
    /// `dim` is known up front for FixedSizeList and learnt from the first row for List.
    Vector {
        name: String,
        dim: Option<usize>,
        values: Vec<f32>,
        half: bool,
    },
}

fn is_float(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Float16 | DataType::Float32 | DataType::Float64
    )
}

impl ColumnBuilder {
    fn new(path: &Path, field: &Field, rows: usize) -> Result<ColumnBuilder> {
        let unsupported = || StoreError::Format {
            path: path.to_path_buf(),
            reason: format!(
                "column {:?} has type {}; xlvlm reads strings, integers, floats, booleans and \
                 (fixed-size) lists of floats",
                field.name(),
                field.data_type()
            ),
        };
        Ok(match field.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                ColumnBuilder::Utf8(Vec::with_capacity(rows))
            }
            DataType::Dictionary(_, value)
                if matches!(
                    value.as_ref(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ) =>
            {
                ColumnBuilder::Utf8(Vec::with_capacity(rows))
            }
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64 => ColumnBuilder::Int64(Vec::with_capacity(rows)),
            data_type if is_float(data_type) => ColumnBuilder::Float64(Vec::with_capacity(rows)),
            DataType::Boolean => ColumnBuilder::Bool(Vec::with_capacity(rows)),
            DataType::FixedSizeList(item, dim) if is_float(item.data_type()) => {
                let dim = *dim as usize;
                ColumnBuilder::Vector {
                    name: field.name().clone(),
                    dim: Some(dim),
                    values: Vec::with_capacity(rows.saturating_mul(dim)),
                    half: item.data_type() == &DataType::Float16,
                }
            }
            DataType::List(item) | DataType::LargeList(item) if is_float(item.data_type()) => {
                ColumnBuilder::Vector {
                    name: field.name().clone(),
                    dim: None,
                    values: Vec::new(),
                    half: item.data_type() == &DataType::Float16,
                }
            }
            _ => return Err(unsupported()),
        })
    }

    /// Appends one batch's column; `row_offset` is the file row of the batch's first row.
    fn append(&mut self, path: &Path, array: &dyn Array, row_offset: usize) -> Result<()> {
        let format_error = |reason: String| StoreError::Format {
            path: path.to_path_buf(),
            reason,
        };
        if array.null_count() > 0 {
            let row = (0..array.len()).find(|&i| array.is_null(i)).unwrap_or(0);
            return Err(format_error(format!(
                "null value at row {}",
                row_offset + row
            )));
        }
        match self {
            ColumnBuilder::Utf8(out) => append_strings(path, array, out)?,
            ColumnBuilder::Int64(out) => match array.data_type() {
                DataType::Int8 => widen::<Int8Type>(array, out),
                DataType::Int16 => widen::<Int16Type>(array, out),
                DataType::Int32 => widen::<Int32Type>(array, out),
                DataType::Int64 => {
                    out.extend_from_slice(array.as_primitive::<Int64Type>().values())
                }
                DataType::UInt8 => widen::<UInt8Type>(array, out),
                DataType::UInt16 => widen::<UInt16Type>(array, out),
                DataType::UInt32 => widen::<UInt32Type>(array, out),
                DataType::UInt64 => {
                    for (row, &value) in array
                        .as_primitive::<UInt64Type>()
                        .values()
                        .iter()
                        .enumerate()
                    {
                        let value = i64::try_from(value).map_err(|_| {
                            format_error(format!(
                                "value {value} at row {} does not fit in int64",
                                row_offset + row
                            ))
                        })?;
                        out.push(value);
                    }
                }
                other => return Err(format_error(format!("unexpected integer type {other}"))),
            },
            ColumnBuilder::Float64(out) => append_f64(path, array, out)?,
            ColumnBuilder::Bool(out) => out.extend(array.as_boolean().iter().flatten()),
            ColumnBuilder::Vector {
                name, dim, values, ..
            } => {
                // (child values, start of each row in the child values plus the end)
                let (child, row_starts): (ArrayRef, Vec<usize>) = match array.data_type() {
                    DataType::FixedSizeList(..) => {
                        let list = array.as_fixed_size_list();
                        let width = list.value_length() as usize;
                        // Slicing a FixedSizeListArray slices its values (its offset() is 0).
                        let child = list.values().slice(0, list.len() * width);
                        (child, (0..=list.len()).map(|i| i * width).collect())
                    }
                    DataType::List(_) => {
                        let list = array.as_list::<i32>();
                        let offsets = list.value_offsets();
                        let base = offsets[0] as usize;
                        let len = offsets[offsets.len() - 1] as usize - base;
                        let starts = offsets.iter().map(|&o| o as usize - base).collect();
                        (list.values().slice(base, len), starts)
                    }
                    DataType::LargeList(_) => {
                        let list = array.as_list::<i64>();
                        let offsets = list.value_offsets();
                        let base = offsets[0] as usize;
                        let len = offsets[offsets.len() - 1] as usize - base;
                        let starts = offsets.iter().map(|&o| o as usize - base).collect();
                        (list.values().slice(base, len), starts)
                    }
                    other => return Err(format_error(format!("unexpected list type {other}"))),
                };
                if child.null_count() > 0 {
                    let index = (0..child.len()).find(|&i| child.is_null(i)).unwrap_or(0);
                    let row = row_starts.partition_point(|&start| start <= index) - 1;
                    return Err(format_error(format!(
                        "vector column {name:?} has a null element at row {}",
                        row_offset + row
                    )));
                }
                for (row, pair) in row_starts.windows(2).enumerate() {
                    let width = pair[1] - pair[0];
                    match dim {
                        None => *dim = Some(width),
                        Some(expected) if *expected != width => {
                            return Err(format_error(format!(
                                "vector column {name:?} has {width} values at row {} but {expected} \
                                 in earlier rows; all rows must have the same length",
                                row_offset + row
                            )));
                        }
                        Some(_) => {}
                    }
                }
                append_f32(path, child.as_ref(), values)?;
            }
        }
        Ok(())
    }

    fn finish(self) -> Column {
        match self {
            ColumnBuilder::Utf8(values) => Column::Utf8(values),
            ColumnBuilder::Int64(values) => Column::Int64(values),
            ColumnBuilder::Float64(values) => Column::Float64(values),
            ColumnBuilder::Bool(values) => Column::Bool(values),
            ColumnBuilder::Vector {
                dim, values, half, ..
            } => Column::Vector {
                // A list column with no rows has no width; 0 marks "unknown" and `validate`
                // reports it.
                dim: dim.unwrap_or(0),
                values,
                half,
            },
        }
    }
}

fn append_strings(path: &Path, array: &dyn Array, out: &mut Vec<String>) -> Result<()> {
    match array.data_type() {
        DataType::Utf8 => out.extend(array.as_string::<i32>().iter().flatten().map(str::to_owned)),
        DataType::LargeUtf8 => {
            out.extend(array.as_string::<i64>().iter().flatten().map(str::to_owned))
        }
        DataType::Utf8View => {
            out.extend(array.as_string_view().iter().flatten().map(str::to_owned))
        }
        DataType::Dictionary(..) => {
            let dictionary = array.as_any_dictionary();
            let mut strings = Vec::new();
            append_strings(path, dictionary.values().as_ref(), &mut strings)?;
            out.extend(
                dictionary
                    .normalized_keys()
                    .into_iter()
                    .map(|key| strings[key].clone()),
            );
        }
        other => return Err(unexpected_type(path, other)),
    }
    Ok(())
}

fn append_f64(path: &Path, array: &dyn Array, out: &mut Vec<f64>) -> Result<()> {
    match array.data_type() {
        DataType::Float16 => out.extend(
            array
                .as_primitive::<Float16Type>()
                .values()
                .iter()
                .map(|v| f64::from(v.to_f32())),
        ),
        DataType::Float32 => out.extend(
            array
                .as_primitive::<Float32Type>()
                .values()
                .iter()
                .map(|&v| f64::from(v)),
        ),
        DataType::Float64 => out.extend_from_slice(array.as_primitive::<Float64Type>().values()),
        other => return Err(unexpected_type(path, other)),
    }
    Ok(())
}

/// Vector values are f32 in memory; Float64 inputs are rounded (out-of-range values become
/// infinite and are then reported by `validate`).
fn append_f32(path: &Path, array: &dyn Array, out: &mut Vec<f32>) -> Result<()> {
    match array.data_type() {
        DataType::Float16 => out.extend(
            array
                .as_primitive::<Float16Type>()
                .values()
                .iter()
                .map(|v| v.to_f32()),
        ),
        DataType::Float32 => out.extend_from_slice(array.as_primitive::<Float32Type>().values()),
        DataType::Float64 => out.extend(
            array
                .as_primitive::<Float64Type>()
                .values()
                .iter()
                .map(|&v| v as f32),
        ),
        other => return Err(unexpected_type(path, other)),
    }
    Ok(())
}

/// A batch column whose type differs from the schema's (the reader never produces this).
fn unexpected_type(path: &Path, data_type: &DataType) -> StoreError {
    StoreError::Format {
        path: path.to_path_buf(),
        reason: format!("unexpected Arrow type {data_type} in a record batch"),
    }
}

/// Appends an integer column of a narrower type, widened to i64.
fn widen<T>(array: &dyn Array, out: &mut Vec<i64>)
where
    T: arrow_array::ArrowPrimitiveType,
    T::Native: Into<i64>,
{
    out.extend(array.as_primitive::<T>().values().iter().map(|&v| v.into()));
}
