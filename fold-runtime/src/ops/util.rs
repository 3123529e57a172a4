//! Argument checks and conversions shared by the primitives.

use crate::__private::check;
use crate::{Arg, FoldError, Value};
use nalgebra::{DMatrix, DVector};

/// `Err(NonFinite)` naming `primitive: what` unless every entry is finite.
pub(crate) fn finite_vec(p: &str, what: &str, v: &DVector<f64>) -> Result<(), FoldError> {
    // The message is formatted only on failure: these run on every call.
    if check::all_finite(v.as_slice()) {
        return Ok(());
    }
    check::finite(v.as_slice(), &format!("{p}: {what}"))
}

/// `Err(NonFinite)` naming `primitive: what` unless every entry is finite.
pub(crate) fn finite_mat(p: &str, what: &str, m: &DMatrix<f64>) -> Result<(), FoldError> {
    if check::all_finite(m.as_slice()) {
        return Ok(());
    }
    check::finite(m.as_slice(), &format!("{p}: {what}"))
}

/// `Err(NonFinite)` naming `primitive: what` unless the scalar is finite.
pub(crate) fn finite_scalar(p: &str, what: &str, s: f64) -> Result<(), FoldError> {
    if s.is_finite() {
        return Ok(());
    }
    check::finite_scalar(s, &format!("{p}: {what}"))
}

/// `Err(DimensionMismatch)` naming `primitive: what` unless `found == expected`.
pub(crate) fn dim(p: &str, what: &str, expected: usize, found: usize) -> Result<(), FoldError> {
    if found == expected {
        return Ok(());
    }
    check::same_dim(&format!("{p}: {what}"), expected, found)
}

/// A vector of `n` NaNs: what the infallible facades return on failure.
pub(crate) fn nan_vec(n: usize) -> DVector<f64> {
    DVector::from_element(n, f64::NAN)
}

/// Checks the number of arguments of a [`crate::Primitive`].
pub(crate) fn arity(p: &str, args: usize, expected: usize) -> Result<(), FoldError> {
    dim(p, "number of arguments", expected, args)
}

fn kind_err(p: &str, i: usize, kind: &str) -> FoldError {
    FoldError::dimension(format!("{p}: argument {i} should be {kind}"), 1, 0)
}

/// Argument `i` as a scalar.
pub(crate) fn scalar_arg(p: &str, args: &[Arg<'_>], i: usize) -> Result<f64, FoldError> {
    match args.get(i) {
        Some(Arg::Scalar(s)) => Ok(*s),
        _ => Err(kind_err(p, i, "a scalar")),
    }
}

/// Argument `i` as a vector.
pub(crate) fn vec_arg<'a>(
    p: &str,
    args: &[Arg<'a>],
    i: usize,
) -> Result<&'a DVector<f64>, FoldError> {
    match args.get(i) {
        Some(Arg::Vector(v)) => Ok(v),
        _ => Err(kind_err(p, i, "a vector")),
    }
}

/// Argument `i` as a matrix.
pub(crate) fn mat_arg<'a>(
    p: &str,
    args: &[Arg<'a>],
    i: usize,
) -> Result<&'a DMatrix<f64>, FoldError> {
    match args.get(i) {
        Some(Arg::Matrix(m)) => Ok(m),
        _ => Err(kind_err(p, i, "a matrix")),
    }
}

/// Optional tangent `i` as a scalar (`None` or missing: zero).
pub(crate) fn scalar_tan(
    p: &str,
    tangents: &[Option<Arg<'_>>],
    i: usize,
) -> Result<f64, FoldError> {
    match tangents.get(i) {
        None | Some(None) => Ok(0.0),
        Some(Some(Arg::Scalar(s))) => Ok(*s),
        Some(Some(_)) => Err(kind_err(p, i, "a scalar tangent")),
    }
}

/// Optional tangent `i` as a vector of length `n` (`None` or missing: zero).
pub(crate) fn vec_tan<'a>(
    p: &str,
    tangents: &[Option<Arg<'a>>],
    i: usize,
    n: usize,
) -> Result<Option<&'a DVector<f64>>, FoldError> {
    match tangents.get(i) {
        None | Some(None) => Ok(None),
        Some(Some(Arg::Vector(v))) => {
            dim(p, &format!("tangent {i}"), n, v.len())?;
            Ok(Some(v))
        }
        Some(Some(_)) => Err(kind_err(p, i, "a vector tangent")),
    }
}

