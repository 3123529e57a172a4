//! Large work buffers kept per thread from one backward to the next.
//!
//! The banded factors of a 1-D problem at n = 10⁵–10⁶ are megabytes each (tens of
//! kilobytes at 10⁴), and so are a 2-D problem's spanning forest and its union–find
//! arrays. Freed, they sit at the top of
//! the heap, glibc returns them to the OS, and the next call faults on every page again:
//! that measured as much as the factorization itself. A handful of buffers of each
//! element type kept here (what one sparse reduced solve uses, at most 256 MiB a type and
//! thread) are handed out again instead.

use std::cell::RefCell;
use std::thread::LocalKey;

/// Below this many bytes the allocator's own free lists serve as well. Not 128 KiB: the
/// 60–80 KiB factors and residuals of a 10⁴-state problem then went back to glibc, which
/// trimmed them off the heap's top and faulted them in again every call (measured: 1-D
/// 10⁴ 0.210 → 0.196 ms, 2-D 64² 0.41 → 0.335 ms with this floor).
const MIN_BYTES: usize = 16 << 10;
/// Buffers kept per element type and thread (the largest, if more are returned).
const MAX_KEPT: usize = 8;
/// Bytes kept per element type and thread at most: a buffer that would pass it is freed.
const MAX_BYTES: usize = 256 << 20;

/// A buffer's pool: the kept buffers of one element type on this thread.
pub type Pool<T> = RefCell<Vec<Vec<T>>>;

/// Element types whose buffers are kept.
pub trait Kept: Copy + 'static {
    /// This thread's pool of the type.
    fn pool() -> &'static LocalKey<Pool<Self>>;
}

/// Implements [`Kept`] for types, each with its own thread-local pool.
macro_rules! keep_type {
    ($($t:ty),* $(,)?) => {$(
        impl $crate::solvers::scratch::Kept for $t {
            fn pool() -> &'static ::std::thread::LocalKey<$crate::solvers::scratch::Pool<$t>> {
                ::std::thread_local! {
                    static POOL: $crate::solvers::scratch::Pool<$t> =
                        const { ::std::cell::RefCell::new(::std::vec::Vec::new()) };
                }
                &POOL
            }
        }
    )*};
}
pub(crate) use keep_type;

keep_type!(f64, usize, (usize, usize));

/// A buffer of `len` copies of `value`, reusing a kept one when one is large enough.
pub fn filled<T: Kept>(len: usize, value: T) -> Vec<T> {
    match kept(len) {
        Some(mut v) => {
            v.clear();
            v.resize(len, value);
            v
        }
        // `vec!` takes zeroed pages from the allocator for a zero value; below the pool's
        // floor `calloc` costs more than writing the entries.
        None if bytes::<T>(len) >= MIN_BYTES => vec![value; len],
        None => {
            let mut v = Vec::with_capacity(len);
            v.resize(len, value);
            v
        }
    }
}

/// A zeroed `f64` buffer of `len` entries.
pub fn zeroed(len: usize) -> Vec<f64> {
    filled(len, 0.0)
}

/// A buffer of `len` entries whose values are unspecified (`value`, or what a previous
/// call left): for a caller that writes every entry before it reads one, so that a kept
/// buffer is not filled for nothing.
pub fn overwritten<T: Kept>(len: usize, value: T) -> Vec<T> {
    let mut v = kept(len).unwrap_or_else(|| Vec::with_capacity(len));
    v.truncate(len);
    v.resize(len, value);
    v
}

/// An empty buffer with room for `len` entries (pushed into by the caller).
pub fn empty<T: Kept>(len: usize) -> Vec<T> {
    match kept(len) {
        Some(mut v) => {
            v.clear();
            v
        }
        None => Vec::with_capacity(len),
    }
}

fn bytes<T>(len: usize) -> usize {
    len.saturating_mul(std::mem::size_of::<T>())
}

/// The smallest kept buffer with room for `len` entries (the others stay for larger
/// requests), if `len` is worth keeping at all.
fn kept<T: Kept>(len: usize) -> Option<Vec<T>> {
    if bytes::<T>(len) < MIN_BYTES {
        return None;
    }
    T::pool()
        .try_with(|p| {
            let mut p = p.try_borrow_mut().ok()?;
            let i = (0..p.len())
                .filter(|&i| p[i].capacity() >= len)
                .min_by_key(|&i| p[i].capacity())?;
            Some(p.swap_remove(i))
        })
        .ok()
        .flatten()
}

/// Hands `v` back for a later [`filled`], [`overwritten`] or [`empty`].
pub fn keep<T: Kept>(v: Vec<T>) {
    if bytes::<T>(v.capacity()) < MIN_BYTES {
        return;
    }
    let _ = T::pool().try_with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            let kept: usize = p.iter().map(|b| bytes::<T>(b.capacity())).sum();
            if kept + bytes::<T>(v.capacity()) > MAX_BYTES {
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

    const MIN_LEN: usize = MIN_BYTES / 8;

    fn kept_f64() -> Vec<usize> {
        f64::pool().with(|p| p.borrow().iter().map(Vec::capacity).collect())
    }

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
        let mut u = overwritten(MIN_LEN + 1, 0.0);
        assert_eq!(u.len(), MIN_LEN + 1);
        u.iter_mut().for_each(|x| *x = 7.0);
        keep(u);
        let u = overwritten(MIN_LEN + 3, 0.0);
        assert_eq!(u.len(), MIN_LEN + 3);
        assert_eq!(
            u[MIN_LEN + 2],
            0.0,
            "entries past the old length are the fill value"
        );
        keep(u);
        // Too large for anything kept: a fresh one.
        let big = empty::<f64>(4 * MIN_LEN);
        assert!(big.is_empty() && big.capacity() >= 4 * MIN_LEN);
        keep(w);
        keep(big);
        for _ in 0..2 * MAX_KEPT {
            keep(Vec::<f64>::with_capacity(MIN_LEN));
        }
        assert_eq!(kept_f64().len(), MAX_KEPT);
        keep(vec![1.0; 10]);
        assert_eq!(kept_f64().len(), MAX_KEPT);
        // The largest survive the overflow.
        assert!(kept_f64().iter().any(|&c| c >= 4 * MIN_LEN));
        // Nothing beyond the byte budget is kept.
        keep(Vec::<f64>::with_capacity(MAX_BYTES / 8));
        assert!(kept_f64().iter().all(|&c| c < MAX_BYTES / 8));
    }

    #[test]
    fn each_element_type_has_its_own_pool() {
        let v = filled(MIN_LEN, usize::MAX);
        assert!(v.iter().all(|&x| x == usize::MAX));
        let ptr = v.as_ptr();
        keep(v);
        // An `f64` request does not take the `usize` buffer.
        let f = zeroed(MIN_LEN);
        assert_ne!(f.as_ptr() as usize, ptr as usize);
        let again = filled(MIN_LEN, 0usize);
        assert_eq!(again.as_ptr(), ptr);
        assert!(again.iter().all(|&x| x == 0));
    }
}
