//! Primitives whose derivative is supplied by code rather than derived symbolically:
//! inner solvers (a QP, a polyhedral projection) and user functions listed in
//! `#[fold(…, primitives(f))]`. This is the paper's "unfolding".

use crate::FoldError;
use nalgebra::{DMatrix, DVector};

/// A borrowed argument, tangent or cotangent of a primitive.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    /// A scalar.
    Scalar(f64),
    /// A vector.
    Vector(&'a DVector<f64>),
    /// A matrix.
    Matrix(&'a DMatrix<f64>),
}

/// An owned value: an output, a tangent or a cotangent of a primitive.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar.
    Scalar(f64),
    /// A vector.
    Vector(DVector<f64>),
    /// A matrix.
    Matrix(DMatrix<f64>),
}

impl Value {
    /// Borrows the value as an [`Arg`].
    pub fn as_arg(&self) -> Arg<'_> {
        match self {
            Value::Scalar(s) => Arg::Scalar(*s),
            Value::Vector(v) => Arg::Vector(v),
            Value::Matrix(m) => Arg::Matrix(m),
        }
    }

    /// The scalar inside, or `DimensionMismatch` naming `what`.
    pub fn into_scalar(self, what: &str) -> Result<f64, FoldError> {
        match self {
            Value::Scalar(s) => Ok(s),
            other => Err(kind_error(what, &other)),
        }
    }

    /// The vector inside, or `DimensionMismatch` naming `what`.
    pub fn into_vector(self, what: &str) -> Result<DVector<f64>, FoldError> {
        match self {
            Value::Vector(v) => Ok(v),
            other => Err(kind_error(what, &other)),
        }
    }

    /// The matrix inside, or `DimensionMismatch` naming `what`.
    pub fn into_matrix(self, what: &str) -> Result<DMatrix<f64>, FoldError> {
        match self {
            Value::Matrix(m) => Ok(m),
            other => Err(kind_error(what, &other)),
        }
    }

    /// Whether every component is finite.
    pub fn all_finite(&self) -> bool {
        match self {
            Value::Scalar(s) => s.is_finite(),
            Value::Vector(v) => crate::__private::check::all_finite(v.as_slice()),
            Value::Matrix(m) => crate::__private::check::all_finite(m.as_slice()),
        }
    }
}

fn kind_error(what: &str, found: &Value) -> FoldError {
    let (kind, len) = match found {
        Value::Scalar(_) => ("a scalar", 1),
        Value::Vector(v) => ("a vector", v.len()),
        Value::Matrix(m) => ("a matrix", m.len()),
    };
    FoldError::dimension(format!("{what} (got {kind})"), len, len)
}

/// A differentiable function with hand-written derivatives, usable inside `#[fold]` rules.
///
/// `linearize` evaluates at a point and keeps what the derivatives need (a factorization,
/// an active set), so that products reuse it. The built-in primitives of [`crate::ops`]
/// implement it on unit structs named after them (`QpSolve`, `ProjPolyhedron`,
/// `ProjSimplex`, …), taking their arguments in the value function's order.
pub trait Primitive {
    /// The primitive evaluated and linearized at a point.
    type Linearization: PrimitiveLinearization;
    /// Name used in error messages.
    fn name(&self) -> &'static str;
    /// Evaluates at `args`; fails with a [`FoldError`] (never a panic or a NaN) when the
    /// inner problem is infeasible or its solver fails.
    fn linearize(&self, args: &[Arg<'_>]) -> Result<Self::Linearization, FoldError>;
}

/// A primitive at a point: its outputs and products with its Jacobian.
pub trait PrimitiveLinearization {
    /// The outputs (one for most primitives).
    fn outputs(&self) -> &[Value];
    /// One tangent per output: `Σ_i ∂out/∂arg_i · tangents[i]`, `None` standing for zero.
    fn jvp(&self, tangents: &[Option<Arg<'_>>]) -> Vec<Value>;
    /// Cotangents of the arguments flagged in `wanted` (others may be `None`), given one
    /// cotangent per output (`None` standing for zero).
    fn vjp(&self, cotangents: &[Option<Arg<'_>>], wanted: &[bool]) -> Vec<Option<Value>>;
}
