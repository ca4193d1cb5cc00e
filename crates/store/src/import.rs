//! Reading N×D float matrices that users bring (the `import` stage): `.npy`, `.safetensors`,
//! and a vector column of any Parquet file. Row ids, when the file format has none, come from an
//! optional text sidecar read by [`read_row_ids`]: one id per line, in row order.

use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::error::{Result, StoreError};
use crate::parquet_io::read_parquet;
use crate::table::Column;

/// A row-major `rows × cols` f32 matrix.
pub type Matrix = (usize, usize, Vec<f32>);

fn format_error(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::Format {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads a 2-D `.npy` array of float16, float32 or float64 (either byte order, C or Fortran
/// order) as a row-major f32 matrix. Format: numpy's NEP 1 (`numpy.lib.format`), versions 1-3.
pub fn read_matrix_npy(path: &Path) -> Result<Matrix> {
    let bytes = std::fs::read(path).map_err(StoreError::io("read", path))?;
    let header = NpyHeader::parse(&bytes).map_err(|reason| format_error(path, reason))?;
    let data = &bytes[header.data_offset..];
    let count = header.rows * header.cols;
    let needed = count * header.dtype.size;
    if data.len() < needed {
        return Err(format_error(
            path,
            format!(
                "truncated: shape ({}, {}) of {} needs {needed} data bytes, the file has {}",
                header.rows,
                header.cols,
                header.dtype.descr,
                data.len()
            ),
        ));
    }
    let values = header.dtype.decode(&data[..needed]);
    let values = if header.fortran_order {
        // Column-major on disk: element (r, c) is at c * rows + r.
        let mut row_major = vec![0.0; count];
        for c in 0..header.cols {
            for r in 0..header.rows {
                row_major[r * header.cols + c] = values[c * header.rows + r];
            }
        }
        row_major
    } else {
        values
    };
    Ok((header.rows, header.cols, values))
}

/// A float element type of a `.npy` file.
struct NpyDtype {
    descr: String,
    size: usize,
    little_endian: bool,
}

impl NpyDtype {
    fn parse(descr: &str) -> std::result::Result<NpyDtype, String> {
        let (order, kind) = descr.split_at(descr.len().min(1));
        let little_endian = match order {
            "<" | "|" | "=" => cfg!(target_endian = "little") || order == "<",
            ">" => false,
            _ => return Err(format!("unsupported dtype {descr:?}")),
        };
        let size = match kind {
            "f2" => 2,
            "f4" => 4,
            "f8" => 8,
            _ => {
                return Err(format!(
                    "dtype {descr:?} is not a float; expected float16, float32 or float64 ('<f2', '<f4', '<f8')"
                ));
            }
        };
        Ok(NpyDtype {
            descr: descr.to_string(),
            size,
            little_endian,
        })
    }

    fn decode(&self, data: &[u8]) -> Vec<f32> {
        let le = self.little_endian;
        match self.size {
            2 => data
                .chunks_exact(2)
                .map(|b| {
                    let bits = [b[0], b[1]];
                    let bits = if le {
                        u16::from_le_bytes(bits)
                    } else {
                        u16::from_be_bytes(bits)
                    };
                    half::f16::from_bits(bits).to_f32()
                })
                .collect(),
            4 => data
                .chunks_exact(4)
                .map(|b| {
                    let bytes = [b[0], b[1], b[2], b[3]];
                    if le {
                        f32::from_le_bytes(bytes)
                    } else {
                        f32::from_be_bytes(bytes)
                    }
                })
                .collect(),
            _ => data
                .chunks_exact(8)
                .map(|b| {
                    let bytes: [u8; 8] = b.try_into().expect("chunks_exact(8) yields 8 bytes");
                    (if le {
                        f64::from_le_bytes(bytes)
                    } else {
                        f64::from_be_bytes(bytes)
                    }) as f32
                })
                .collect(),
        }
    }
}

struct NpyHeader {
    dtype: NpyDtype,
    fortran_order: bool,
    rows: usize,
    cols: usize,
    data_offset: usize,
}

impl NpyHeader {
    /// Parses the magic, version, header length and the header dict, a Python literal such as
    /// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
    fn parse(bytes: &[u8]) -> std::result::Result<NpyHeader, String> {
        const MAGIC: &[u8] = b"\x93NUMPY";
        if bytes.len() < 10 || &bytes[..6] != MAGIC {
            return Err("not a .npy file (missing the \\x93NUMPY magic)".into());
        }
        let major = bytes[6];
        let (header_len, header_start) = match major {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            2 | 3 => {
                if bytes.len() < 12 {
                    return Err("truncated .npy header".into());
                }
                (
                    u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                    12,
                )
            }
            _ => return Err(format!("unsupported .npy format version {major}")),
        };
        let data_offset = header_start + header_len;
        let header = bytes
            .get(header_start..data_offset)
            .ok_or("truncated .npy header")?;
        // Version 3 allows UTF-8; versions 1-2 are latin-1, which the ASCII keys we need survive.
        let header = String::from_utf8_lossy(header);
        let descr = dict_value(&header, "descr")?;
        let descr = descr
            .strip_prefix('\'')
            .and_then(|d| d.strip_suffix('\''))
            .or_else(|| descr.strip_prefix('"').and_then(|d| d.strip_suffix('"')))
            .ok_or_else(|| {
                format!("structured dtype {descr} is not supported; expected a float array")
            })?;
        let dtype = NpyDtype::parse(descr)?;
        let fortran_order = match dict_value(&header, "fortran_order")?.as_str() {
            "True" => true,
            "False" => false,
            other => return Err(format!("fortran_order is {other}, expected True or False")),
        };
        let shape = dict_value(&header, "shape")?;
        let dims: Vec<usize> = shape
            .trim_start_matches('(')
            .trim_end_matches(')')
            .split(',')
            .map(str::trim)
            .filter(|dim| !dim.is_empty())
            .map(|dim| dim.trim_end_matches('L').parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| format!("cannot parse shape {shape}"))?;
        let [rows, cols] = dims[..] else {
            return Err(format!(
                "shape {shape} has {} dimensions, expected a 2-D matrix",
                dims.len()
            ));
        };
        if rows
            .checked_mul(cols)
            .and_then(|n| n.checked_mul(dtype.size))
            .is_none()
        {
            return Err(format!("shape {shape} is too large"));
        }
        Ok(NpyHeader {
            dtype,
            fortran_order,
            rows,
            cols,
            data_offset,
        })
    }
}

/// The literal after `'key':` in a flat Python dict literal: a quoted string, a tuple or a bare
/// word, returned trimmed.
fn dict_value(header: &str, key: &str) -> std::result::Result<String, String> {
    let missing = || format!("the .npy header {:?} has no {key:?} entry", header.trim());
    let start = [format!("'{key}'"), format!("\"{key}\"")]
        .iter()
        .find_map(|quoted| header.find(quoted.as_str()).map(|i| i + quoted.len()))
        .ok_or_else(missing)?;
    let rest = header[start..].trim_start();
    let rest = rest.strip_prefix(':').ok_or_else(missing)?.trim_start();
    let end = match rest.chars().next() {
        Some(quote @ ('\'' | '"')) => rest[1..].find(quote).map(|i| i + 2),
        Some('(') => rest.find(')').map(|i| i + 1),
        Some(_) => rest.find([',', '}']),
        None => None,
    }
    .ok_or_else(missing)?;
    Ok(rest[..end].trim().to_string())
}

/// Reads one 2-D float tensor (F16, BF16, F32 or F64) from a `.safetensors` file as a row-major
/// f32 matrix: the tensor named `tensor`, or else the only 2-D tensor of the file.
pub fn read_matrix_safetensors(path: &Path, tensor: Option<&str>) -> Result<Matrix> {
    let bytes = std::fs::read(path).map_err(StoreError::io("read", path))?;
    let tensors = SafeTensors::deserialize(&bytes)
        .map_err(|err| format_error(path, format!("not a valid safetensors file: {err}")))?;
    let name = match tensor {
        Some(name) => name.to_string(),
        None => {
            let mut matrices: Vec<String> = tensors
                .iter()
                .filter(|(_, view)| view.shape().len() == 2)
                .map(|(name, _)| name.to_string())
                .collect();
            matrices.sort();
            match matrices.len() {
                1 => matrices.remove(0),
                0 => return Err(format_error(path, "the file has no 2-D tensor")),
                _ => {
                    return Err(format_error(
                        path,
                        format!(
                            "the file has several 2-D tensors {matrices:?}; name the one to read"
                        ),
                    ));
                }
            }
        }
    };
    let view = tensors.tensor(&name).map_err(|_| {
        let mut names = tensors.names();
        names.sort();
        format_error(path, format!("no tensor {name:?}; the file has {names:?}"))
    })?;
    let [rows, cols] = view.shape()[..] else {
        return Err(format_error(
            path,
            format!(
                "tensor {name:?} has shape {:?}, expected a 2-D matrix",
                view.shape()
            ),
        ));
    };
    let data = view.data();
    let values: Vec<f32> = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|b| {
                f64::from_le_bytes(b.try_into().expect("chunks_exact(8) yields 8 bytes")) as f32
            })
            .collect(),
        other => {
            return Err(format_error(
                path,
                format!("tensor {name:?} has dtype {other:?}; expected F16, BF16, F32 or F64"),
            ));
        }
    };
    Ok((rows, cols, values))
}

/// Reads one vector column of a Parquet file (`column`, or else the only vector column) as a
/// row-major f32 matrix. Accepts FixedSizeList / List / LargeList of Float16/32/64 (see
/// [`crate::read_parquet_columns`]).
pub fn read_matrix_parquet(path: &Path, column: Option<&str>) -> Result<Matrix> {
    let table = read_parquet(path)?;
    let vectors: Vec<String> = table
        .columns
        .iter()
        .filter(|(_, column)| matches!(column, Column::Vector { .. }))
        .map(|(name, _)| name.clone())
        .collect();
    let name = match column {
        Some(name) => name.to_string(),
        None => match &vectors[..] {
            [only] => only.clone(),
            [] => {
                return Err(format_error(
                    path,
                    "the file has no vector (list of float) column",
                ));
            }
            _ => {
                return Err(format_error(
                    path,
                    format!(
                        "the file has several vector columns {vectors:?}; name the one to read"
                    ),
                ));
            }
        },
    };
    let rows = table.num_rows();
    let Some(Column::Vector { dim, values, .. }) = table
        .columns
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| c)
    else {
        return Err(format_error(
            path,
            format!("no vector column {name:?}; vector columns: {vectors:?}"),
        ));
    };
    Ok((rows, dim, values))
}

/// Reads row ids from a UTF-8 text file, one per line (a trailing newline is optional, `\r\n`
/// accepted), and checks there are exactly `rows` of them and none is empty.
pub fn read_row_ids(path: &Path, rows: usize) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(StoreError::io("read", path))?;
    let ids: Vec<String> = text.lines().map(str::to_string).collect();
    if ids.len() != rows {
        return Err(format_error(
            path,
            format!(
                "has {} ids (lines) but the matrix has {rows} rows",
                ids.len()
            ),
        ));
    }
    if let Some(line) = ids.iter().position(String::is_empty) {
        return Err(format_error(
            path,
            format!("line {} is empty; every row needs an id", line + 1),
        ));
    }
    Ok(ids)
}