/// Optional tangent `i` as an `r × c` matrix (`None` or missing: zero).
pub(crate) fn mat_tan<'a>(
    p: &str,
    tangents: &[Option<Arg<'a>>],
    i: usize,
    shape: (usize, usize),
) -> Result<Option<&'a DMatrix<f64>>, FoldError> {
    match tangents.get(i) {
        None | Some(None) => Ok(None),
        Some(Some(Arg::Matrix(m))) => {
            dim(p, &format!("rows of tangent {i}"), shape.0, m.nrows())?;
            dim(p, &format!("columns of tangent {i}"), shape.1, m.ncols())?;
            Ok(Some(m))
        }
        Some(Some(_)) => Err(kind_err(p, i, "a matrix tangent")),
    }
}

/// A value of the same kind and shape as `like`, filled with NaN: the result of a product
/// whose (co)tangent had the wrong kind or shape (the trait's products cannot fail).
pub(crate) fn nan_like(like: &Value) -> Value {
    match like {
        Value::Scalar(_) => Value::Scalar(f64::NAN),
        Value::Vector(v) => Value::Vector(nan_vec(v.len())),
        Value::Matrix(m) => Value::Matrix(DMatrix::from_element(m.nrows(), m.ncols(), f64::NAN)),
    }
}

/// Keeps the entries flagged in `wanted` (missing flags mean wanted).
pub(crate) fn keep_wanted(values: Vec<Value>, wanted: &[bool]) -> Vec<Option<Value>> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| wanted.get(i).copied().unwrap_or(true).then_some(v))
        .collect()
}

/// The fallible core of a [`crate::PrimitiveLinearization`]; [`impl_linearization!`]
/// turns it into the trait, mapping (co)tangents of the wrong kind or shape to NaN outputs.
pub(crate) trait LinCore {
    /// The outputs.
    fn outs(&self) -> &[Value];
    /// NaN values shaped like the arguments.
    fn nan_args(&self) -> Vec<Value>;
    /// One tangent per output.
    fn try_jvp(&self, tangents: &[Option<Arg<'_>>]) -> Result<Vec<Value>, FoldError>;
    /// One cotangent per argument (those not `wanted` may be anything, e.g. zeros).
    fn try_vjp(
        &self,
        cotangents: &[Option<Arg<'_>>],
        wanted: &[bool],
    ) -> Result<Vec<Value>, FoldError>;
}

/// Whether argument `i` is wanted (missing flags mean wanted).
pub(crate) fn wants(wanted: &[bool], i: usize) -> bool {
    wanted.get(i).copied().unwrap_or(true)
}

macro_rules! impl_linearization {
    ($t:ty) => {
        impl $crate::PrimitiveLinearization for $t {
            fn outputs(&self) -> &[$crate::Value] {
                $crate::ops::util::LinCore::outs(self)
            }
            fn jvp(&self, tangents: &[Option<$crate::Arg<'_>>]) -> Vec<$crate::Value> {
                use $crate::ops::util::LinCore;
                self.try_jvp(tangents).unwrap_or_else(|_| {
                    self.outs()
                        .iter()
                        .map($crate::ops::util::nan_like)
                        .collect()
                })
            }
            fn vjp(
                &self,
                cotangents: &[Option<$crate::Arg<'_>>],
                wanted: &[bool],
            ) -> Vec<Option<$crate::Value>> {
                use $crate::ops::util::LinCore;
                let values = self
                    .try_vjp(cotangents, wanted)
                    .unwrap_or_else(|_| self.nan_args());
                $crate::ops::util::keep_wanted(values, wanted)
            }
        }
    };
}
pub(crate) use impl_linearization;

/// Whether every entry of the vector is finite.
pub(crate) fn all_finite_vec(v: &DVector<f64>) -> bool {
    check::all_finite(v.as_slice())
}
