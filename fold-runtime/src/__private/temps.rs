//! The storage of generated code's intermediate arrays, kept per thread.
//!
//! A product such as `Φᵀv = w − α Qᵀ w` with `w = v ⊙ m` needs a vector beside the one it
//! returns. Generated code hands each intermediate back after its last read ([`recycle`]),
//! and the kernels that create arrays take their storage from here, so a product called
//! again allocates only what it returns. The arrays of one rule have a few sizes (the
//! state, a support, a parameter), so a few buffers a thread serve every call.
//!
//! Buffers are kept by size class (capacities in `(2ᵏ⁻¹, 2ᵏ]`), a few per class, so that
//! asking for one costs the same whatever else is kept.

use nalgebra::{DMatrix, DVector, Dyn, VecStorage, U1};
use std::cell::RefCell;

/// Size classes: capacities up to `2^(CLASSES − 1)` entries (8 MiB, a 10⁶-state vector).
const CLASSES: usize = 21;
/// Buffers kept per class at most (the oldest goes when one more comes back), so that a
/// thread keeps at most 64 MiB.
const PER_CLASS: usize = 4;
/// Entries of the largest buffer kept.
const MAX_LEN: usize = 1 << (CLASSES - 1);

std::thread_local! {
    /// This thread's kept buffers by size class, the most recently returned last.
    static KEPT: RefCell<[Vec<Vec<f64>>; CLASSES]> =
        const { RefCell::new([const { Vec::new() }; CLASSES]) };
}

/// The class of buffers that can hold `len ≥ 1` entries: `⌈log₂ len⌉`.
#[inline]
fn class(len: usize) -> usize {
    (usize::BITS - (len - 1).leading_zeros()) as usize
}

/// A buffer of `len` entries whose values are unspecified: for a caller that writes every
/// entry before it reads one.
#[inline]
pub fn overwritten(len: usize) -> Vec<f64> {
    match kept(len) {
        Some(mut v) => {
            v.truncate(len);
            v.resize(len, 0.0);
            v
        }
        None => fresh(len),
    }
}

/// The `len` entries of `entries` (exactly `len`) in a buffer: a kept one, or else a new one written once.
#[inline]
pub fn collect(len: usize, entries: impl ExactSizeIterator<Item = f64>) -> Vec<f64> {
    debug_assert_eq!(entries.len(), len);
    match kept(len) {
        Some(mut v) => {
            v.clear();
            v.extend(entries);
            v
        }
        None => entries.collect(),
    }
}

/// An empty buffer with room for `len` entries, for a caller that pushes them.
#[inline]
pub fn empty(len: usize) -> Vec<f64> {
    match kept(len) {
        Some(mut v) => {
            v.clear();
            v
        }
        None => Vec::with_capacity(len),
    }
}

/// A zeroed buffer of `len` entries.
#[inline]
pub fn zeroed(len: usize) -> Vec<f64> {
    match kept(len) {
        Some(mut v) => {
            v.clear();
            v.resize(len, 0.0);
            v
        }
        None => fresh(len),
    }
}

/// A new zeroed buffer: written when small (glibc's `calloc` skips its per-thread cache,
/// measured 13 against 9.5 ns at 10 entries), `calloc`ed when large (zero pages).
#[inline]
fn fresh(len: usize) -> Vec<f64> {
    if len >= 2048 {
        return vec![0.0; len];
    }
    let mut v = Vec::with_capacity(len);
    v.resize(len, 0.0);
    v
}

/// `v` as a vector. `DVector::from_vec` rebuilds its storage through an iterator (7 ns at
/// 10 entries, as much as the allocation).
#[inline]
pub fn as_vector(v: Vec<f64>) -> DVector<f64> {
    DVector::from_data(VecStorage::new(Dyn(v.len()), U1, v))
}

/// `v` (column-major) as a `rows × cols` matrix, without `DMatrix::from_vec`'s rebuild.
///
/// # Panics
/// If `v.len() ≠ rows · cols`.
#[inline]
pub fn as_matrix(rows: usize, cols: usize, v: Vec<f64>) -> DMatrix<f64> {
    DMatrix::from_data(VecStorage::new(Dyn(rows), Dyn(cols), v))
}

