//! GGML tensor types and their dequantisation to float32.
//!
//! The block formats follow gguf-py's `quants.py` (the `gguf` package, 0.19.0), which is the
//! reference the tests compare against bit for bit: every product and sum below is one float32
//! operation in the same order as numpy's (Rust never fuses `a * b - c` into one rounding).
use half::f16;

/// Elements per K-quant super-block.
const QK_K: usize = 256;

/// A GGML tensor type: its id in GGUF files, its name, and its block geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GgmlType {
    pub id: u32,
    pub name: &'static str,
    /// Elements per block.
    pub block_size: usize,
    /// Bytes per block.
    pub type_size: usize,
}

/// Every type gguf 0.19.0 knows (`GGML_QUANT_SIZES`), so that a file's tensors can be laid
/// out and bounds-checked even when their type cannot be dequantised.
const TYPES: &[GgmlType] = &[
    t(0, "F32", 1, 4),
    t(1, "F16", 1, 2),
    t(2, "Q4_0", 32, 2 + 16),
    t(3, "Q4_1", 32, 2 + 2 + 16),
    t(6, "Q5_0", 32, 2 + 4 + 16),
    t(7, "Q5_1", 32, 2 + 2 + 4 + 16),
    t(8, "Q8_0", 32, 2 + 32),
    t(9, "Q8_1", 32, 4 + 4 + 32),
    t(10, "Q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4),
    t(11, "Q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12),
    t(12, "Q4_K", QK_K, 2 + 2 + QK_K / 2 + 12),
    t(13, "Q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12),
    t(14, "Q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16),
    t(15, "Q8_K", QK_K, 4 + QK_K + QK_K / 8),
    t(16, "IQ2_XXS", QK_K, 2 + QK_K / 4),
    t(17, "IQ2_XS", QK_K, 2 + QK_K / 4 + QK_K / 32),
    t(18, "IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8),
    t(19, "IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16),
    t(20, "IQ4_NL", 32, 2 + 16),
    t(21, "IQ3_S", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4),
    t(22, "IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 16),
    t(23, "IQ4_XS", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64),
    t(24, "I8", 1, 1),
    t(25, "I16", 1, 2),
    t(26, "I32", 1, 4),
    t(27, "I64", 1, 8),
    t(28, "F64", 1, 8),
    t(29, "IQ1_M", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32),
    t(30, "BF16", 1, 2),
    t(34, "TQ1_0", QK_K, 2 + 4 * 13),
    t(35, "TQ2_0", QK_K, 2 + 64),
    t(39, "MXFP4", 32, 1 + 16),
];

const fn t(id: u32, name: &'static str, block_size: usize, type_size: usize) -> GgmlType {
    GgmlType {
        id,
        name,
        block_size,
        type_size,
    }
}

/// The types `dequantize` reads, in the order the README lists them.
pub const SUPPORTED: &[&str] = &[
    "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
    "Q6_K",
];

impl GgmlType {
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TYPES.iter().copied().find(|t| t.id == id)
    }

    pub fn from_name(name: &str) -> Option<GgmlType> {
        TYPES.iter().copied().find(|t| t.name == name)
    }

    /// Whether `dequantize` reads this type.
    pub fn is_supported(&self) -> bool {
        SUPPORTED.contains(&self.name)
    }

    /// Bytes taken by `n` elements (a whole number of blocks), or None when `n` is not a
    /// multiple of the block size or the size overflows.
    pub fn bytes_for(&self, n: u64) -> Option<u64> {
        if !n.is_multiple_of(self.block_size as u64) {
            return None;
        }
        (n / self.block_size as u64).checked_mul(self.type_size as u64)
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// Dequantises `bytes` (whole blocks of type `ty`) into `out`, which must hold
/// `bytes.len() / type_size * block_size` values. Returns false for a type it cannot read.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> bool {
    let (bs, ts) = (ty.block_size, ty.type_size);
    assert_eq!(bytes.len() % ts, 0, "whole blocks");
    assert_eq!(
        out.len(),
        bytes.len() / ts * bs,
        "output sized for the blocks"
    );
    let block_fn: fn(&[u8], &mut [f32]) = match ty.name {
        "F32" => |b, o| o[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        "F16" => |b, o| o[0] = f16_at(b, 0),
        "BF16" => |b, o| o[0] = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16),
        "Q8_0" => q8_0,
        "Q4_0" => q4_0,
        "Q4_1" => q4_1,
        "Q5_0" => q5_0,
        "Q5_1" => q5_1,
        "Q2_K" => q2_k,
        "Q3_K" => q3_k,
        "Q4_K" => q4_k,
        "Q5_K" => q5_k,
        "Q6_K" => q6_k,
        _ => return false,
    };
    for (b, o) in bytes.chunks_exact(ts).zip(out.chunks_exact_mut(bs)) {
        block_fn(b, o);
    }
    true
}

/// 32 int8 values times one f16 scale.
fn q8_0(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    for (j, v) in o.iter_mut().enumerate() {
        *v = (b[2 + j] as i8) as f32 * d;
    }
}

/// 4-bit values (low nibbles are elements 0..16, high nibbles 16..32) minus 8, times d.
fn q4_0(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        o[j] = d * ((qs[j] & 0x0F) as i8 - 8) as f32;
        o[j + 16] = d * ((qs[j] >> 4) as i8 - 8) as f32;
    }
}

/// 4-bit values times d plus the block minimum m.
fn q4_1(b: &[u8], o: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qs = &b[4..20];
    for j in 0..16 {
        o[j] = d * (qs[j] & 0x0F) as f32 + m;
        o[j + 16] = d * (qs[j] >> 4) as f32 + m;
    }
}

/// The 5-bit value of element j: its nibble from `qs` and bit j of `qh` as the fifth bit.
fn five_bit(qs: &[u8], qh: u32, j: usize) -> u8 {
    let low = if j < 16 {
        qs[j] & 0x0F
    } else {
        qs[j - 16] >> 4
    };
    low | ((((qh >> j) & 1) as u8) << 4)
}

fn q5_0(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for (j, v) in o.iter_mut().enumerate() {
        *v = d * (five_bit(qs, qh, j) as i8 - 16) as f32;
    }
}

fn q5_1(b: &[u8], o: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for (j, v) in o.iter_mut().enumerate() {
        *v = d * five_bit(qs, qh, j) as f32 + m;
    }
}

/// Element i of a 256-element super-block whose 2-bit values are packed four to a byte:
/// element h·128 + s·32 + l is bits 2s..2s+2 of byte h·32 + l.
fn two_bit(qs: &[u8], i: usize) -> u8 {
    let (h, s, l) = (i / 128, (i % 128) / 32, i % 32);
    (qs[h * 32 + l] >> (2 * s)) & 3
}

/// Element i of 256 4-bit values: element j·64 + k·32 + l is nibble k of byte j·32 + l.
fn nibble(qs: &[u8], i: usize) -> u8 {
    let (j, k, l) = (i / 64, (i % 64) / 32, i % 32);
    (qs[j * 32 + l] >> (4 * k)) & 0x0F
}

/// Bit s of byte l (element s·32 + l) of a 32-byte high-bit mask.
fn high_bit(mask: &[u8], i: usize) -> u8 {
    (mask[i % 32] >> (i / 32)) & 1
}

/// 16 sub-blocks of 16 2-bit values: scale and minimum (4 bits each) per sub-block.
fn q2_k(b: &[u8], o: &mut [f32]) {
    let scales = &b[0..16];
    let qs = &b[16..80];
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    let mut dl = [0f32; 16];
    let mut ml = [0f32; 16];
    for i in 0..16 {
        dl[i] = d * (scales[i] & 0x0F) as f32;
        ml[i] = dmin * (scales[i] >> 4) as f32;
    }
    for (i, v) in o.iter_mut().enumerate() {
        *v = dl[i / 16] * two_bit(qs, i) as f32 - ml[i / 16];
    }
}

/// 16 sub-blocks of 16 3-bit values (2 low bits in `qs`, the third in `hmask`, inverted),
/// 6-bit signed scales.
fn q3_k(b: &[u8], o: &mut [f32]) {
    let hmask = &b[0..32];
    let qs = &b[32..96];
    let sc = &b[96..108];
    let d = f16_at(b, 108);
    let mut dl = [0f32; 16];
    for (i, dl) in dl.iter_mut().enumerate() {
        let low = (sc[i % 8] >> (4 * (i / 8))) & 0x0F;
        let high = (sc[8 + i % 4] >> (2 * (i / 4))) & 0x03;
        let scale = (low | (high << 4)) as i8 - 32;
        *dl = d * scale as f32;
    }
    for (i, v) in o.iter_mut().enumerate() {
        let q = two_bit(qs, i) as i8 - (((high_bit(hmask, i) ^ 1) << 2) as i8);
        *v = dl[i / 16] * q as f32;
    }
}

/// The eight 6-bit scales and minimums of a Q4_K/Q5_K super-block, packed in 12 bytes.
fn scale_min_k4(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..4 {
        sc[j] = s[j] & 0x3F;
        mn[j] = s[4 + j] & 0x3F;
        sc[4 + j] = (s[8 + j] & 0x0F) | ((s[j] >> 2) & 0x30);
        mn[4 + j] = (s[8 + j] >> 4) | ((s[4 + j] >> 2) & 0x30);
    }
    (sc, mn)
}

/// The per-sub-block factors d·scale and dmin·min of a Q4_K/Q5_K super-block.
fn k4_factors(b: &[u8]) -> ([f32; 8], [f32; 8]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (sc, mn) = scale_min_k4(&b[4..16]);
    let mut dl = [0f32; 8];
    let mut ml = [0f32; 8];
    for j in 0..8 {
        dl[j] = d * sc[j] as f32;
        ml[j] = dmin * mn[j] as f32;
    }
    (dl, ml)
}

/// 8 sub-blocks of 32 4-bit values.
fn q4_k(b: &[u8], o: &mut [f32]) {
    let (dl, ml) = k4_factors(b);
    let qs = &b[16..144];
    for (i, v) in o.iter_mut().enumerate() {
        *v = dl[i / 32] * nibble(qs, i) as f32 - ml[i / 32];
    }
}

/// 8 sub-blocks of 32 5-bit values (4 bits in `qs`, the fifth in `qh`).
fn q5_k(b: &[u8], o: &mut [f32]) {
    let (dl, ml) = k4_factors(b);
    let qh = &b[16..48];
    let qs = &b[48..176];
    for (i, v) in o.iter_mut().enumerate() {
        let q = nibble(qs, i) | (high_bit(qh, i) << 4);
        *v = dl[i / 32] * q as f32 - ml[i / 32];
    }
}

/// 16 sub-blocks of 16 6-bit values (4 low bits in `ql`, 2 high in `qh`) minus 32, int8 scales.
fn q6_k(b: &[u8], o: &mut [f32]) {
    let ql = &b[0..128];
    let qh = &b[128..192];
    let scales = &b[192..208];
    let d = f16_at(b, 208);
    let mut dl = [0f32; 16];
    for (i, dl) in dl.iter_mut().enumerate() {
        *dl = d * (scales[i] as i8) as f32;
    }
    for (i, v) in o.iter_mut().enumerate() {
        // Element h·128 + k·64 + l (l < 64) is nibble k of ql[h·64 + l].
        let (h, k, l) = (i / 128, (i % 128) / 64, i % 64);
        let low = (ql[h * 64 + l] >> (4 * k)) & 0x0F;
        let high = two_bit(qh, i);
        let q = (low | (high << 4)) as i8 - 32;
        *v = dl[i / 16] * q as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_match_gguf() {
        for (name, bs, ts) in [
            ("Q4_0", 32, 18),
            ("Q4_1", 32, 20),
            ("Q5_0", 32, 22),
            ("Q5_1", 32, 24),
            ("Q8_0", 32, 34),
            ("Q2_K", 256, 84),
            ("Q3_K", 256, 110),
            ("Q4_K", 256, 144),
            ("Q5_K", 256, 176),
            ("Q6_K", 256, 210),
        ] {
            let t = GgmlType::from_name(name).unwrap();
            assert_eq!((t.block_size, t.type_size), (bs, ts), "{name}");
            assert!(t.is_supported());
        }
        assert!(!GgmlType::from_name("IQ2_XXS").unwrap().is_supported());
        assert!(GgmlType::from_id(31).is_none());
    }

    #[test]
    fn q4_0_known_block() {
        // d = 1.0 (f16 0x3C00); byte j holds element j (low) and j + 16 (high).
        let mut b = vec![0x00, 0x3C];
        b.extend((0..16u8).map(|j| j | (15 - j) << 4));
        let mut o = vec![0f32; 32];
        assert!(dequantize(GgmlType::from_name("Q4_0").unwrap(), &b, &mut o));
        assert_eq!(o[0], -8.0);
        assert_eq!(o[15], 7.0);
        assert_eq!(o[16], 7.0);
        assert_eq!(o[31], -8.0);
    }
}
