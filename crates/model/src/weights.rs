//! Reading HF safetensors checkpoints: one `model.safetensors`, or shards listed in
//! `model.safetensors.index.json`. Files are memory-mapped; each tensor's header entry is checked
//! (dtype, shape, bounds) before its bytes become a burn tensor in the requested dtype, so a bad
//! checkpoint is an error naming the file and tensor rather than a panic inside burn.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use burn::tensor::{DType, Tensor, TensorData, backend::Backend};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::error::{ModelError, Result};

struct ShardFile {
    path: PathBuf,
    map: Mmap,
    /// Byte offset of the data section (after the 8-byte length and the JSON header).
    data_start: usize,
}

struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    range: (usize, usize),
}

/// Produces the values of a tensor from its checkpoint name and shape (row-major, f32).
pub type TensorInit = Box<dyn FnMut(&str, &[usize]) -> Vec<f32>>;

/// All tensors of one checkpoint folder, by name; or, for a freshly initialised model, a function
/// that makes every tensor the loader asks for.
pub struct Checkpoint {
    dir: PathBuf,
    files: Vec<ShardFile>,
    entries: HashMap<String, Entry>,
    init: Option<RefCell<TensorInit>>,
}

/// Where the language model's weights sit in the key layouts the loader reads: LLaVA on the Hub,
/// transformers 5's nested layout, Idefics3/SmolVLM, and plain Llama-family checkpoints.
pub const LM_PREFIXES: [&str; 4] = [
    "language_model.model.",
    "model.language_model.",
    "model.text_model.",
    "model.",
];
/// Names of an untied LM head, in the same layouts.
pub const LM_HEAD_NAMES: [&str; 2] = ["language_model.lm_head.weight", "lm_head.weight"];

impl Checkpoint {
    /// Opens the safetensors files of `dir` (sharded when `model.safetensors.index.json` exists).
    pub fn open(dir: &Path) -> Result<Self> {
        let index_path = dir.join("model.safetensors.index.json");
        let file_names: Vec<String> = if index_path.is_file() {
            let text =
                std::fs::read_to_string(&index_path).map_err(|e| ModelError::io(&index_path, e))?;
            let index: serde_json::Value =
                serde_json::from_str(&text).map_err(|source| ModelError::Json {
                    path: index_path.clone(),
                    source,
                })?;
            let map = index
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| ModelError::config(&index_path, "missing \"weight_map\" object"))?;
            let mut names: Vec<String> = map
                .values()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            names.sort();
            names.dedup();
            names
        } else if dir.join("model.safetensors").is_file() {
            vec!["model.safetensors".to_string()]
        } else {
            return Err(ModelError::SourceNotFound {
                source_name: dir.display().to_string(),
                looked_in: vec![index_path, dir.join("model.safetensors")],
            });
        };
        let mut files = Vec::new();
        let mut entries = HashMap::new();
        for name in file_names {
            let path = dir.join(&name);
            let file = File::open(&path).map_err(|e| ModelError::io(&path, e))?;
            // SAFETY: the checkpoint is opened read-only and not expected to change while loaded.
            let map = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(&path, e))?;
            let (header_len, metadata) =
                SafeTensors::read_metadata(&map).map_err(|e| ModelError::Safetensors {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            let data_start = 8 + header_len;
            for (tensor_name, info) in metadata.tensors() {
                entries.insert(
                    tensor_name,
                    Entry {
                        file: files.len(),
                        dtype: info.dtype,
                        shape: info.shape.clone(),
                        range: info.data_offsets,
                    },
                );
            }
            files.push(ShardFile {
                path,
                map,
                data_start,
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            files,
            entries,
            init: None,
        })
    }

    /// A checkpoint that has every tensor name: `init` makes each tensor when it is loaded.
    /// The loader then picks the first key layout it tries, which is the Hub layout.
    pub fn generated(dir: &Path, init: TensorInit) -> Self {
        Self {
            dir: dir.to_path_buf(),
            files: Vec::new(),
            entries: HashMap::new(),
            init: Some(RefCell::new(init)),
        }
    }

    /// Values of a generated tensor, checked against its shape; `None` for a checkpoint on disk.
    fn generate(&self, name: &str, shape: &[usize]) -> Option<Result<Vec<f32>>> {
        let init = self.init.as_ref()?;
        let values = (init.borrow_mut())(name, shape);
        let expected: usize = shape.iter().product();
        Some(if values.len() == expected {
            Ok(values)
        } else {
            Err(ModelError::TensorShape {
                path: self.dir.clone(),
                name: name.to_string(),
                found: vec![values.len()],
                expected: shape.to_vec(),
            })
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the tensors come from an init function rather than files.
    pub fn is_generated(&self) -> bool {
        self.init.is_some()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.init.is_some() || self.entries.contains_key(name)
    }

    /// Total number of scalars in all tensors.
    pub fn num_scalars(&self) -> usize {
        self.entries
            .values()
            .map(|e| e.shape.iter().product::<usize>())
            .sum()
    }

    /// How many tensors each stored dtype has (e.g. `{"F32": 40}`).
    pub fn dtype_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for e in self.entries.values() {
            *counts.entry(format!("{:?}", e.dtype)).or_insert(0) += 1;
        }
        counts
    }

    /// The key prefix of the language model (the one whose `embed_tokens.weight` exists).
    pub fn lm_prefix(&self) -> Result<&'static str> {
        LM_PREFIXES
            .into_iter()
            .find(|p| self.contains(&format!("{p}embed_tokens.weight")))
            .ok_or_else(|| ModelError::MissingTensor {
                dir: self.dir.clone(),
                name: "embed_tokens.weight".into(),
                tried: LM_PREFIXES
                    .iter()
                    .map(|p| format!("{p}embed_tokens.weight"))
                    .collect(),
            })
    }

    /// The first of `names` that the checkpoint has, or a missing-tensor error listing them all.
    pub fn first_of<'a>(&self, names: &'a [String]) -> Result<&'a str> {
        names
            .iter()
            .find(|n| self.contains(n))
            .map(String::as_str)
            .ok_or_else(|| ModelError::MissingTensor {
                dir: self.dir.clone(),
                name: names.first().cloned().unwrap_or_default(),
                tried: names.to_vec(),
            })
    }

