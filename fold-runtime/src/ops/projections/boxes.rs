//! The box and soft thresholding: coordinatewise kinks, 0/1 masks on their support.

use crate::ops::util::{self, impl_linearization, LinCore};
use crate::{Arg, FoldError, Primitive, SupportKernel, Value};
use nalgebra::DVector;
use std::sync::OnceLock;

const BOX: &str = "proj_box";
const SOFT: &str = "soft_threshold";

/// Which side of a kinked scalar map a coordinate is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Low,
    Free,
    High,
}

/// [`crate::ops::proj_box`] on a vector, failing with `NonFinite` on non-finite input and with
/// `PrimitiveFailed` when `lo > hi` (an empty box).
pub fn try_proj_box(v: &DVector<f64>, lo: f64, hi: f64) -> Result<DVector<f64>, FoldError> {
    util::finite_vec(BOX, "v", v)?;
    util::finite_scalar(BOX, "lo", lo)?;
    util::finite_scalar(BOX, "hi", hi)?;
    if lo > hi {
        return Err(FoldError::primitive(
            BOX,
            format!("infeasible: lo = {lo} > hi = {hi}"),
        ));
    }
    Ok(crate::ops::proj_box(v, lo, hi))
}

/// [`crate::ops::proj_box`] linearized at `(v, lo, hi)`: `∂y/∂v = diag(1[lo < vᵢ < hi])`;
/// a coordinate at or below `lo` follows `lo`, one at or above `hi` follows `hi` (a tie
/// counts as at the bound).
///
/// Products with a (co)tangent of the wrong shape panic (a caller bug); the
/// [`Primitive`] trait's products return NaN instead.
#[derive(Debug)]
pub struct ProjBoxLin {
    y: DVector<f64>,
    sides: Vec<Side>,
    outs: OnceLock<[Value; 1]>,
}

impl ProjBoxLin {
    /// Evaluates at `(v, lo, hi)`; fails like [`try_proj_box`].
    pub fn new(v: &DVector<f64>, lo: f64, hi: f64) -> Result<Self, FoldError> {
        let y = try_proj_box(v, lo, hi)?;
        let sides = v
            .iter()
            .map(|&x| {
                if x <= lo {
                    Side::Low
                } else if x >= hi {
                    Side::High
                } else {
                    Side::Free
                }
            })
            .collect();
        Ok(ProjBoxLin {
            y,
            sides,
            outs: OnceLock::new(),
        })
    }

    /// The projection.
    pub fn value(&self) -> &DVector<f64> {
        &self.y
    }

    /// The free coordinates `lo < vᵢ < hi`, increasing.
    pub fn support(&self) -> Vec<usize> {
        (0..self.sides.len())
            .filter(|&i| self.sides[i] == Side::Free)
            .collect()
    }

    /// The Jacobian's kernel on the support: `I` (a 0/1 mask).
    pub fn kernel(&self) -> SupportKernel {
        SupportKernel::Identity
    }

    /// `1[lo < vᵢ < hi]`: the diagonal of `∂y/∂v`.
    pub fn mask(&self) -> DVector<f64> {
        DVector::from_iterator(
            self.sides.len(),
            self.sides.iter().map(|&s| f64::from(s == Side::Free)),
        )
    }

    fn jvp_opt(&self, dv: Option<&DVector<f64>>, dlo: f64, dhi: f64) -> DVector<f64> {
        DVector::from_iterator(
            self.sides.len(),
            self.sides.iter().enumerate().map(|(i, s)| match s {
                Side::Low => dlo,
                Side::High => dhi,
                Side::Free => dv.map_or(0.0, |d| d[i]),
            }),
        )
    }

    /// `∂y/∂v dv + ∂y/∂lo dlo + ∂y/∂hi dhi`.
    pub fn jvp(&self, dv: &DVector<f64>, dlo: f64, dhi: f64) -> DVector<f64> {
        self.jvp_opt(Some(dv), dlo, dhi)
    }

