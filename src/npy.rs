//! The .npy format, read and written by us: tch's `read_npy` trusts the header (a file shorter
//! than its shape reads past the end of the buffer), so every size is checked here before a
//! byte of data is used.
use anyhow::{bail, Result};
use std::path::Path;
use tch::{Kind, Tensor};

const MAGIC: &[u8] = b"\x93NUMPY";
/// More dimensions than any array a run reads or writes; bounds the work on a mangled header.
const MAX_DIMS: usize = 16;

/// A parsed header: element type, layout and shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub kind: Kind,
    pub item_size: usize,
    pub fortran_order: bool,
    pub shape: Vec<i64>,
}

/// Reads a .npy file into a tensor; every error names the file.
pub fn read(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    from_bytes(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Parses a whole .npy file held in memory.
pub fn from_bytes(bytes: &[u8]) -> Result<Tensor> {
    let (header, data_start) = parse_header(bytes)?;
    let numel = header
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
        .ok_or_else(|| anyhow::anyhow!("shape {:?} is too large", header.shape))?;
    let want = numel
        .checked_mul(header.item_size)
        .ok_or_else(|| anyhow::anyhow!("shape {:?} is too large", header.shape))?;
    let have = bytes.len() - data_start;
    if have != want {
        bail!(
            "truncated or padded .npy: the header says shape {:?} of {} ({want} bytes of data) but the file holds {have}",
            header.shape,
            descr_name(header.kind),
        );
    }
    let data = &bytes[data_start..];
    let tensor = if header.fortran_order {
        let reversed: Vec<i64> = header.shape.iter().rev().copied().collect();
        let dims: Vec<i64> = (0..reversed.len() as i64).rev().collect();
        Tensor::f_from_data_size(data, &reversed, header.kind)?
            .f_permute(dims.as_slice())?
            .f_contiguous()?
    } else {
        Tensor::f_from_data_size(data, &header.shape, header.kind)?
    };
    Ok(tensor)
}

fn descr_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Float => "float32",
        Kind::Double => "float64",
        Kind::Half => "float16",
        Kind::Int64 => "int64",
        Kind::Int => "int32",
        Kind::Int16 => "int16",
        Kind::Int8 => "int8",
        Kind::Uint8 => "uint8",
        Kind::Bool => "bool",
        _ => "?",
    }
}

/// Checks the magic, version and header length, and parses the header dictionary.
pub fn parse_header(bytes: &[u8]) -> Result<(Header, usize)> {
    if bytes.is_empty() {
        bail!("empty file (0 bytes), not a .npy array");
    }
    if bytes.len() < MAGIC.len() + 2 || &bytes[..MAGIC.len()] != MAGIC {
        bail!("not a .npy file (it does not start with \\x93NUMPY)");
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len_bytes, utf8) = match major {
        1 => (2usize, false),
        2 => (4, false),
        3 => (4, true),
        _ => bail!(".npy format version {major}.{minor} is not supported (1.0 to 3.0 are)"),
    };
    let start = 8 + len_bytes;
    if bytes.len() < start {
        bail!("truncated .npy: the file ends inside its header");
    }
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([bytes[8], bytes[9]]) as usize
    } else {
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
    };
    let data_start = start
        .checked_add(header_len)
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "truncated .npy: the header says it is {header_len} bytes long but the file has {} after the preamble",
                bytes.len() - start
            )
        })?;
    let raw = &bytes[start..data_start];
    let text = if utf8 {
        std::str::from_utf8(raw).ok()
    } else {
        raw.is_ascii()
            .then(|| std::str::from_utf8(raw).ok())
            .flatten()
    }
    .ok_or_else(|| anyhow::anyhow!("the .npy header is not text"))?;
    Ok((header_from_text(text)?, data_start))
}

/// One value of the header dictionary.
#[derive(Debug)]
enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<i64>),
}

/// Parses `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
fn header_from_text(text: &str) -> Result<Header> {
    let mut p = Parser {
        s: text.trim_end().as_bytes(),
        i: 0,
    };
    let dict = p
        .dict()
        .map_err(|e| anyhow::anyhow!("malformed .npy header ({e}): {text:?}"))?;
    let get = |k: &str| dict.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let descr = match get("descr") {
        Some(Value::Str(s)) => s.clone(),
        _ => bail!("the .npy header has no 'descr' string"),
    };
    let fortran_order = match get("fortran_order") {
        Some(Value::Bool(b)) => *b,
        None => false,
        _ => bail!("the .npy header's 'fortran_order' is not True or False"),
    };
    let shape = match get("shape") {
        Some(Value::Tuple(t)) => t.clone(),
        _ => bail!("the .npy header has no 'shape' tuple"),
    };
    let (kind, item_size) = kind_of(&descr)?;
    Ok(Header {
        kind,
        item_size,
        fortran_order,
        shape,
    })
}