    fn entry(&self, name: &str, expected: &[usize]) -> Result<(&Entry, &ShardFile, DType, usize)> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                dir: self.dir.clone(),
                name: name.to_string(),
                tried: vec![name.to_string()],
            })?;
        let file = &self.files[entry.file];
        if entry.shape != expected {
            return Err(ModelError::TensorShape {
                path: file.path.clone(),
                name: name.to_string(),
                found: entry.shape.clone(),
                expected: expected.to_vec(),
            });
        }
        let (dtype, size) = match entry.dtype {
            Dtype::F32 => (DType::F32, 4),
            Dtype::F16 => (DType::F16, 2),
            Dtype::BF16 => (DType::BF16, 2),
            other => {
                return Err(ModelError::TensorDType {
                    path: file.path.clone(),
                    name: name.to_string(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        Ok((entry, file, dtype, size))
    }

    fn bytes<'a>(&self, entry: &Entry, file: &'a ShardFile, name: &str) -> Result<&'a [u8]> {
        let (start, end) = (
            file.data_start + entry.range.0,
            file.data_start + entry.range.1,
        );
        file.map
            .get(start..end)
            .ok_or_else(|| ModelError::Safetensors {
                path: file.path.clone(),
                message: format!("data of {name} lies outside the file"),
            })
    }

    /// Reads `name` (f32, f16 or bf16 on disk) with the given shape as f32 values, row-major,
    /// without building a model: what stages that need one or two tensors (an LM head) use.
    pub fn read_f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        if let Some(values) = self.generate(name, shape) {
            return values;
        }
        let (entry, file, dtype, _) = self.entry(name, shape)?;
        let bytes = self.bytes(entry, file, name)?;
        Ok(match dtype {
            DType::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            DType::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            _ => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        })
    }

    /// Loads `name` with the given shape as a tensor of `dtype` on `device`.
    pub fn tensor<B: Backend, const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        dtype: DType,
        device: &B::Device,
    ) -> Result<Tensor<B, D>> {
        if let Some(values) = self.generate(name, &shape) {
            let data = TensorData::new(values?, shape);
            return Ok(Tensor::from_data(data, (device, dtype)));
        }
        let (entry, file, src_dtype, _) = self.entry(name, &shape)?;
        let bytes = self.bytes(entry, file, name)?.to_vec();
        let data = TensorData::from_bytes_vec(bytes, shape, src_dtype);
        Ok(Tensor::from_data(data, (device, dtype)))
    }

    /// Loads a linear weight `[out, in]` (or a convolution kernel `[out, c, kh, kw]`, read as
    /// `[out, c*kh*kw]`) transposed to `[in, out]`, so that `x.matmul(w)` needs no per-call transpose.
    pub fn linear_weight<B: Backend>(
        &self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        device: &B::Device,
    ) -> Result<Tensor<B, 2>> {
        let out_features = shape[0];
        let in_features: usize = shape[1..].iter().product();
        if let Some(values) = self.generate(name, shape) {
            let values = values?;
            let mut transposed = vec![0f32; values.len()];
            for row in 0..out_features {
                for col in 0..in_features {
                    transposed[col * out_features + row] = values[row * in_features + col];
                }
            }
            let data = TensorData::new(transposed, [in_features, out_features]);
            return Ok(Tensor::from_data(data, (device, dtype)));
        }
        let (entry, file, src_dtype, size) = self.entry(name, shape)?;
        let src = self.bytes(entry, file, name)?;
        let mut dst = vec![0u8; src.len()];
        for row in 0..out_features {
            for col in 0..in_features {
                let from = (row * in_features + col) * size;
                let to = (col * out_features + row) * size;
                dst[to..to + size].copy_from_slice(&src[from..from + size]);
            }
        }
        let data = TensorData::from_bytes_vec(dst, [in_features, out_features], src_dtype);
        Ok(Tensor::from_data(data, (device, dtype)))
    }
}