    /// The cotangents `(v̄, lō, hī)` of `g`.
    pub fn vjp(&self, g: &DVector<f64>) -> (DVector<f64>, f64, f64) {
        let (mut lo, mut hi) = (0.0, 0.0);
        let mut dv = DVector::zeros(g.len());
        for (i, s) in self.sides.iter().enumerate() {
            match s {
                Side::Low => lo += g[i],
                Side::High => hi += g[i],
                Side::Free => dv[i] = g[i],
            }
        }
        (dv, lo, hi)
    }
}

impl LinCore for ProjBoxLin {
    fn outs(&self) -> &[Value] {
        self.outs.get_or_init(|| [Value::Vector(self.y.clone())])
    }
    fn nan_args(&self) -> Vec<Value> {
        let n = self.y.len();
        vec![
            Value::Vector(util::nan_vec(n)),
            Value::Scalar(f64::NAN),
            Value::Scalar(f64::NAN),
        ]
    }
    fn try_jvp(&self, t: &[Option<Arg<'_>>]) -> Result<Vec<Value>, FoldError> {
        let dv = util::vec_tan(BOX, t, 0, self.y.len())?;
        let (dlo, dhi) = (util::scalar_tan(BOX, t, 1)?, util::scalar_tan(BOX, t, 2)?);
        Ok(vec![Value::Vector(self.jvp_opt(dv, dlo, dhi))])
    }
    fn try_vjp(&self, c: &[Option<Arg<'_>>], _: &[bool]) -> Result<Vec<Value>, FoldError> {
        let n = self.y.len();
        let (dv, lo, hi) = match util::vec_tan(BOX, c, 0, n)? {
            Some(g) => self.vjp(g),
            None => (DVector::zeros(n), 0.0, 0.0),
        };
        Ok(vec![
            Value::Vector(dv),
            Value::Scalar(lo),
            Value::Scalar(hi),
        ])
    }
}
impl_linearization!(ProjBoxLin);

/// [`crate::ops::proj_box`] as a [`Primitive`]: arguments `(v, lo, hi)`, one output.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProjBox;

impl Primitive for ProjBox {
    type Linearization = ProjBoxLin;
    fn name(&self) -> &'static str {
        BOX
    }
    fn linearize(&self, args: &[Arg<'_>]) -> Result<ProjBoxLin, FoldError> {
        util::arity(BOX, args.len(), 3)?;
        ProjBoxLin::new(
            util::vec_arg(BOX, args, 0)?,
            util::scalar_arg(BOX, args, 1)?,
            util::scalar_arg(BOX, args, 2)?,
        )
    }
}

/// [`crate::ops::soft_threshold`] on a vector, failing with `NonFinite` on non-finite input
/// and with `PrimitiveFailed` when `t < 0`.
pub fn try_soft_threshold(v: &DVector<f64>, t: f64) -> Result<DVector<f64>, FoldError> {
    util::finite_vec(SOFT, "v", v)?;
    util::finite_scalar(SOFT, "t", t)?;
    if t < 0.0 {
        return Err(FoldError::primitive(
            SOFT,
            format!("threshold t = {t} is negative"),
        ));
    }
    Ok(crate::ops::soft_threshold(v, t))
}

/// [`crate::ops::soft_threshold`] linearized at `(v, t)`: `∂y/∂v = diag(1[|vᵢ| > t])`,
/// `∂yᵢ/∂t = −sign(vᵢ) 1[|vᵢ| > t]`; at `|vᵢ| = t` the coordinate counts as thresholded
/// to zero (derivative 0).
///
/// Products with a (co)tangent of the wrong shape panic (a caller bug); the
/// [`Primitive`] trait's products return NaN instead.
#[derive(Debug)]
pub struct SoftThresholdLin {
    y: DVector<f64>,
    /// `sign(vᵢ)` on `|vᵢ| > t`, else 0.
    sign: DVector<f64>,
    outs: OnceLock<[Value; 1]>,
}

impl SoftThresholdLin {
    /// Evaluates at `(v, t)`; fails like [`try_soft_threshold`].
    pub fn new(v: &DVector<f64>, t: f64) -> Result<Self, FoldError> {
        let y = try_soft_threshold(v, t)?;
        let sign = v.map(|x| {
            if x > t {
                1.0
            } else if x < -t {
                -1.0
            } else {
                0.0
            }
        });
        Ok(SoftThresholdLin {
            y,
            sign,
            outs: OnceLock::new(),
        })
    }

    /// The thresholded vector.
    pub fn value(&self) -> &DVector<f64> {
        &self.y
    }

    /// The coordinates with `|vᵢ| > t`, increasing.
    pub fn support(&self) -> Vec<usize> {
        (0..self.sign.len())
            .filter(|&i| self.sign[i] != 0.0)
            .collect()
    }

    /// The Jacobian's kernel on the support: `I` (a 0/1 mask).
    pub fn kernel(&self) -> SupportKernel {
        SupportKernel::Identity
    }

    fn jvp_opt(&self, dv: Option<&DVector<f64>>, dt: f64) -> DVector<f64> {
        DVector::from_iterator(
            self.y.len(),
            self.sign
                .iter()
                .enumerate()
                .map(|(i, &s)| s * s * dv.map_or(0.0, |d| d[i]) - s * dt),
        )
    }

    /// `∂y/∂v dv + ∂y/∂t dt`.
    pub fn jvp(&self, dv: &DVector<f64>, dt: f64) -> DVector<f64> {
        self.jvp_opt(Some(dv), dt)
    }

    /// The cotangents `(v̄, t̄)` of `g`.
    pub fn vjp(&self, g: &DVector<f64>) -> (DVector<f64>, f64) {
        let dv = self.sign.zip_map(g, |s, gi| s * s * gi);
        (dv, -self.sign.dot(g))
    }
}

impl LinCore for SoftThresholdLin {
    fn outs(&self) -> &[Value] {
        self.outs.get_or_init(|| [Value::Vector(self.y.clone())])
    }
    fn nan_args(&self) -> Vec<Value> {
        vec![
            Value::Vector(util::nan_vec(self.y.len())),
            Value::Scalar(f64::NAN),
        ]
    }
    fn try_jvp(&self, t: &[Option<Arg<'_>>]) -> Result<Vec<Value>, FoldError> {
        let dv = util::vec_tan(SOFT, t, 0, self.y.len())?;
        let dt = util::scalar_tan(SOFT, t, 1)?;
        Ok(vec![Value::Vector(self.jvp_opt(dv, dt))])
    }
    fn try_vjp(&self, c: &[Option<Arg<'_>>], _: &[bool]) -> Result<Vec<Value>, FoldError> {
        let n = self.y.len();
        let (dv, dt) = match util::vec_tan(SOFT, c, 0, n)? {
            Some(g) => self.vjp(g),
            None => (DVector::zeros(n), 0.0),
        };
        Ok(vec![Value::Vector(dv), Value::Scalar(dt)])
    }
}
impl_linearization!(SoftThresholdLin);

/// [`crate::ops::soft_threshold`] as a [`Primitive`]: arguments `(v, t)`, one output.
#[derive(Debug, Clone, Copy, Default)]
pub struct SoftThreshold;

impl Primitive for SoftThreshold {
    type Linearization = SoftThresholdLin;
    fn name(&self) -> &'static str {
        SOFT
    }
    fn linearize(&self, args: &[Arg<'_>]) -> Result<SoftThresholdLin, FoldError> {
        util::arity(SOFT, args.len(), 2)?;
        SoftThresholdLin::new(
            util::vec_arg(SOFT, args, 0)?,
            util::scalar_arg(SOFT, args, 1)?,
        )
    }
}
