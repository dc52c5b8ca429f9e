//! A small reader for MATLAB level-5 MAT-files, enough for SVHN's `*_32x32.mat`.
//!
//! Layout: a 128-byte header (text, subsystem offset, version `0x0100`, endian indicator
//! `IM` for little-endian files), then data elements, each an 8-byte tag (type, byte count) or
//! a 4-byte "small element" tag with up to 4 bytes of data. Variables are `miMATRIX` elements
//! (array flags, dimensions, name, real part), optionally wrapped in a zlib-compressed
//! `miCOMPRESSED` element. Only real numeric arrays are returned; cells, structs, strings,
//! sparse and complex arrays are skipped. MATLAB 7.3 files (HDF5) are recognised and refused.

use std::io::Read;
use std::path::Path;

use crate::error::{DataError, Result};

const FORMAT: &str = "MATLAB v5 MAT";
const HEADER: usize = 128;

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;

/// First and last MATLAB numeric array classes (`mxDOUBLE_CLASS` = 6 … `mxUINT64_CLASS` = 15).
const MX_NUMERIC: std::ops::RangeInclusive<u8> = 6..=15;
const MX_COMPLEX_FLAG: u32 = 0x0800;

/// The values of a numeric array, column-major (MATLAB order).
#[derive(Clone, Debug, PartialEq)]
pub enum MatData {
    /// Stored as unsigned bytes (`miUINT8`), kept as they are.
    U8(Vec<u8>),
    /// Any other numeric storage type, converted to `f64`.
    F64(Vec<f64>),
}