/// The tensor kind of a numpy type string; only little-endian (or byte-order-free) types.
fn kind_of(descr: &str) -> Result<(Kind, usize)> {
    let (order, code) = descr.split_at(descr.len().min(1));
    match order {
        "<" | "|" => {}
        "=" if cfg!(target_endian = "little") => {}
        ">" => bail!(
            "big-endian data (descr '{descr}') is not supported; save it little-endian, e.g. numpy.save(path, a.astype('<{code}'))"
        ),
        _ => bail!("unsupported .npy descr '{descr}'"),
    }
    Ok(match code {
        "f4" => (Kind::Float, 4),
        "f8" => (Kind::Double, 8),
        "f2" => (Kind::Half, 2),
        "i8" => (Kind::Int64, 8),
        "i4" => (Kind::Int, 4),
        "i2" => (Kind::Int16, 2),
        "i1" => (Kind::Int8, 1),
        "u1" => (Kind::Uint8, 1),
        "b1" => (Kind::Bool, 1),
        _ => bail!("unsupported .npy element type '{descr}' (expected float, int or bool numbers)"),
    })
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.i))
        }
    }
    fn dict(&mut self) -> std::result::Result<Vec<(String, Value)>, String> {
        self.expect(b'{')?;
        let mut out = Vec::new();
        loop {
            if self.eat(b'}') {
                break;
            }
            let key = self.string()?;
            self.expect(b':')?;
            let value = self.value()?;
            out.push((key, value));
            if !self.eat(b',') {
                self.expect(b'}')?;
                break;
            }
        }
        self.skip_ws();
        if self.i != self.s.len() {
            return Err(format!(
                "unexpected text after the dictionary at byte {}",
                self.i
            ));
        }
        Ok(out)
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        self.skip_ws();
        let quote = match self.s.get(self.i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a quoted string at byte {}", self.i)),
        };
        self.i += 1;
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i] != quote {
            self.i += 1;
        }
        if self.i == self.s.len() {
            return Err("unterminated string".into());
        }
        let s = String::from_utf8_lossy(&self.s[start..self.i]).to_string();
        self.i += 1;
        Ok(s)
    }
    fn value(&mut self) -> std::result::Result<Value, String> {
        self.skip_ws();
        let rest = &self.s[self.i..];
        if rest.starts_with(b"True") {
            self.i += 4;
            return Ok(Value::Bool(true));
        }
        if rest.starts_with(b"False") {
            self.i += 5;
            return Ok(Value::Bool(false));
        }
        match rest.first() {
            Some(b'\'' | b'"') => self.string().map(Value::Str),
            Some(b'(') => {
                self.i += 1;
                let mut dims = Vec::new();
                loop {
                    if self.eat(b')') {
                        break;
                    }
                    dims.push(self.int()?);
                    if dims.len() > MAX_DIMS {
                        return Err(format!("more than {MAX_DIMS} dimensions"));
                    }
                    if !self.eat(b',') {
                        self.expect(b')')?;
                        break;
                    }
                }
                Ok(Value::Tuple(dims))
            }
            _ => Err(format!("unexpected value at byte {}", self.i)),
        }
    }
    fn int(&mut self) -> std::result::Result<i64, String> {
        self.skip_ws();
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        // A trailing L is Python 2's long.
        let digits = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
        if self.s.get(self.i) == Some(&b'L') {
            self.i += 1;
        }
        digits
            .parse::<i64>()
            .ok()
            .filter(|&d| d <= i64::from(i32::MAX))
            .ok_or_else(|| format!("a dimension at byte {start} is not a size"))
    }
}

/// The bytes of a .npy file (format 1.0, header padded to 64 bytes as numpy writes it) for a
/// float32, float64 or int64 tensor.
pub fn to_bytes(tensor: &Tensor) -> Result<Vec<u8>> {
    let t = tensor.to_device(tch::Device::Cpu).contiguous();
    let (descr, item) = match t.kind() {
        Kind::Float => ("<f4", 4),
        Kind::Double => ("<f8", 8),
        Kind::Int64 => ("<i8", 8),
        k => bail!("cannot write {k:?} tensors as .npy"),
    };
    let shape = t.size();
    let dims = match shape.len() {
        0 => String::new(),
        1 => format!("{},", shape[0]),
        _ => shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({dims}), }}");
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let numel = t.numel();
    let mut out = Vec::with_capacity(10 + header.len() + numel * item);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    let mut data = vec![0u8; numel * item];
    t.f_copy_data_u8(&mut data, numel)?;
    out.extend_from_slice(&data);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_size_checks() {
        let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).view([2, 3]);
        let bytes = to_bytes(&t).unwrap();
        assert_eq!((bytes.len() - 6 * 4) % 64, 0);
        let back = from_bytes(&bytes).unwrap();
        assert_eq!(back.size(), [2, 3]);
        assert!(back.equal(&t));
        // One byte short, one byte long, header only, nothing.
        for cut in [bytes.len() - 1, bytes.len() - 24] {
            let e = from_bytes(&bytes[..cut]).unwrap_err().to_string();
            assert!(e.contains("truncated or padded"), "{e}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(from_bytes(&long).is_err());
        assert!(from_bytes(&[]).unwrap_err().to_string().contains("0 bytes"));
        let at = bytes.windows(3).position(|w| w == b"<f4").unwrap();
        let mut big = bytes.clone();
        big[at] = b'>';
        let e = from_bytes(&big).unwrap_err().to_string();
        assert!(e.contains("big-endian"), "{e}");
    }

    #[test]
    fn fortran_order_and_other_kinds() {
        let header = "{'descr': '<i8', 'fortran_order': True, 'shape': (2, 3), }";
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        // Column-major 0..6: rows are [0, 2, 4] and [1, 3, 5].
        for v in 0i64..6 {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let t = from_bytes(&bytes).unwrap();
        let rows: Vec<Vec<i64>> = Vec::try_from(t).unwrap();
        assert_eq!(rows, vec![vec![0, 2, 4], vec![1, 3, 5]]);
    }
}
