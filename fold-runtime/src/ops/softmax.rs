//! `softmax` and `log_sum_exp`: smooth everywhere, evaluated without overflow.

use super::util::{self, impl_linearization, LinCore};
use crate::{Arg, FoldError, Primitive, Value};
use nalgebra::DVector;
use std::sync::OnceLock;

const SOFTMAX: &str = "softmax";
const LSE: &str = "log_sum_exp";

/// `(max, Σ exp(vᵢ − max))`; `None` for an empty vector.
fn shifted(v: &DVector<f64>) -> Option<(f64, DVector<f64>, f64)> {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.is_empty() {
        return None;
    }
    let e = v.map(|x| (x - m).exp());
    let total = e.sum();
    Some((m, e, total))
}

/// `softmax(v)ᵢ = exp(vᵢ) / Σⱼ exp(vⱼ)`, evaluated as `exp(vᵢ − max v)` so it never
/// overflows. Smooth: Jacobian `diag(s) − ssᵀ`. On non-finite input returns a NaN-filled
/// vector (see [`try_softmax`]).
pub fn softmax(v: &DVector<f64>) -> DVector<f64> {
    try_softmax(v).unwrap_or_else(|_| util::nan_vec(v.len()))
}

/// [`softmax`], failing with `NonFinite` on a NaN or infinite entry.
pub fn try_softmax(v: &DVector<f64>) -> Result<DVector<f64>, FoldError> {
    util::finite_vec(SOFTMAX, "v", v)?;
    Ok(match shifted(v) {
        Some((_, e, total)) => e / total,
        None => DVector::zeros(0),
    })
}

/// `ln Σ exp(vᵢ)`, evaluated as `max v + ln Σ exp(vᵢ − max v)`. Smooth: gradient
/// `softmax(v)`. Returns NaN on non-finite or empty input (see [`try_log_sum_exp`]).
pub fn log_sum_exp(v: &DVector<f64>) -> f64 {
    try_log_sum_exp(v).unwrap_or(f64::NAN)
}

/// [`log_sum_exp`], failing with `NonFinite` on a NaN or infinite entry and with
/// `DimensionMismatch` on an empty vector (whose value would be −∞).
pub fn try_log_sum_exp(v: &DVector<f64>) -> Result<f64, FoldError> {
    util::finite_vec(LSE, "v", v)?;
    let (m, _, total) = shifted(v).ok_or_else(|| FoldError::dimension("log_sum_exp: v", 1, 0))?;
    Ok(m + total.ln())
}

/// [`softmax`] linearized at `v`: `J = diag(s) − ssᵀ` (symmetric).
///
/// Products with a (co)tangent of the wrong shape panic (a caller bug); the
/// [`Primitive`] trait's products return NaN instead.
#[derive(Debug)]
pub struct SoftmaxLin {
    s: DVector<f64>,
    outs: OnceLock<[Value; 1]>,
}

impl SoftmaxLin {
    /// Evaluates at `v`; fails like [`try_softmax`].
    pub fn new(v: &DVector<f64>) -> Result<Self, FoldError> {
        Ok(SoftmaxLin {
            s: try_softmax(v)?,
            outs: OnceLock::new(),
        })
    }

    /// `softmax(v)`.
    pub fn value(&self) -> &DVector<f64> {
        &self.s
    }

    /// `J dv = s ⊙ (dv − sᵀdv)`.
    pub fn jvp(&self, dv: &DVector<f64>) -> DVector<f64> {
        let mean = self.s.dot(dv);
        self.s.zip_map(dv, |s, d| s * (d - mean))
    }

    /// `Jᵀ g = J g` (the Jacobian is symmetric).
    pub fn vjp(&self, g: &DVector<f64>) -> DVector<f64> {
        self.jvp(g)
    }
}

