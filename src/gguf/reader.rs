//! The GGUF container (versions 2 and 3, little-endian): header, metadata key/values, tensor
//! infos, and tensor data aligned to `general.alignment` (default 32).
//!
//! Every read is bounds-checked against the file's size before anything is allocated, so a
//! truncated or hostile file ends in one error line naming the file and what was expected.
use super::quants::{self, GgmlType};
use crate::model::checkpoint::map_file;
use anyhow::{anyhow, bail, Result};
use memmap2::Mmap;
use std::fmt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// GGML_MAX_DIMS: tensors have at most four dimensions.
const MAX_DIMS: u32 = 4;

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// GGUF's name of the value's type (`UINT32`, `STRING`, `ARRAY[STRING]`, …).
    pub fn type_name(&self) -> String {
        match self {
            Value::U8(_) => "UINT8".into(),
            Value::I8(_) => "INT8".into(),
            Value::U16(_) => "UINT16".into(),
            Value::I16(_) => "INT16".into(),
            Value::U32(_) => "UINT32".into(),
            Value::I32(_) => "INT32".into(),
            Value::U64(_) => "UINT64".into(),
            Value::I64(_) => "INT64".into(),
            Value::F32(_) => "FLOAT32".into(),
            Value::F64(_) => "FLOAT64".into(),
            Value::Bool(_) => "BOOL".into(),
            Value::String(_) => "STRING".into(),
            Value::Array(a) => match a.first() {
                Some(v) => format!("ARRAY[{}]", v.type_name()),
                None => "ARRAY".into(),
            },
        }
    }

    /// The value as an integer, for any integer type (and a bool as 0/1).
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v as i128,
            Value::I8(v) => v as i128,
            Value::U16(v) => v as i128,
            Value::I16(v) => v as i128,
            Value::U32(v) => v as i128,
            Value::I32(v) => v as i128,
            Value::U64(v) => v as i128,
            Value::I64(v) => v as i128,
            _ => return None,
        })
    }

    /// The value as a float, for float types and integers (as Python's float() would).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_i128().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The value as JSON (strings, numbers, booleans, arrays).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::F32(v) => serde_json::Number::from_f64(*v as f64).map_or(J::Null, J::Number),
            Value::F64(v) => serde_json::Number::from_f64(*v).map_or(J::Null, J::Number),
            Value::Bool(b) => J::Bool(*b),
            Value::String(s) => J::String(s.clone()),
            Value::Array(a) => J::Array(a.iter().map(Value::to_json).collect()),
            Value::U64(v) => J::from(*v),
            Value::I64(v) => J::from(*v),
            other => J::from(other.as_i128().unwrap_or(0) as i64),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(s) => write!(f, "{s:?}"),
            Value::Array(a) => write!(f, "[{} values]", a.len()),
            other => write!(f, "{}", other.to_json()),
        }
    }
}

/// One tensor's entry in the file: its name, GGUF dimensions (`ne[0]` is the fastest axis,
/// so torch's shape is the reverse), type and where its data lies.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// Absolute offset of the data in the file.
    pub start: u64,
    /// Bytes of data.
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// torch's shape: the GGUF dimensions reversed.
    pub fn torch_shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// A parsed GGUF file, memory-mapped.
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_start: u64,
    pub file_size: u64,
    map: Mmap,
}

