//! Reading the outputs of an opaque primitive's linearization in generated code: each
//! output checked for its kind, an absent one a structural zero.

use crate::{FoldError, PrimitiveLinearization, Value};
use nalgebra::{DMatrix, DVector};

fn output<L: PrimitiveLinearization>(lin: &L, i: usize, name: &str) -> Result<Value, FoldError> {
    let v = lin
        .outputs()
        .get(i)
        .cloned()
        .ok_or_else(|| FoldError::primitive(name, format!("returned no output #{i}")))?;
    if !v.all_finite() {
        return Err(FoldError::non_finite(format!("output of `{name}`")));
    }
    Ok(v)
}

/// Output `i` of a primitive, which must be a vector.
pub fn output_vector<L: PrimitiveLinearization>(
    lin: &L,
    i: usize,
    name: &str,
) -> Result<DVector<f64>, FoldError> {
    output(lin, i, name)?.into_vector(&format!("output of `{name}`"))
}

/// Output `i` of a primitive, which must be a scalar.
pub fn output_scalar<L: PrimitiveLinearization>(
    lin: &L,
    i: usize,
    name: &str,
) -> Result<f64, FoldError> {
    output(lin, i, name)?.into_scalar(&format!("output of `{name}`"))
}

/// Output `i` of a primitive, which must be a matrix.
pub fn output_matrix<L: PrimitiveLinearization>(
    lin: &L,
    i: usize,
    name: &str,
) -> Result<DMatrix<f64>, FoldError> {
    output(lin, i, name)?.into_matrix(&format!("output of `{name}`"))
}

/// The results of a primitive's JVP (`Vec<Value>`) or VJP (`Vec<Option<Value>>`).
pub trait Outputs {
    /// Takes entry `i`, if present.
    fn take(&mut self, i: usize) -> Option<Value>;
}

impl Outputs for Vec<Value> {
    fn take(&mut self, i: usize) -> Option<Value> {
        self.get_mut(i)
            .map(|v| std::mem::replace(v, Value::Scalar(0.0)))
    }
}

impl Outputs for Vec<Option<Value>> {
    fn take(&mut self, i: usize) -> Option<Value> {
        self.get_mut(i).and_then(Option::take)
    }
}

/// Entry `i` as a vector; zeros shaped like `like` when absent (a structural zero).
pub fn take_vector<O: Outputs>(t: &mut O, i: usize, like: Option<&DVector<f64>>) -> DVector<f64> {
    match t.take(i) {
        Some(Value::Vector(v)) => v,
        _ => DVector::zeros(like.map_or(0, |l| l.len())),
    }
}

/// Entry `i` as a scalar; zero when absent.
pub fn take_scalar<O: Outputs>(t: &mut O, i: usize, _like: Option<f64>) -> f64 {
    match t.take(i) {
        Some(Value::Scalar(s)) => s,
        _ => 0.0,
    }
}

/// Entry `i` as a matrix; zeros shaped like `like` when absent.
pub fn take_matrix<O: Outputs>(t: &mut O, i: usize, like: Option<&DMatrix<f64>>) -> DMatrix<f64> {
    match t.take(i) {
        Some(Value::Matrix(m)) => m,
        _ => like.map_or_else(
            || DMatrix::zeros(0, 0),
            |l| DMatrix::zeros(l.nrows(), l.ncols()),
        ),
    }
}