/// A vector of length `n` whose entries are unspecified (see [`overwritten`]).
#[inline]
pub fn vector(n: usize) -> DVector<f64> {
    as_vector(overwritten(n))
}

/// A zero vector of length `n`.
#[inline]
pub fn zero_vector(n: usize) -> DVector<f64> {
    as_vector(zeroed(n))
}

/// An array's storage, for [`recycle`].
pub trait Storage {
    /// The buffer holding the entries.
    fn into_buffer(self) -> Vec<f64>;
}

impl Storage for Vec<f64> {
    #[inline]
    fn into_buffer(self) -> Vec<f64> {
        self
    }
}

impl Storage for DVector<f64> {
    #[inline]
    fn into_buffer(self) -> Vec<f64> {
        self.data.into()
    }
}

impl Storage for DMatrix<f64> {
    #[inline]
    fn into_buffer(self) -> Vec<f64> {
        self.data.into()
    }
}

/// Hands an intermediate array's storage back after its last read.
#[inline]
pub fn recycle(a: impl Storage) {
    let v = a.into_buffer();
    if v.capacity() == 0 || v.capacity() > MAX_LEN {
        return;
    }
    let c = class(v.capacity());
    let _ = KEPT.try_with(|k| {
        if let Ok(mut k) = k.try_borrow_mut() {
            let stack = &mut k[c];
            if stack.len() == PER_CLASS {
                stack.remove(0);
            }
            stack.push(v);
        }
    });
}

/// The most recently returned buffer of `len`'s size class, if it has room for `len`
/// entries (so never more than twice what is asked: a support's vector does not take the
/// state's buffer of a 10⁶-state problem).
#[inline]
fn kept(len: usize) -> Option<Vec<f64>> {
    if len == 0 || len > MAX_LEN {
        return None;
    }
    KEPT.try_with(|k| {
        let mut k = k.try_borrow_mut().ok()?;
        let stack = &mut k[class(len)];
        match stack.last() {
            Some(b) if b.capacity() >= len => stack.pop(),
            _ => None,
        }
    })
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept_capacities() -> Vec<usize> {
        KEPT.with(|k| k.borrow().iter().flatten().map(Vec::capacity).collect())
    }

    #[test]
    fn a_recycled_buffer_serves_the_next_array_of_its_size_and_no_much_smaller_one() {
        let n = 40;
        let v = DVector::from_element(n, 3.0);
        let ptr = v.as_ptr();
        recycle(v);
        let z = zero_vector(n);
        assert_eq!(z.as_ptr(), ptr, "the kept buffer is reused");
        assert!(z.iter().all(|&x| x == 0.0));
        recycle(z);
        let u = vector(n - 2);
        assert_eq!(u.as_ptr(), ptr);
        assert_eq!(u.len(), n - 2);
        recycle(u);
        // Entries past a shorter kept length are written.
        let w = vector(n);
        assert_eq!(w.len(), n);
        assert!(w.iter().all(|&x| x.is_finite()));
        let c = collect(n, (0..n).map(|i| i as f64));
        assert_eq!((c.len(), c[n - 1]), (n, (n - 1) as f64));
        recycle(w);
        // Far smaller (another class): a fresh buffer; the large one stays.
        let s = vector(n / 3);
        assert_ne!(s.as_ptr(), ptr);
        assert_eq!(kept_capacities(), vec![n]);
        // A larger one of the same class does not fit.
        let l = vector(n + 10);
        assert_ne!(l.as_ptr(), ptr);
        assert_eq!(class(n), class(n + 10));
        for _ in 0..PER_CLASS {
            recycle(DVector::<f64>::zeros(n + 1));
        }
        assert_eq!(kept_capacities().len(), PER_CLASS);
        assert!(!kept_capacities().contains(&n), "the oldest goes");
        // Other classes are kept beside.
        recycle(DVector::<f64>::zeros(3));
        assert_eq!(kept_capacities().len(), PER_CLASS + 1);
        // Nothing beyond the largest class is kept.
        recycle(DVector::<f64>::zeros(MAX_LEN + 1));
        assert!(kept_capacities().iter().all(|&c| c <= MAX_LEN));
        assert_eq!(
            (class(1), class(2), class(3), class(4), class(5)),
            (0, 1, 2, 2, 3)
        );
    }
}
