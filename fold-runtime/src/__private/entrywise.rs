//! Elementwise arithmetic of generated code: an operand read for the last time lends its
//! buffer to the result, a borrowed one is read into a kept buffer (`temps`), and results
//! are written in one pass over slices.

use super::kernels::Entries;
use super::temps;
use nalgebra::{DMatrix, DVector};

/// A matrix a kernel writes its result over: an owned one lends its buffer, a borrowed
/// one is copied into a kept buffer.
pub trait MatrixOperand {
    /// The matrix, owned.
    fn into_matrix(self) -> DMatrix<f64>;
}

impl MatrixOperand for DMatrix<f64> {
    fn into_matrix(self) -> DMatrix<f64> {
        self
    }
}

impl MatrixOperand for &DMatrix<f64> {
    fn into_matrix(self) -> DMatrix<f64> {
        copied(self)
    }
}

/// `x + y` of two arrays read for the last time: in `x`'s buffer, `y`'s kept for the next.
#[inline]
pub fn add<A>(mut x: A, y: A) -> A
where
    A: temps::Storage + for<'b> std::ops::AddAssign<&'b A>,
{
    x += &y;
    temps::recycle(y);
    x
}

/// `x − y` of two arrays read for the last time: in `x`'s buffer, `y`'s kept for the next.
#[inline]
pub fn subtract<A>(mut x: A, y: A) -> A
where
    A: temps::Storage + for<'b> std::ops::SubAssign<&'b A>,
{
    x -= &y;
    temps::recycle(y);
    x
}

/// A copy of `a` in a kept buffer.
pub(super) fn copied(a: &DMatrix<f64>) -> DMatrix<f64> {
    let mut out = temps::overwritten(a.len());
    out.copy_from_slice(a.as_slice());
    temps::as_matrix(a.nrows(), a.ncols(), out)
}

/// A vector or matrix operand of an entrywise product: an owned one lends its buffer to
/// the result, a borrowed one is read into a kept buffer.
pub trait Entrywise: Sized {
    /// The result type.
    type Owned;
    /// `self ⊙ y`.
    fn times(self, y: &Self::Owned) -> Self::Owned;
    /// `self ⊘ y`.
    fn over(self, y: &Self::Owned) -> Self::Owned;
}

macro_rules! entrywise {
    ($($t:ty),*) => {$(
        impl Entrywise for $t {
            type Owned = $t;
            #[inline]
            fn times(mut self, y: &$t) -> $t {
                self.component_mul_assign(y);
                self
            }
            #[inline]
            fn over(mut self, y: &$t) -> $t {
                self.component_div_assign(y);
                self
            }
        }
        impl Entrywise for &$t {
            type Owned = $t;
            #[inline]
            fn times(self, y: &$t) -> $t {
                zip_map(self, y, |a, b| a * b)
            }
            #[inline]
            fn over(self, y: &$t) -> $t {
                zip_map(self, y, |a, b| a / b)
            }
        }
    )*};
}
entrywise!(DVector<f64>, DMatrix<f64>);

/// `(f(xᵢ))ᵢ`: in `x`'s buffer when `x` is owned, in a kept one when it is borrowed.
#[inline]
pub fn map<X: crate::ops::Mapped>(x: X, f: impl Fn(f64) -> f64) -> X::Output {
    x.mapped(f)
}

/// `s x`.
#[inline]
pub fn scaled<X: crate::ops::Mapped>(x: X, s: f64) -> X::Output {
    x.mapped(|e| e * s)
}

/// `x / s`.
#[inline]
pub fn divided<X: crate::ops::Mapped>(x: X, s: f64) -> X::Output {
    x.mapped(|e| e / s)
}

/// `x + s` entrywise.
#[inline]
pub fn shifted<X: crate::ops::Mapped>(x: X, s: f64) -> X::Output {
    x.mapped(|e| e + s)
}

/// `−x`.
#[inline]
pub fn negated<X: crate::ops::Mapped>(x: X) -> X::Output {
    x.mapped(|e| -e)
}

/// `(xᵢᵖ)ᵢ`.
#[inline]
pub fn powered<X: crate::ops::Mapped>(x: X, p: f64) -> X::Output {
    x.mapped(|e| e.powf(p))
}

/// `a + b` of borrowed arrays, in a kept buffer.
#[inline]
pub fn sum<A: Dense>(a: &A, b: &A) -> A {
    zip_map(a, b, |x, y| x + y)
}

/// `a − b` of borrowed arrays, in a kept buffer.
#[inline]
pub fn difference<A: Dense>(a: &A, b: &A) -> A {
    zip_map(a, b, |x, y| x - y)
}

/// `(f(aᵢ, bᵢ))ᵢ` of two borrowed arrays of one shape, in a kept buffer.
///
/// # Panics
/// If the shapes differ (generated code checks every shape before it computes).
#[inline]
pub fn zip_map<A: Dense>(a: &A, b: &A, f: impl Fn(f64, f64) -> f64) -> A {
    assert_eq!(a.dims(), b.dims(), "zip_map: shapes differ");
    let (x, y) = (a.entries(), b.entries());
    let entries = x.iter().zip(y).map(|(&u, &v)| f(u, v));
    a.like(temps::collect(x.len(), entries))
}

/// A dense vector or matrix, rebuilt around a buffer of its shape.
pub trait Dense: Entries {
    /// Rows and columns.
    fn dims(&self) -> (usize, usize);
    /// An array of this shape holding `entries` (column-major).
    fn like(&self, entries: Vec<f64>) -> Self;
}

impl Dense for DVector<f64> {
    #[inline]
    fn dims(&self) -> (usize, usize) {
        (self.len(), 1)
    }
    #[inline]
    fn like(&self, entries: Vec<f64>) -> Self {
        temps::as_vector(entries)
    }
}

impl Dense for DMatrix<f64> {
    #[inline]
    fn dims(&self) -> (usize, usize) {
        self.shape()
    }
    #[inline]
    fn like(&self, entries: Vec<f64>) -> Self {
        temps::as_matrix(self.nrows(), self.ncols(), entries)
    }
}

/// `y + a ⊙ b` in `y`'s buffer.
#[inline]
pub fn add_product(mut y: DVector<f64>, a: &DVector<f64>, b: &DVector<f64>) -> DVector<f64> {
    y.zip_zip_apply(a, b, |yi, ai, bi| *yi += ai * bi);
    y
}

/// `x ⊙ y`, in `x`'s buffer when `x` is owned (a term read for the last time).
#[inline]
pub fn hadamard<X: Entrywise>(x: X, y: &X::Owned) -> X::Owned {
    x.times(y)
}

/// `x ⊘ y`, in `x`'s buffer when `x` is owned.
#[inline]
pub fn hadamard_div<X: Entrywise>(x: X, y: &X::Owned) -> X::Owned {
    x.over(y)
}

/// `a bᵀ`, in a kept buffer.
pub fn outer(a: &DVector<f64>, b: &DVector<f64>) -> DMatrix<f64> {
    let (a, b) = (a.as_slice(), b.as_slice());
    let mut out = temps::empty(a.len() * b.len());
    for &bj in b {
        out.extend(a.iter().map(|&ai| ai * bj));
    }
    temps::as_matrix(a.len(), b.len(), out)
}
