//! The storage of generated code's intermediate arrays, kept per thread.
//!
//! A product such as `Φᵀv = w − α Qᵀ w` with `w = v ⊙ m` needs a vector beside the one it
//! returns. Generated code hands each intermediate back after its last read ([`recycle`]),
//! and the kernels that create arrays take their storage from here, so a product called
//! again allocates only what it returns. The arrays of one rule have a few sizes (the
//! state, a support, a parameter), so a few buffers a thread serve every call.
//!
//! Arrays of at most [`SMALL`] entries are not kept: the allocator's own per-thread cache
//! (glibc's tcache, chunks up to 1 KiB) already hands them back without touching the heap,
//! faster than this pool can (measured at 10 entries: 9.5 ns an allocation and its free,
//! against 12–16 ns a kept buffer's round trip). Above it, the allocator goes to its shared
//! bins, and from 128 KiB to fresh pages, which a kept buffer saves.

use nalgebra::{DMatrix, DVector, Dyn, VecStorage, U1};
use std::cell::{Cell, RefCell};

/// Entries up to which an array is left to the allocator's per-thread cache.
pub const SMALL: usize = 128;
/// Buffers kept per thread at most (the oldest goes when one more comes back).
const MAX_KEPT: usize = 16;
/// Entries of the largest buffer kept (8 MiB: a 10⁶-state vector), so that a thread keeps
/// at most 128 MiB.
const MAX_LEN: usize = 1 << 20;

std::thread_local! {
    /// This thread's kept buffers, the most recently returned last.
    static KEPT: RefCell<Vec<Vec<f64>>> = const { RefCell::new(Vec::new()) };
    /// How many there are: read first, so that asking an empty pool costs one load (a
    /// thread-local without a destructor is read without a registration check).
    static COUNT: Cell<usize> = const { Cell::new(0) };
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
    if v.capacity() <= SMALL || v.capacity() > MAX_LEN {
        return;
    }
    let _ = KEPT.try_with(|k| {
        if let Ok(mut k) = k.try_borrow_mut() {
            if k.len() == MAX_KEPT {
                k.remove(0);
            }
            k.push(v);
            COUNT.set(k.len());
        }
    });
}

/// The most recently returned buffer with room for `len` entries, unless it is much larger
/// (a support's vector must not take the state's buffer of a 10⁶-state problem). Buffers
/// of one size come back in the order they are asked for again, so the search usually
/// stops at the last one.
#[inline]
fn kept(len: usize) -> Option<Vec<f64>> {
    if len <= SMALL || COUNT.get() == 0 {
        return None;
    }
    let fits = |b: &Vec<f64>| b.capacity() >= len && b.capacity() <= 2 * len + 32;
    KEPT.try_with(|k| {
        let mut k = k.try_borrow_mut().ok()?;
        let i = match k.last() {
            Some(b) if fits(b) => k.len() - 1,
            _ => k.iter().rposition(fits)?,
        };
        let v = k.swap_remove(i);
        COUNT.set(k.len());
        Some(v)
    })
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept_capacities() -> Vec<usize> {
        KEPT.with(|k| k.borrow().iter().map(Vec::capacity).collect())
    }

    #[test]
    fn a_recycled_buffer_serves_the_next_array_of_its_size_and_no_much_smaller_one() {
        let n = SMALL + 40;
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
        assert_eq!(c.len(), n);
        assert_eq!(c[n - 1], (n - 1) as f64);
        recycle(w);
        // Far smaller: a fresh buffer; the large one stays.
        let s = vector(n / 3);
        assert_ne!(s.as_ptr(), ptr);
        assert!(kept_capacities().contains(&n));
        // Small arrays are the allocator's.
        recycle(DVector::<f64>::zeros(SMALL));
        assert_eq!(kept_capacities(), vec![n]);
        for _ in 0..MAX_KEPT - 1 {
            recycle(DVector::<f64>::zeros(SMALL + 7));
        }
        assert_eq!(kept_capacities().len(), MAX_KEPT);
        recycle(DVector::<f64>::zeros(SMALL + 9));
        assert_eq!(kept_capacities().len(), MAX_KEPT);
        assert!(!kept_capacities().contains(&n), "the oldest goes");
        // Nothing beyond the budget is kept.
        recycle(DVector::<f64>::zeros(MAX_LEN + 1));
        assert!(kept_capacities().iter().all(|&c| c <= MAX_LEN));
    }
}