impl MatData {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Self::U8(v) => v.len(),
            Self::F64(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i` as `f64`.
    pub fn get_f64(&self, i: usize) -> Option<f64> {
        match self {
            Self::U8(v) => v.get(i).map(|&x| f64::from(x)),
            Self::F64(v) => v.get(i).copied(),
        }
    }
}

/// One real numeric variable of a MAT-file.
#[derive(Clone, Debug, PartialEq)]
pub struct MatArray {
    /// The variable name.
    pub name: String,
    /// MATLAB class id (6 double, 7 single, 8 int8, 9 uint8, …, 15 uint64).
    pub class: u8,
    /// Dimensions as MATLAB reports them (at least 2).
    pub dims: Vec<usize>,
    /// Values in column-major order (the first dimension varies fastest).
    pub data: MatData,
    /// File offset of the element that holds the variable.
    pub offset: u64,
}

/// The real numeric variables of a MAT-file, in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MatFile {
    /// The variables.
    pub arrays: Vec<MatArray>,
}

impl MatFile {
    /// The variable called `name`.
    pub fn get(&self, name: &str) -> Option<&MatArray> {
        self.arrays.iter().find(|a| a.name == name)
    }
}

#[derive(Clone, Copy)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u16(self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        match self {
            Self::Little => u16::from_le_bytes(a),
            Self::Big => u16::from_be_bytes(a),
        }
    }

    fn u32(self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        match self {
            Self::Little => u32::from_le_bytes(a),
            Self::Big => u32::from_be_bytes(a),
        }
    }

    fn u64(self, b: &[u8]) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        match self {
            Self::Little => u64::from_le_bytes(a),
            Self::Big => u64::from_be_bytes(a),
        }
    }
}

/// Where a problem is: the file offset, plus the offset inside a decompressed element.
#[derive(Clone, Copy)]
struct Ctx<'p> {
    name: &'p Path,
    endian: Endian,
    /// File offset of the enclosing `miCOMPRESSED` element, if any.
    compressed_at: Option<u64>,
}

impl Ctx<'_> {
    fn err(&self, offset: usize, reason: impl Into<String>) -> DataError {
        let reason = reason.into();
        match self.compressed_at {
            None => DataError::format(self.name, FORMAT, offset as u64, reason),
            Some(at) => DataError::format(
                self.name,
                FORMAT,
                at,
                format!("inside the compressed element, at decompressed byte {offset}: {reason}"),
            ),
        }
    }
}

/// One data element: its type, its data and where the next one starts.
struct Element<'a> {
    kind: u32,
    data: &'a [u8],
    /// Offset of the element's data in the buffer being read.
    data_at: usize,
    next: usize,
}

/// Reads the element at `pos`. Sub-elements are padded to 8 bytes; top-level elements are
/// not re-aligned (as scipy.io reads them: compressed elements carry no padding).
fn element<'a>(ctx: &Ctx, bytes: &'a [u8], pos: usize, pad: bool) -> Result<Element<'a>> {
    if bytes.len() - pos < 4 {
        return Err(ctx.err(pos, "data element tag cut short"));
    }
    let first = ctx.endian.u32(&bytes[pos..]);
    let small_size = (first >> 16) as usize;
    if small_size != 0 {
        // Small data element: type in the low half, size in the high half, data in 4 bytes.
        if small_size > 4 {
            return Err(ctx.err(
                pos,
                format!("small data element of {small_size} bytes (max 4)"),
            ));
        }
        if bytes.len() - pos < 8 {
            return Err(ctx.err(pos, "small data element cut short"));
        }
        return Ok(Element {
            kind: first & 0xffff,
            data: &bytes[pos + 4..pos + 4 + small_size],
            data_at: pos + 4,
            next: pos + 8,
        });
    }
    if bytes.len() - pos < 8 {
        return Err(ctx.err(pos, "data element tag cut short"));
    }
    let size = ctx.endian.u32(&bytes[pos + 4..]) as usize;
    let start = pos + 8;
    if bytes.len() - start < size {
        return Err(ctx.err(
            pos,
            format!(
                "element of type {first} declares {size} bytes, only {} remain (truncated file?)",
                bytes.len() - start
            ),
        ));
    }
    let end = start + size;
    // Padding may be missing after the last sub-element: never step past the buffer.
    let next = if pad {
        align8(end).min(bytes.len())
    } else {
        end
    };
    Ok(Element {
        kind: first,
        data: &bytes[start..end],
        data_at: start,
        next,
    })
}

fn align8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Parses a MAT-file held in memory. `name` only labels errors.
pub fn parse_mat(bytes: &[u8], name: &Path) -> Result<MatFile> {
    if bytes.len() < HEADER {
        return Err(DataError::format(
            name,
            FORMAT,
            bytes.len() as u64,
            "shorter than the 128-byte header",
        ));
    }
    if bytes.starts_with(b"MATLAB 7.3") {
        return Err(DataError::format(
            name,
            FORMAT,
            0,
            "this is a MATLAB 7.3 (HDF5) file; save it as version 7 or earlier \
             (MATLAB `save -v7`, scipy.io.savemat)",
        ));
    }
    let endian = match &bytes[126..128] {
        b"IM" => Endian::Little,
        b"MI" => Endian::Big,
        other => {
            return Err(DataError::format(
                name,
                FORMAT,
                126,
                format!(
                "endian indicator {other:?} is neither \"IM\" nor \"MI\" (not a level-5 MAT-file)"
            ),
            ))
        }
    };
    let version = endian.u16(&bytes[124..126]);
    if version != 0x0100 {
        return Err(DataError::format(
            name,
            FORMAT,
            124,
            format!("version 0x{version:04x}, expected 0x0100"),
        ));
    }
    let ctx = Ctx {
        name,
        endian,
        compressed_at: None,
    };
    let mut file = MatFile::default();
    read_elements(&ctx, bytes, HEADER, &mut file, 0)?;
    Ok(file)
}

/// Reads the top-level elements of `bytes` from `pos`, appending variables to `file`.
fn read_elements(
    ctx: &Ctx,
    bytes: &[u8],
    mut pos: usize,
    file: &mut MatFile,
    depth: u8,
) -> Result<()> {
    while pos < bytes.len() {
        let el = element(ctx, bytes, pos, false)?;
        let file_offset = ctx.compressed_at.unwrap_or(pos as u64);
        match el.kind {
            MI_MATRIX => {
                if let Some(mut array) = matrix(ctx, el.data, el.data_at)? {
                    array.offset = file_offset;
                    file.arrays.push(array);
                }
            }
            MI_COMPRESSED => {
                if depth > 0 {
                    return Err(ctx.err(pos, "compressed element inside a compressed element"));
                }
                let mut inner = Vec::new();
                flate2::read::ZlibDecoder::new(el.data)
                    .read_to_end(&mut inner)
                    .map_err(|e| {
                        ctx.err(pos, format!("zlib data is corrupt or truncated ({e})"))
                    })?;
                let inner_ctx = Ctx {
                    compressed_at: Some(pos as u64),
                    ..*ctx
                };
                read_elements(&inner_ctx, &inner, 0, file, depth + 1)?;
            }
            _ => {} // other top-level elements carry no variables we read
        }
        pos = el.next;
    }
    Ok(())
}

/// Parses the body of an `miMATRIX` element; `None` for arrays we do not return.
fn matrix(ctx: &Ctx, body: &[u8], at: usize) -> Result<Option<MatArray>> {
    if body.is_empty() {
        return Ok(None); // an empty matrix element
    }
    let sub = |pos: usize| -> Result<Element> {
        element(ctx, body, pos, true).map_err(|_| {
            ctx.err(
                at + pos,
                "a sub-element of a matrix is cut short or runs past the matrix",
            )
        })
    };
    // Array flags.
    let flags = sub(0)?;
    if flags.kind != MI_UINT32 || flags.data.len() < 8 {
        return Err(ctx.err(
            at,
            "a matrix must start with 8 bytes of array flags (miUINT32)",
        ));
    }
    let word = ctx.endian.u32(flags.data);
    let class = (word & 0xff) as u8;
    let complex = word & MX_COMPLEX_FLAG != 0;
    // Dimensions.
    let dims_el = sub(flags.next)?;
    if dims_el.kind != MI_INT32 || dims_el.data.len() < 8 || dims_el.data.len() % 4 != 0 {
        return Err(ctx.err(
            at + dims_el.data_at,
            "matrix dimensions must be at least two miINT32 values",
        ));
    }
    let mut dims = Vec::with_capacity(dims_el.data.len() / 4);
    for c in dims_el.data.chunks_exact(4) {
        let d = ctx.endian.u32(c) as i32;
        if d < 0 {
            return Err(ctx.err(at + dims_el.data_at, format!("negative dimension {d}")));
        }
        dims.push(d as usize);
    }
    // Name.
    let name_el = sub(dims_el.next)?;
    if name_el.kind != MI_INT8 && name_el.kind != MI_UTF8 && name_el.kind != MI_UINT8 {
        return Err(ctx.err(at + name_el.data_at, "matrix name must be text (miINT8)"));
    }
    let name = String::from_utf8_lossy(name_el.data).into_owned();
    if !MX_NUMERIC.contains(&class) || complex {
        return Ok(None); // cell, struct, char, sparse, object or complex: not read
    }
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            ctx.err(
                at + dims_el.data_at,
                format!("dimensions {dims:?} overflow"),
            )
        })?;
    if name_el.next >= body.len() {
        if count == 0 {
            return Ok(Some(MatArray {
                name,
                class,
                dims,
                data: MatData::F64(Vec::new()),
                offset: 0,
            }));
        }
        return Err(ctx.err(at + body.len(), format!("variable `{name}` has no data")));
    }
    let real = sub(name_el.next)?;
    let data = numeric(ctx, real.kind, real.data, at + real.data_at, count, &name)?;
    Ok(Some(MatArray {
        name,
        class,
        dims,
        data,
        offset: 0,
    }))
}

/// Decodes `count` values stored as `kind`.
fn numeric(
    ctx: &Ctx,
    kind: u32,
    data: &[u8],
    at: usize,
    count: usize,
    name: &str,
) -> Result<MatData> {
    let size = match kind {
        MI_INT8 | MI_UINT8 => 1,
        MI_INT16 | MI_UINT16 => 2,
        MI_INT32 | MI_UINT32 | MI_SINGLE => 4,
        MI_DOUBLE | MI_INT64 | MI_UINT64 => 8,
        other => {
            return Err(ctx.err(
                at,
                format!("variable `{name}` has data of unsupported element type {other}"),
            ))
        }
    };
    if data.len() / size != count || data.len() % size != 0 {
        return Err(ctx.err(
            at,
            format!(
                "variable `{name}` needs {count} values of {size} bytes, the element holds {} bytes",
                data.len()
            ),
        ));
    }
    let e = ctx.endian;
    if kind == MI_UINT8 {
        return Ok(MatData::U8(data.to_vec()));
    }
    let values = data
        .chunks_exact(size)
        .map(|c| match kind {
            MI_INT8 => f64::from(c[0] as i8),
            MI_INT16 => f64::from(e.u16(c) as i16),
            MI_UINT16 => f64::from(e.u16(c)),
            MI_INT32 => f64::from(e.u32(c) as i32),
            MI_UINT32 => f64::from(e.u32(c)),
            MI_SINGLE => f64::from(f32::from_bits(e.u32(c))),
            MI_DOUBLE => f64::from_bits(e.u64(c)),
            MI_INT64 => e.u64(c) as i64 as f64,
            _ => e.u64(c) as f64, // MI_UINT64
        })
        .collect();
    Ok(MatData::F64(values))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a level-5 MAT-file with uint8 and double variables, little-endian, as
    /// scipy.io.savemat does (uncompressed; `compress` wraps each variable in zlib).
    pub(crate) fn write_mat(vars: &[(&str, &[usize], MatData)], compress: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut text = b"MATLAB 5.0 MAT-file, written by dwlth-data tests".to_vec();
        text.resize(116, b' ');
        out.extend(text);
        out.extend([0u8; 8]);
        out.extend(0x0100u16.to_le_bytes());
        out.extend(b"IM");
        for (name, dims, data) in vars {
            let mut m = Vec::new();
            let class: u32 = match data {
                MatData::U8(_) => 9,
                MatData::F64(_) => 6,
            };
            sub(
                &mut m,
                MI_UINT32,
                &[class.to_le_bytes(), 0u32.to_le_bytes()].concat(),
            );
            let d: Vec<u8> = dims
                .iter()
                .flat_map(|&d| (d as i32).to_le_bytes())
                .collect();
            sub(&mut m, MI_INT32, &d);
            sub(&mut m, MI_INT8, name.as_bytes());
            match data {
                MatData::U8(v) => sub(&mut m, MI_UINT8, v),
                MatData::F64(v) => {
                    let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    sub(&mut m, MI_DOUBLE, &b)
                }
            }
            let mut el = Vec::new();
            el.extend(MI_MATRIX.to_le_bytes());
            el.extend((m.len() as u32).to_le_bytes());
            el.extend(m);
            if compress {
                use std::io::Write;
                let mut z =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
                z.write_all(&el).unwrap();
                let z = z.finish().unwrap();
                out.extend(MI_COMPRESSED.to_le_bytes());
                out.extend((z.len() as u32).to_le_bytes());
                out.extend(z);
            } else {
                out.extend(el);
            }
        }
        out
    }

    fn sub(m: &mut Vec<u8>, kind: u32, data: &[u8]) {
        if data.len() <= 4 && !data.is_empty() {
            m.extend(((data.len() as u32) << 16 | kind).to_le_bytes());
            let mut d = data.to_vec();
            d.resize(4, 0);
            m.extend(d);
        } else {
            m.extend(kind.to_le_bytes());
            m.extend((data.len() as u32).to_le_bytes());
            m.extend(data);
            m.resize(align8(m.len()), 0);
        }
    }

    #[test]
    fn reads_uncompressed_and_compressed() {
        for compress in [false, true] {
            let bytes = write_mat(
                &[
                    ("X", &[2, 3], MatData::U8(vec![1, 2, 3, 4, 5, 6])),
                    ("y", &[3, 1], MatData::F64(vec![10.0, 1.0, 2.5])),
                ],
                compress,
            );
            let f = parse_mat(&bytes, Path::new("t.mat")).unwrap();
            let x = f.get("X").unwrap();
            assert_eq!((x.class, x.dims.as_slice()), (9, &[2usize, 3][..]));
            assert_eq!(x.data, MatData::U8(vec![1, 2, 3, 4, 5, 6]));
            assert_eq!(f.get("y").unwrap().data.get_f64(2), Some(2.5));
        }
    }

    #[test]
    fn rejects_broken_files_with_offsets() {
        let good = write_mat(&[("X", &[2, 2], MatData::U8(vec![1, 2, 3, 4]))], false);
        let p = Path::new("t.mat");
        // truncated in the middle of the matrix
        let e = parse_mat(&good[..good.len() - 10], p).unwrap_err();
        assert!(matches!(e, DataError::Format { offset: 128, .. }), "{e}");
        // wrong endian marker
        let mut bad = good.clone();
        bad[126] = b'X';
        assert!(matches!(
            parse_mat(&bad, p).unwrap_err(),
            DataError::Format { offset: 126, .. }
        ));
        // too short, HDF5
        assert!(parse_mat(&good[..100], p).is_err());
        let mut h5 = good.clone();
        h5[..10].copy_from_slice(b"MATLAB 7.3");
        assert!(parse_mat(&h5, p).unwrap_err().to_string().contains("HDF5"));
        // wrong element count
        let short = write_mat(&[("X", &[2, 3], MatData::U8(vec![1, 2, 3, 4]))], false);
        assert!(parse_mat(&short, p).is_err());
        // corrupt zlib
        let mut z = write_mat(&[("X", &[2, 2], MatData::U8(vec![1, 2, 3, 4]))], true);
        let n = z.len();
        z[n - 3] ^= 0xff;
        z[n - 6] ^= 0xff;
        assert!(parse_mat(&z, p).is_err());
    }
}
