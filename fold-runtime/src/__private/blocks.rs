//! Block state: packing blocks (vectors, matrices column-major) into one vector and
//! reading them back, without panicking on short input.

use super::temps;
use nalgebra::{DMatrix, DVector};

/// Concatenation of state blocks.
pub fn pack(blocks: &[&DVector<f64>]) -> DVector<f64> {
    let n = blocks.iter().map(|b| b.len()).sum();
    let mut out = DVector::zeros(n);
    let mut off = 0;
    for b in blocks {
        out.rows_mut(off, b.len()).copy_from(b);
        off += b.len();
    }
    out
}

/// Block `len` entries from `off` of a concatenated state.
pub fn block(v: &DVector<f64>, off: usize, len: usize) -> DVector<f64> {
    let mut out = temps::overwritten(len);
    out.copy_from_slice(&v.as_slice()[off..off + len]);
    temps::as_vector(out)
}

/// Concatenation of state blocks given as their entries (matrix blocks column-major).
pub fn pack_entries(blocks: &[&[f64]]) -> DVector<f64> {
    let n = blocks.iter().map(|b| b.len()).sum();
    let mut out = temps::overwritten(n);
    let mut at = 0;
    for b in blocks {
        out[at..at + b.len()].copy_from_slice(b);
        at += b.len();
    }
    temps::as_vector(out)
}

/// A matrix state's column-major flattening, moving its buffer.
pub fn flatten(m: DMatrix<f64>) -> DVector<f64> {
    let n = m.len();
    m.reshape_generic(nalgebra::Dyn(n), nalgebra::U1)
}

/// The `rows × cols` matrix whose column-major entries are `v`'s entries from `off`
/// (a matrix block of a flat state); entries beyond `v` read as NaN (never panics).
pub fn block_matrix(v: &DVector<f64>, off: usize, rows: usize, cols: usize) -> DMatrix<f64> {
    let len = rows * cols;
    match off
        .checked_add(len)
        .and_then(|end| v.as_slice().get(off..end))
    {
        Some(s) => {
            let mut out = temps::overwritten(len);
            out.copy_from_slice(s);
            temps::as_matrix(rows, cols, out)
        }
        None => DMatrix::from_fn(rows, cols, |i, j| {
            v.get(off + i + j * rows).copied().unwrap_or(f64::NAN)
        }),
    }
}

/// Block `k` of a concatenated state with block shapes `shapes` (`(len, 1)` for a vector
/// block) as a matrix; entries beyond `v` read as NaN (never panics).
pub fn block_matrix_or_nan(v: &DVector<f64>, shapes: &[(usize, usize)], k: usize) -> DMatrix<f64> {
    let off: usize = shapes.iter().take(k).map(|(r, c)| r * c).sum();
    let (rows, cols) = shapes.get(k).copied().unwrap_or((0, 0));
    block_matrix(v, off, rows, cols)
}

/// Block `k` of a concatenated state with block shapes `shapes`, as a vector.
pub fn block_vector_or_nan(v: &DVector<f64>, shapes: &[(usize, usize)], k: usize) -> DVector<f64> {
    let off: usize = shapes.iter().take(k).map(|(r, c)| r * c).sum();
    let len = shapes.get(k).map_or(0, |(r, c)| r * c);
    entries_or_nan(v, off, len)
}

/// Block `k` of a concatenated state with block lengths `lens`; entries beyond `v` read
/// as NaN (never panics).
pub fn block_or_nan(v: &DVector<f64>, lens: &[usize], k: usize) -> DVector<f64> {
    let off: usize = lens.iter().take(k).sum();
    let len = lens.get(k).copied().unwrap_or(0);
    entries_or_nan(v, off, len)
}

/// `v[off..off + len]`, entries beyond `v` NaN.
fn entries_or_nan(v: &DVector<f64>, off: usize, len: usize) -> DVector<f64> {
    let mut out = temps::overwritten(len);
    for (i, o) in out.iter_mut().enumerate() {
        *o = v.get(off + i).copied().unwrap_or(f64::NAN);
    }
    temps::as_vector(out)
}