/// A bounds-checked little-endian cursor over the mapped file.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        let left = (self.bytes.len() - self.pos) as u64;
        if n > left {
            bail!(
                "{}: truncated GGUF file: expected {n} bytes for {} at offset {}, but the file ends after {} bytes",
                self.path.display(),
                what(),
                self.pos,
                self.bytes.len()
            );
        }
        let s = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        Ok(self.take(N as u64, what)?.try_into().expect("N bytes"))
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let len = self.u64(&|| format!("the length of {}", what()))?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            anyhow!(
                "{}: {} is not valid UTF-8 (at offset {})",
                self.path.display(),
                what(),
                self.pos - bytes.len()
            )
        })
    }

    fn value(&mut self, type_id: u32, what: &dyn Fn() -> String, depth: usize) -> Result<Value> {
        Ok(match type_id {
            0 => Value::U8(self.array::<1>(what)?[0]),
            1 => Value::I8(self.array::<1>(what)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            4 => Value::U32(u32::from_le_bytes(self.array(what)?)),
            5 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            7 => {
                let b = self.array::<1>(what)?[0];
                match b {
                    0 | 1 => Value::Bool(b == 1),
                    _ => bail!(
                        "{}: {} is a BOOL of byte value {b} (expected 0 or 1)",
                        self.path.display(),
                        what()
                    ),
                }
            }
            8 => Value::String(self.string(what)?),
            9 => {
                if depth > 0 {
                    bail!(
                        "{}: {} is an array of arrays (not supported)",
                        self.path.display(),
                        what()
                    );
                }
                let elem = self.u32(&|| format!("the element type of {}", what()))?;
                let n = self.u64(&|| format!("the length of {}", what()))?;
                // Every element takes at least one byte: a count past the end is truncation,
                // found before allocating anything.
                let left = (self.bytes.len() - self.pos) as u64;
                if n > left {
                    bail!(
                        "{}: truncated GGUF file: {} claims {n} elements at offset {}, but only {left} bytes follow",
                        self.path.display(),
                        what(),
                        self.pos
                    );
                }
                let mut items = Vec::with_capacity(n as usize);
                for i in 0..n {
                    items.push(self.value(elem, &|| format!("element {i} of {}", what()), 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(u64::from_le_bytes(self.array(what)?)),
            11 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            other => bail!(
                "{}: {} has unknown GGUF value type {other} (expected 0 to 12)",
                self.path.display(),
                what()
            ),
        })
    }
}

impl GgufFile {
    /// Opens and parses a GGUF file: header, metadata and tensor infos, each tensor's data
    /// checked to lie inside the file.
    pub fn open(path: &Path) -> Result<GgufFile> {
        let map = map_file(path)?;
        let file_size = map.len() as u64;
        let mut cur = Cursor {
            bytes: &map[..],
            pos: 0,
            path,
        };
        if map.len() < 4 || &map[..4] != MAGIC {
            let found: String = map[..map.len().min(4)]
                .iter()
                .map(|&b| {
                    if b.is_ascii_graphic() {
                        (b as char).to_string()
                    } else {
                        format!("\\x{b:02x}")
                    }
                })
                .collect();
            bail!(
                "{}: not a GGUF file (expected the magic \"GGUF\" at offset 0, found \"{found}\")",
                path.display()
            );
        }
        cur.pos = 4;
        let version = cur.u32(&|| "the version".into())?;
        if version != 2 && version != 3 {
            let hint = if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
                " (a big-endian file: only little-endian GGUF is read)"
            } else {
                ""
            };
            bail!(
                "{}: GGUF version {version} is not supported (expected 2 or 3){hint}",
                path.display()
            );
        }
        let n_tensors = cur.u64(&|| "the tensor count".into())?;
        let n_kv = cur.u64(&|| "the metadata count".into())?;
        // A key/value pair takes at least 12 bytes, a tensor info at least 24.
        let left = (map.len() - cur.pos) as u64;
        if n_kv > left / 12 || n_tensors > left / 24 {
            bail!(
                "{}: truncated GGUF file: the header claims {n_kv} metadata entries and {n_tensors} tensors, more than the {left} bytes after it can hold",
                path.display()
            );
        }
        let mut metadata = Vec::with_capacity(n_kv as usize);
        for i in 0..n_kv {
            let key = cur.string(&|| format!("the key of metadata entry {i}"))?;
            let ty = cur.u32(&|| format!("the value type of metadata {key}"))?;
            let value = cur.value(ty, &|| format!("metadata {key}"), 0)?;
            metadata.push((key, value));
        }
        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, v)) => match v {
                Value::U32(a) if *a > 0 && a.is_power_of_two() => *a as u64,
                other => bail!(
                    "{}: metadata general.alignment is {other} ({}); expected a UINT32 power of two",
                    path.display(),
                    other.type_name()
                ),
            },
        };
        let mut raw = Vec::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let name = cur.string(&|| format!("the name of tensor {i}"))?;
            let n_dims = cur.u32(&|| format!("the dimension count of tensor {name}"))?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                bail!(
                    "{}: tensor {name} has {n_dims} dimensions (expected 1 to {MAX_DIMS})",
                    path.display()
                );
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims {
                dims.push(cur.u64(&|| format!("dimension {d} of tensor {name}"))?);
            }
            let type_id = cur.u32(&|| format!("the type of tensor {name}"))?;
            let offset = cur.u64(&|| format!("the data offset of tensor {name}"))?;
            raw.push((name, dims, type_id, offset));
        }
        let data_start = (cur.pos as u64).div_ceil(alignment) * alignment;
        let file_size = file_size.min(map.len() as u64).max(map.len() as u64);
        let mut tensors = Vec::with_capacity(raw.len());
        for (name, dims, type_id, offset) in raw {
            let ty = GgmlType::from_id(type_id).ok_or_else(|| {
                anyhow!(
                    "{}: tensor {name} has unknown GGML type id {type_id} (expected one of gguf 0.19's types, e.g. 0 = F32, 1 = F16, 8 = Q8_0)",
                    path.display()
                )
            })?;
            let n: Option<u64> = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
            let n_bytes = n.and_then(|n| {
                if dims[0] % ty.block_size as u64 != 0 {
                    None
                } else {
                    ty.bytes_for(n)
                }
            });
            let n_bytes = n_bytes.ok_or_else(|| {
                anyhow!(
                    "{}: tensor {name} of type {} has dimensions {dims:?}: expected the first ({}) to be a multiple of the block size {}",
                    path.display(),
                    ty.name,
                    dims[0],
                    ty.block_size
                )
            })?;
            if offset % alignment != 0 {
                bail!(
                    "{}: tensor {name} has data offset {offset}, not a multiple of the alignment {alignment}",
                    path.display()
                );
            }
            let start = data_start.checked_add(offset);
            let end = start.and_then(|s| s.checked_add(n_bytes));
            match (start, end) {
                (Some(start), Some(end)) if end <= file_size => tensors.push(TensorInfo {
                    name,
                    dims,
                    ty,
                    offset,
                    start,
                    n_bytes,
                }),
                _ => bail!(
                    "{}: tensor {name} ({} {dims:?}, {n_bytes} bytes at offset {offset} of the data section at {data_start}) runs past the end of the file ({file_size} bytes): truncated or corrupt",
                    path.display(),
                    ty.name
                ),
            }
        }
        Ok(GgufFile {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            alignment,
            data_start,
            file_size,
            map,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of a tensor's data.
    pub fn tensor_bytes(&self, t: &TensorInfo) -> &[u8] {
        &self.map[t.start as usize..(t.start + t.n_bytes) as usize]
    }

    /// A tensor dequantised to float32, in GGUF order (flattened torch shape
    /// `t.torch_shape()`); an unsupported type is an error naming the tensor and the type.
    pub fn dequantize(&self, t: &TensorInfo) -> Result<Vec<f32>> {
        check_supported(&self.path, t)?;
        let mut out = vec![0f32; t.n_elements() as usize];
        quants::dequantize(t.ty, self.tensor_bytes(t), &mut out);
        Ok(out)
    }
}

/// An error for a tensor whose type `dequantize` cannot read.
pub fn check_supported(path: &Path, t: &TensorInfo) -> Result<()> {
    if !t.ty.is_supported() {
        bail!(
            "{}: tensor {} has type {}, which bertology cannot dequantise (supported: {})",
            path.display(),
            t.name,
            t.ty.name,
            quants::SUPPORTED.join(", ")
        );
    }
    Ok(())
}
