//! Reading and writing JSON files with errors that point at the offending place.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{DataError, Result};

/// Reads a whole JSON file into `T`. On a mismatch the error names the file, the line and column,
/// and the JSON path of the value that did not fit (e.g. `annotations[12].answers[3].answer`).
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(|source| DataError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_json(path, &bytes)
}

/// Parses `bytes` (the content of `path`, or one line of it) into `T`.
pub(crate) fn parse_json<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    // Tracking the JSON path costs about as much as parsing, so it is done only to explain a
    // failure: valid files (the common case) parse once, at full speed.
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        Err(error) => Err(explain_json_error::<T>(path, bytes, error)),
    }
}

/// Parses `bytes` again, tracking the JSON path, to say where and why it does not fit `T`.
fn explain_json_error<T: DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
    first_error: serde_json::Error,
) -> DataError {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Err(error) => {
            let json_path = error.path().to_string();
            serde_error(path, json_path, error.into_inner())
        }
        // The value fitted: what failed is trailing content after the document.
        Ok(_) => match deserializer.end() {
            Err(error) => serde_error(path, ".".to_string(), error),
            Ok(()) => serde_error(path, ".".to_string(), first_error),
        },
    }
}

fn serde_error(path: &Path, json_path: String, error: serde_json::Error) -> DataError {
    DataError::Json {
        path: path.to_path_buf(),
        json_path,
        line: error.line(),
        column: error.column(),
        message: strip_position(&error.to_string()),
    }
}

/// serde_json appends " at line L column C" to its messages; the position is reported separately.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(cut) => message[..cut].to_string(),
        None => message.to_string(),
    }
}

/// Writes `value` as compact JSON (the layout the real COCO / VQAv2 files use), creating the
/// parent folder. Struct fields serialise in declaration order and maps are `BTreeMap`s, so the
/// bytes depend only on the value.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let write_error = |source| DataError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(write_error)?;
    }
    let file = fs::File::create(path).map_err(write_error)?;
    let mut writer = BufWriter::new(file);
    serde_json::to_writer(&mut writer, value)
        .map_err(|error| write_error(std::io::Error::other(error)))?;
    writer.write_all(b"\n").map_err(write_error)?;
    writer.flush().map_err(write_error)
}
