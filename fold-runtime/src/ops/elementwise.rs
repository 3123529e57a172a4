//! Elementwise primitives on vectors and matrices (and scalars, for generated code).
//!
//! Kinks: `abs` has derivative `sign(x)` with `sign(0) = 0`; `relu`, `max`, `min`, `clamp`
//! and `proj_box` give the derivative of the active branch and `0` at a tie with the bound
//! (the argument is then "at the bound": a tie counts as active, so ∂/∂x = 0 and the bound
//! gets the derivative).

use crate::__private::temps;
use nalgebra::{DMatrix, DVector};

/// A container of `f64` that can be mapped elementwise.
pub trait Elementwise: Sized {
    /// Applies `f` to every entry.
    fn map_entries(&self, f: impl Fn(f64) -> f64) -> Self;
}

impl Elementwise for f64 {
    fn map_entries(&self, f: impl Fn(f64) -> f64) -> Self {
        f(*self)
    }
}

// New containers take their storage from the per-thread temporaries, which generated
// code refills (`__private::temps`).
impl Elementwise for DVector<f64> {
    #[inline]
    fn map_entries(&self, f: impl Fn(f64) -> f64) -> Self {
        let x = self.as_slice();
        temps::as_vector(temps::collect(x.len(), x.iter().map(|&e| f(e))))
    }
}

impl Elementwise for DMatrix<f64> {
    #[inline]
    fn map_entries(&self, f: impl Fn(f64) -> f64) -> Self {
        let x = self.as_slice();
        let out = temps::collect(x.len(), x.iter().map(|&e| f(e)));
        temps::as_matrix(self.nrows(), self.ncols(), out)
    }
}

/// The operand of an elementwise function: a borrowed container (mapped into a new one)
/// or an owned one (mapped in its own buffer).
pub trait Mapped {
    /// The container the function returns.
    type Output;
    /// `f` applied to every entry.
    fn mapped(self, f: impl Fn(f64) -> f64) -> Self::Output;
}

impl<T: Elementwise> Mapped for &T {
    type Output = T;
    #[inline]
    fn mapped(self, f: impl Fn(f64) -> f64) -> T {
        self.map_entries(f)
    }
}

impl Mapped for f64 {
    type Output = f64;
    fn mapped(self, f: impl Fn(f64) -> f64) -> f64 {
        f(self)
    }
}

impl Mapped for DVector<f64> {
    type Output = DVector<f64>;
    #[inline]
    fn mapped(mut self, f: impl Fn(f64) -> f64) -> DVector<f64> {
        self.apply(|v| *v = f(*v));
        self
    }
}

impl Mapped for DMatrix<f64> {
    type Output = DMatrix<f64>;
    #[inline]
    fn mapped(mut self, f: impl Fn(f64) -> f64) -> DMatrix<f64> {
        self.apply(|v| *v = f(*v));
        self
    }
}

/// The logistic function, evaluated without overflow.
pub fn sigmoid_scalar(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `ln(1 + eˣ)`, evaluated without overflow.
pub fn softplus_scalar(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

macro_rules! elementwise {
    ($($(#[$doc:meta])* $name:ident = $f:expr;)*) => {$(
        $(#[$doc])*
        pub fn $name<T: Mapped>(v: T) -> T::Output {
            v.mapped($f)
        }
    )*};
}

elementwise! {
    /// `eˣ` elementwise.
    exp = f64::exp;
    /// Natural logarithm elementwise.
    ln = f64::ln;
    /// Sine elementwise.
    sin = f64::sin;
    /// Cosine elementwise.
    cos = f64::cos;
    /// Hyperbolic tangent elementwise.
    tanh = f64::tanh;
    /// Logistic function `1/(1+e⁻ˣ)` elementwise.
    sigmoid = sigmoid_scalar;
    /// Square root elementwise.
    sqrt = f64::sqrt;
    /// Absolute value elementwise; derivative `sign(x)`, `0` at `0`.
    abs = f64::abs;
    /// `max(x, 0)` elementwise; derivative `1[x > 0]`.
    relu = |x: f64| x.max(0.0);
    /// `ln(1 + eˣ)` elementwise; derivative `sigmoid(x)`.
    softplus = softplus_scalar;
    /// `1/x` elementwise with `1/0 := 0`: the guarded reciprocal derivatives use at
    /// removable kinks (`∂‖v‖ = vᵀ/‖v‖` is `0` at `v = 0`, `sqrt'(0) := 0`).
    recip0 = |x: f64| if x == 0.0 { 0.0 } else { 1.0 / x };
    /// Projection onto `x ≥ 0`; same as [`relu`].
    proj_nonneg = |x: f64| x.max(0.0);
}

/// `max(xᵢ, s)` elementwise; `∂/∂xᵢ = 1[xᵢ > s]`, the rest goes to `s`.
pub fn max<T: Mapped>(v: T, s: f64) -> T::Output {
    v.mapped(|x| x.max(s))
}

/// `min(xᵢ, s)` elementwise; `∂/∂xᵢ = 1[xᵢ < s]`, the rest goes to `s`.
pub fn min<T: Mapped>(v: T, s: f64) -> T::Output {
    v.mapped(|x| x.min(s))
}

/// `min(max(xᵢ, lo), hi)` elementwise (requires `lo ≤ hi`; never panics);
/// `∂/∂xᵢ = 1[lo < xᵢ < hi]`.
pub fn clamp<T: Mapped>(v: T, lo: f64, hi: f64) -> T::Output {
    v.mapped(|x| x.max(lo).min(hi))
}

/// Projection onto the box `lo ≤ x ≤ hi`; the same as [`clamp`].
pub fn proj_box<T: Mapped>(v: T, lo: f64, hi: f64) -> T::Output {
    clamp(v, lo, hi)
}

/// The prox of `t‖·‖₁`: `sign(x) max(|x| − t, 0)`; `∂/∂xᵢ = 1[|xᵢ| > t]`,
/// `∂/∂t = −sign(xᵢ) 1[|xᵢ| > t]`.
pub fn soft_threshold<T: Mapped>(v: T, t: f64) -> T::Output {
    v.mapped(|x| {
        if x > t {
            x - t
        } else if x < -t {
            x + t
        } else {
            0.0
        }
    })
}