impl LinCore for SoftmaxLin {
    fn outs(&self) -> &[Value] {
        self.outs.get_or_init(|| [Value::Vector(self.s.clone())])
    }
    fn nan_args(&self) -> Vec<Value> {
        vec![Value::Vector(util::nan_vec(self.s.len()))]
    }
    fn try_jvp(&self, t: &[Option<Arg<'_>>]) -> Result<Vec<Value>, FoldError> {
        let n = self.s.len();
        Ok(vec![Value::Vector(
            match util::vec_tan(SOFTMAX, t, 0, n)? {
                Some(dv) => self.jvp(dv),
                None => DVector::zeros(n),
            },
        )])
    }
    fn try_vjp(&self, c: &[Option<Arg<'_>>], _: &[bool]) -> Result<Vec<Value>, FoldError> {
        let n = self.s.len();
        Ok(vec![Value::Vector(
            match util::vec_tan(SOFTMAX, c, 0, n)? {
                Some(g) => self.vjp(g),
                None => DVector::zeros(n),
            },
        )])
    }
}
impl_linearization!(SoftmaxLin);

/// [`softmax`] as a [`Primitive`]: arguments `(v)`, one output.
#[derive(Debug, Clone, Copy, Default)]
pub struct Softmax;

impl Primitive for Softmax {
    type Linearization = SoftmaxLin;
    fn name(&self) -> &'static str {
        SOFTMAX
    }
    fn linearize(&self, args: &[Arg<'_>]) -> Result<SoftmaxLin, FoldError> {
        util::arity(SOFTMAX, args.len(), 1)?;
        SoftmaxLin::new(util::vec_arg(SOFTMAX, args, 0)?)
    }
}

/// [`log_sum_exp`] linearized at `v`: gradient `s = softmax(v)`.
///
/// Products with a (co)tangent of the wrong shape panic (a caller bug); the
/// [`Primitive`] trait's products return NaN instead.
#[derive(Debug)]
pub struct LogSumExpLin {
    value: f64,
    s: DVector<f64>,
    outs: OnceLock<[Value; 1]>,
}

impl LogSumExpLin {
    /// Evaluates at `v`; fails like [`try_log_sum_exp`].
    pub fn new(v: &DVector<f64>) -> Result<Self, FoldError> {
        Ok(LogSumExpLin {
            value: try_log_sum_exp(v)?,
            s: try_softmax(v)?,
            outs: OnceLock::new(),
        })
    }

    /// `log_sum_exp(v)`.
    pub fn value(&self) -> f64 {
        self.value
    }

    /// The gradient `softmax(v)`.
    pub fn gradient(&self) -> &DVector<f64> {
        &self.s
    }

    /// `sᵀ dv`.
    pub fn jvp(&self, dv: &DVector<f64>) -> f64 {
        self.s.dot(dv)
    }

    /// `g s`.
    pub fn vjp(&self, g: f64) -> DVector<f64> {
        &self.s * g
    }
}

impl LinCore for LogSumExpLin {
    fn outs(&self) -> &[Value] {
        self.outs.get_or_init(|| [Value::Scalar(self.value)])
    }
    fn nan_args(&self) -> Vec<Value> {
        vec![Value::Vector(util::nan_vec(self.s.len()))]
    }
    fn try_jvp(&self, t: &[Option<Arg<'_>>]) -> Result<Vec<Value>, FoldError> {
        let n = self.s.len();
        Ok(vec![Value::Scalar(
            util::vec_tan(LSE, t, 0, n)?.map_or(0.0, |dv| self.jvp(dv)),
        )])
    }
    fn try_vjp(&self, c: &[Option<Arg<'_>>], _: &[bool]) -> Result<Vec<Value>, FoldError> {
        Ok(vec![Value::Vector(self.vjp(util::scalar_tan(LSE, c, 0)?))])
    }
}
impl_linearization!(LogSumExpLin);

/// [`log_sum_exp`] as a [`Primitive`]: arguments `(v)`, one scalar output.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSumExp;

impl Primitive for LogSumExp {
    type Linearization = LogSumExpLin;
    fn name(&self) -> &'static str {
        LSE
    }
    fn linearize(&self, args: &[Arg<'_>]) -> Result<LogSumExpLin, FoldError> {
        util::arity(LSE, args.len(), 1)?;
        LogSumExpLin::new(util::vec_arg(LSE, args, 0)?)
    }
}
