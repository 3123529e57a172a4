//! Values that gradients can be accumulated into.

use nalgebra::{DMatrix, DVector};
use std::ops::AddAssign;

/// A gradient-shaped value: zeros like itself, `+=`, scaling, and an inner product.
///
/// Implemented for `f64`, `DVector<f64>`, `DMatrix<f64>` and every generated `Grads`, so
/// solvers and the unrolled pass accumulate parameter gradients of any shape.
///
/// ```
/// use fold_runtime::Cotangent;
/// use fold_runtime::nalgebra::dvector;
/// let mut g = dvector![1.0, 2.0];
/// g += &dvector![1.0, 0.0];
/// g.scale_by(0.5);
/// assert_eq!(g, dvector![1.0, 1.0]);
/// assert_eq!(g.dot_with(&g), 2.0);
/// assert_eq!(g.zeros_like().norm_of(), 0.0);
/// ```
pub trait Cotangent: Clone + for<'a> AddAssign<&'a Self> {
    /// A zero value of the same shape.
    fn zeros_like(&self) -> Self;
    /// Multiplies every component by `s`.
    fn scale_by(&mut self, s: f64);
    /// The Euclidean (Frobenius) inner product.
    fn dot_with(&self, other: &Self) -> f64;
    /// Whether every component is finite.
    fn all_finite(&self) -> bool;
    /// The Euclidean (Frobenius) norm.
    fn norm_of(&self) -> f64 {
        self.dot_with(self).sqrt()
    }
    /// `self += s * other`.
    fn add_scaled(&mut self, s: f64, other: &Self) {
        let mut t = other.clone();
        t.scale_by(s);
        *self += &t;
    }
}

impl Cotangent for f64 {
    fn zeros_like(&self) -> Self {
        0.0
    }
    fn scale_by(&mut self, s: f64) {
        *self *= s;
    }
    fn dot_with(&self, other: &Self) -> f64 {
        self * other
    }
    fn all_finite(&self) -> bool {
        self.is_finite()
    }
    fn add_scaled(&mut self, s: f64, other: &Self) {
        *self += s * other;
    }
}

impl Cotangent for DVector<f64> {
    fn zeros_like(&self) -> Self {
        DVector::zeros(self.len())
    }
    fn scale_by(&mut self, s: f64) {
        *self *= s;
    }
    fn dot_with(&self, other: &Self) -> f64 {
        self.dot(other)
    }
    fn all_finite(&self) -> bool {
        crate::__private::check::all_finite(self.as_slice())
    }
    fn add_scaled(&mut self, s: f64, other: &Self) {
        self.axpy(s, other, 1.0);
    }
}

impl Cotangent for DMatrix<f64> {
    fn zeros_like(&self) -> Self {
        DMatrix::zeros(self.nrows(), self.ncols())
    }
    fn scale_by(&mut self, s: f64) {
        *self *= s;
    }
    fn dot_with(&self, other: &Self) -> f64 {
        self.dot(other)
    }
    fn all_finite(&self) -> bool {
        crate::__private::check::all_finite(self.as_slice())
    }
    fn add_scaled(&mut self, s: f64, other: &Self) {
        self.zip_apply(other, |a, b| *a += s * b);
    }
}
