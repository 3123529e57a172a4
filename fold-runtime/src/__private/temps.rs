//! The storage of generated code's intermediate arrays, kept per thread.
//!
//! A product such as `Φᵀv = w − α Qᵀ w` with `w = v ⊙ m` needs a vector beside the one it
//! returns. Generated code hands each intermediate back after its last read ([`recycle`]),
//! and the kernels that create arrays take their storage from here, so a product called
//! again allocates only what it returns. The arrays of one rule have a few sizes (the
//! state, a support, a parameter), so a few buffers a thread serve every call. Unlike
//! `solvers::scratch` (large factor buffers, none below 16 KiB) small buffers are kept too:
//! at n = 10 an allocation costs as much as the arithmetic around it.

use nalgebra::{DMatrix, DVector};
use std::cell::RefCell;

/// Buffers kept per thread at most (the oldest goes when one more comes back).
const MAX_KEPT: usize = 16;
/// Entries kept per thread at most (64 MiB): a buffer that would pass it is freed.
const MAX_ENTRIES: usize = 8 << 20;

/// This thread's kept buffers, the most recently returned last.
struct Kept {
    buffers: Vec<Vec<f64>>,
    /// Their capacities' sum.
    entries: usize,
}

std::thread_local! {
    static KEPT: RefCell<Kept> = const {
        RefCell::new(Kept { buffers: Vec::new(), entries: 0 })
    };
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

/// A zeroed buffer of `len` entries.
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

/// A new zeroed buffer: written, not `calloc`ed, which costs more for small ones.
fn fresh(len: usize) -> Vec<f64> {
    let mut v = Vec::with_capacity(len);
    v.resize(len, 0.0);
    v
}

/// A vector of length `n` whose entries are unspecified (see [`overwritten`]).
pub fn vector(n: usize) -> DVector<f64> {
    DVector::from_vec(overwritten(n))
}

/// A zero vector of length `n`.
pub fn zero_vector(n: usize) -> DVector<f64> {
    DVector::from_vec(zeroed(n))
}

/// An array's storage, for [`recycle`].
pub trait Storage {
    /// The buffer holding the entries.
    fn into_buffer(self) -> Vec<f64>;
}

impl Storage for DVector<f64> {
    fn into_buffer(self) -> Vec<f64> {
        self.data.into()
    }
}

impl Storage for DMatrix<f64> {
    fn into_buffer(self) -> Vec<f64> {
        self.data.into()
    }
}

/// Hands an intermediate array's storage back after its last read.
#[inline]
pub fn recycle(a: impl Storage) {
    let v = a.into_buffer();
    let cap = v.capacity();
    if cap == 0 || cap > MAX_ENTRIES {
        return;
    }
    let _ = KEPT.try_with(|k| {
        let Ok(mut k) = k.try_borrow_mut() else {
            return;
        };
        if k.buffers.len() == MAX_KEPT || k.entries + cap > MAX_ENTRIES {
            let old = k.buffers.remove(0);
            k.entries -= old.capacity();
        }
        if k.entries + cap <= MAX_ENTRIES {
            k.entries += cap;
            k.buffers.push(v);
        }
    });
}

/// The most recently returned buffer with room for `len` entries, unless it is much larger
/// (a support's vector must not take the state's buffer of a 10⁶-state problem). Buffers
/// of one size come back in the order they are asked for again, so the search usually
/// stops at the last one.
#[inline]
fn kept(len: usize) -> Option<Vec<f64>> {
    if len == 0 {
        return None;
    }
    KEPT.try_with(|k| {
        let mut k = k.try_borrow_mut().ok()?;
        let fits = len..=2 * len + 32;
        let i = k
            .buffers
            .iter()
            .rposition(|b| fits.contains(&b.capacity()))?;
        let v = k.buffers.swap_remove(i);
        k.entries -= v.capacity();
        Some(v)
    })
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept_capacities() -> Vec<usize> {
        KEPT.with(|k| k.borrow().buffers.iter().map(Vec::capacity).collect())
    }

    #[test]
    fn a_recycled_buffer_serves_the_next_array_of_its_size_and_no_much_smaller_one() {
        let v = DVector::from_element(40, 3.0);
        let ptr = v.as_ptr();
        recycle(v);
        let z = zero_vector(40);
        assert_eq!(z.as_ptr(), ptr, "the kept buffer is reused");
        assert!(z.iter().all(|&x| x == 0.0));
        recycle(z);
        let u = vector(38);
        assert_eq!(u.as_ptr(), ptr);
        assert_eq!(u.len(), 38);
        recycle(u);
        // Entries past a shorter kept length are written.
        let w = vector(40);
        assert_eq!(w.len(), 40);
        assert!(w.iter().all(|&x| x.is_finite()));
        recycle(w);
        // Far smaller: a fresh buffer; the large one stays.
        let s = vector(3);
        assert_ne!(s.as_ptr(), ptr);
        assert!(kept_capacities().contains(&40));
        for _ in 0..MAX_KEPT - 1 {
            recycle(DVector::<f64>::zeros(7));
        }
        assert_eq!(kept_capacities().len(), MAX_KEPT);
        recycle(DVector::<f64>::zeros(9));
        assert_eq!(kept_capacities().len(), MAX_KEPT);
        assert!(!kept_capacities().contains(&40), "the oldest goes");
        recycle(DMatrix::<f64>::zeros(0, 4));
        assert_eq!(kept_capacities().len(), MAX_KEPT);
        // Nothing beyond the budget is kept.
        recycle(DVector::<f64>::zeros(MAX_ENTRIES + 1));
        assert!(kept_capacities().iter().all(|&c| c <= MAX_ENTRIES));
    }
}
