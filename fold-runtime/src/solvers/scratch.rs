//! Large work buffers kept per thread from one backward to the next.
//!
//! The banded factors of a 1-D problem at n = 10⁵–10⁶ are megabytes each. Freed, they sit
//! at the top of the heap, glibc returns them to the OS, and the next call faults on every
//! page again: that measured as much as the factorization itself. A handful of buffers
//! kept here (what one sparse reduced solve uses, at most 256 MiB a thread) are handed
//! out again instead.

use std::cell::RefCell;

/// Below this length the allocator's own free lists serve as well.
const MIN_LEN: usize = 1 << 14;
/// Buffers kept per thread (the largest, if more are returned).
const MAX_KEPT: usize = 6;
/// Entries kept per thread at most (256 MiB): a buffer that would pass it is freed.
const MAX_ENTRIES: usize = 1 << 25;

thread_local! {
    static POOL: RefCell<Vec<Vec<f64>>> = const { RefCell::new(Vec::new()) };
}

/// A zeroed buffer of `len` entries, reusing a kept one when one is large enough.
pub fn zeroed(len: usize) -> Vec<f64> {
    let mut v = kept(len).unwrap_or_default();
    v.clear();
    v.resize(len, 0.0);
    v
}

/// A buffer of `len` entries whose values are unspecified (zeros, or what a previous
/// call left): for a caller that writes every entry before it reads one, so that a kept
/// buffer is not zeroed for nothing.
pub fn overwritten(len: usize) -> Vec<f64> {
    let mut v = kept(len).unwrap_or_default();
    v.truncate(len);
    v.resize(len, 0.0);
    v
}

/// An empty buffer with room for `len` entries (pushed into by the caller).
pub fn empty(len: usize) -> Vec<f64> {
    match kept(len) {
        Some(mut v) => {
            v.clear();
            v
        }
        None => Vec::with_capacity(len),
    }
}

/// The smallest kept buffer with room for `len` entries (the others stay for larger
/// requests), if `len` is worth keeping at all.
fn kept(len: usize) -> Option<Vec<f64>> {
    if len < MIN_LEN {
        return None;
    }
    POOL.try_with(|p| {
        let mut p = p.try_borrow_mut().ok()?;
        let i = (0..p.len())
            .filter(|&i| p[i].capacity() >= len)
            .min_by_key(|&i| p[i].capacity())?;
        Some(p.swap_remove(i))
    })
    .ok()
    .flatten()
}

/// Hands `v` back for a later [`zeroed`] or [`empty`].
pub fn keep(v: Vec<f64>) {
    if v.capacity() < MIN_LEN {
        return;
    }
    let _ = POOL.try_with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            let kept: usize = p.iter().map(Vec::capacity).sum();
            if kept + v.capacity() > MAX_ENTRIES {
                return;
            }
            p.push(v);
            if p.len() > MAX_KEPT {
                // Drop the smallest.
                if let Some(i) = (0..p.len()).min_by_key(|&i| p[i].capacity()) {
                    p.swap_remove(i);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_buffer_comes_back_zeroed_and_small_ones_are_not_kept() {
        let mut v = zeroed(MIN_LEN + 5);
        assert!(v.iter().all(|&x| x == 0.0));
        v.iter_mut().for_each(|x| *x = 3.0);
        let ptr = v.as_ptr();
        keep(v);
        let w = zeroed(MIN_LEN);
        assert_eq!(w.as_ptr(), ptr, "the kept buffer is reused");
        assert_eq!(w.len(), MIN_LEN);
        assert!(w.iter().all(|&x| x == 0.0));
        // Unspecified contents, but the right length.
        let mut u = overwritten(MIN_LEN + 1);
        assert_eq!(u.len(), MIN_LEN + 1);
        u.iter_mut().for_each(|x| *x = 7.0);
        keep(u);
        let u = overwritten(MIN_LEN + 3);
        assert_eq!(u.len(), MIN_LEN + 3);
        assert_eq!(u[MIN_LEN + 2], 0.0, "entries past the old length are zeros");
        keep(u);
        let w = zeroed(MIN_LEN);
        // Too large for anything kept: a fresh one.
        let big = empty(4 * MIN_LEN);
        assert!(big.is_empty() && big.capacity() >= 4 * MIN_LEN);
        keep(w);
        keep(big);
        for _ in 0..2 * MAX_KEPT {
            keep(Vec::with_capacity(MIN_LEN));
        }
        let kept = POOL.with(|p| p.borrow().len());
        assert_eq!(kept, MAX_KEPT);
        let small = vec![1.0; 10];
        keep(small);
        assert_eq!(POOL.with(|p| p.borrow().len()), MAX_KEPT);
        // The largest survive the overflow.
        assert!(POOL.with(|p| p.borrow().iter().any(|v| v.capacity() >= 4 * MIN_LEN)));
        // Nothing beyond the byte budget is kept.
        keep(Vec::with_capacity(MAX_ENTRIES));
        assert!(POOL.with(|p| p.borrow().iter().all(|v| v.capacity() < MAX_ENTRIES)));
    }
}
