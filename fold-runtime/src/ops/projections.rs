//! Closed-form projections and proximal maps: the box, soft thresholding, the l2 ball,
//! a hyperplane and an affine subspace.

use super::util::{self, impl_linearization, LinCore};
use crate::{Arg, FoldError, Primitive, SupportKernel, Value};
use nalgebra::{DMatrix, DVector};
use std::sync::OnceLock;

const BOX: &str = "proj_box";
const SOFT: &str = "soft_threshold";
const BALL: &str = "proj_l2_ball";
const HYPERPLANE: &str = "proj_hyperplane";
const AFFINE: &str = "proj_affine";

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
    Ok(super::proj_box(v, lo, hi))
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
    Ok(super::soft_threshold(v, t))
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

/// Projection of `v` onto the Euclidean ball `‖x‖₂ ≤ r` (`r ≥ 0`): `v` inside, else
/// `r v/‖v‖`.
///
/// Kinks: `v` exactly on the sphere (`‖v‖ = r`) counts as *inside*: the derivative is the
/// one-sided derivative from the interior, `J = I`, `∂y/∂r = 0`. Outside,
/// `J = (r/‖v‖)(I − v̂v̂ᵀ)` and `∂y/∂r = v̂`. Returns a NaN-filled vector when `r < 0` or
/// anything is not finite (see [`try_proj_l2_ball`]).
pub fn proj_l2_ball(v: &DVector<f64>, r: f64) -> DVector<f64> {
    try_proj_l2_ball(v, r).unwrap_or_else(|_| util::nan_vec(v.len()))
}

/// [`proj_l2_ball`], failing with `NonFinite` on non-finite input and with
/// `PrimitiveFailed` when `r < 0` (an empty ball).
pub fn try_proj_l2_ball(v: &DVector<f64>, r: f64) -> Result<DVector<f64>, FoldError> {
    ProjL2BallLin::new(v, r).map(|lin| lin.y)
}

/// [`proj_l2_ball`] linearized at `(v, r)`.
///
/// Products with a (co)tangent of the wrong shape panic (a caller bug); the
/// [`Primitive`] trait's products return NaN instead.
#[derive(Debug)]
pub struct ProjL2BallLin {
    y: DVector<f64>,
    /// `Some((v̂, r/‖v‖))` when `v` is strictly outside the ball.
    outside: Option<(DVector<f64>, f64)>,
    outs: OnceLock<[Value; 1]>,
}

impl ProjL2BallLin {
    /// Evaluates at `(v, r)`; fails like [`try_proj_l2_ball`].
    pub fn new(v: &DVector<f64>, r: f64) -> Result<Self, FoldError> {
        util::finite_vec(BALL, "v", v)?;
        util::finite_scalar(BALL, "r", r)?;
        if r < 0.0 {
            return Err(FoldError::primitive(
                BALL,
                format!("infeasible: radius r = {r} is negative"),
            ));
        }
        let mut norm = v.norm();
        if !norm.is_finite() {
            // Squares of entries above ~1e154 overflow; rescale.
            let scale = v.amax();
            norm = scale * (v / scale).norm();
        }
        let (y, outside) = if norm <= r {
            (v.clone(), None)
        } else {
            let vhat = v / norm;
            (&vhat * r, Some((vhat, r / norm)))
        };
        Ok(ProjL2BallLin {
            y,
            outside,
            outs: OnceLock::new(),
        })
    }

    /// The projection.
    pub fn value(&self) -> &DVector<f64> {
        &self.y
    }

    /// Whether `v` was inside or on the ball (then `J = I`, `∂y/∂r = 0`).
    pub fn is_inside(&self) -> bool {
        self.outside.is_none()
    }

    fn jvp_opt(&self, dv: Option<&DVector<f64>>, dr: f64) -> DVector<f64> {
        let n = self.y.len();
        match (&self.outside, dv) {
            (None, Some(dv)) => dv.clone(),
            (None, None) => DVector::zeros(n),
            (Some((vhat, scale)), dv) => {
                let mut out = vhat * dr;
                if let Some(dv) = dv {
                    let along = vhat.dot(dv);
                    out += (dv - vhat * along) * *scale;
                }
                out
            }
        }
    }

    /// `J dv + (∂y/∂r) dr`.
    pub fn jvp(&self, dv: &DVector<f64>, dr: f64) -> DVector<f64> {
        self.jvp_opt(Some(dv), dr)
    }

    /// The cotangents `(v̄, r̄)` of `g`.
    pub fn vjp(&self, g: &DVector<f64>) -> (DVector<f64>, f64) {
        match &self.outside {
            None => (g.clone(), 0.0),
            Some((vhat, scale)) => {
                let along = vhat.dot(g);
                ((g - vhat * along) * *scale, along)
            }
        }
    }
}

impl LinCore for ProjL2BallLin {
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
        let dv = util::vec_tan(BALL, t, 0, self.y.len())?;
        let dr = util::scalar_tan(BALL, t, 1)?;
        Ok(vec![Value::Vector(self.jvp_opt(dv, dr))])
    }
    fn try_vjp(&self, c: &[Option<Arg<'_>>], _: &[bool]) -> Result<Vec<Value>, FoldError> {
        let n = self.y.len();
        let (dv, dr) = match util::vec_tan(BALL, c, 0, n)? {
            Some(g) => self.vjp(g),
            None => (DVector::zeros(n), 0.0),
        };
        Ok(vec![Value::Vector(dv), Value::Scalar(dr)])
    }
}
impl_linearization!(ProjL2BallLin);

/// [`proj_l2_ball`] as a [`Primitive`]: arguments `(v, r)`, one output.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProjL2Ball;

impl Primitive for ProjL2Ball {
    type Linearization = ProjL2BallLin;
    fn name(&self) -> &'static str {
        BALL
    }
    fn linearize(&self, args: &[Arg<'_>]) -> Result<ProjL2BallLin, FoldError> {
        util::arity(BALL, args.len(), 2)?;
        ProjL2BallLin::new(
            util::vec_arg(BALL, args, 0)?,
            util::scalar_arg(BALL, args, 1)?,
        )
    }
}

/// Projection of `v` onto the hyperplane `aᵀx = b`: `y = v − a (aᵀv − b)/‖a‖²`.
///
/// Smooth in `(v, a, b)` wherever `a ≠ 0`: `∂y/∂v = I − aaᵀ/‖a‖²`, `∂y/∂b = a/‖a‖²`.
/// Returns a NaN-filled vector when `a = 0`, lengths differ or anything is not finite
/// (see [`try_proj_hyperplane`]).
pub fn proj_hyperplane(v: &DVector<f64>, a: &DVector<f64>, b: f64) -> DVector<f64> {
    try_proj_hyperplane(v, a, b).unwrap_or_else(|_| util::nan_vec(v.len()))
}

/// [`proj_hyperplane`], failing with `NonFinite` (also when the projection overflows),
/// `DimensionMismatch` (`a` and `v` of different lengths) or `PrimitiveFailed` (`a = 0`).
pub fn try_proj_hyperplane(
    v: &DVector<f64>,
    a: &DVector<f64>,
    b: f64,
) -> Result<DVector<f64>, FoldError> {
    ProjHyperplaneLin::new(v, a, b).map(|lin| lin.y)
}

/// [`proj_hyperplane`] linearized at `(v, a, b)`.
///
/// Products with a (co)tangent of the wrong shape panic (a caller bug); the
/// [`Primitive`] trait's products return NaN instead.
#[derive(Debug)]
pub struct ProjHyperplaneLin {
    y: DVector<f64>,
    v: DVector<f64>,
    a: DVector<f64>,
    /// The residual `aᵀv − b`.
    s: f64,
    /// `‖a‖²`.
    q: f64,
    outs: OnceLock<[Value; 1]>,
}

impl ProjHyperplaneLin {
    /// Evaluates at `(v, a, b)`; fails like [`try_proj_hyperplane`].
    pub fn new(v: &DVector<f64>, a: &DVector<f64>, b: f64) -> Result<Self, FoldError> {
        util::finite_vec(HYPERPLANE, "v", v)?;
        util::finite_vec(HYPERPLANE, "a", a)?;
        util::finite_scalar(HYPERPLANE, "b", b)?;
        util::dim(HYPERPLANE, "length of a", v.len(), a.len())?;
        let q = a.norm_squared();
        if q == 0.0 || !q.is_finite() {
            return Err(FoldError::primitive(
                HYPERPLANE,
                "a = 0 (or ‖a‖² out of range): not a hyperplane",
            ));
        }
        let s = a.dot(v) - b;
        let y = v - a * (s / q);
        if !s.is_finite() || !crate::__private::check::all_finite(y.as_slice()) {
            return Err(FoldError::non_finite(
                "proj_hyperplane: the projection (it exceeds the range of f64)",
            ));
        }
        Ok(ProjHyperplaneLin {
            y,
            v: v.clone(),
            a: a.clone(),
            s,
            q,
            outs: OnceLock::new(),
        })
    }

    /// The projection.
    pub fn value(&self) -> &DVector<f64> {
        &self.y
    }

    fn jvp_opt(
        &self,
        dv: Option<&DVector<f64>>,
        da: Option<&DVector<f64>>,
        db: f64,
    ) -> DVector<f64> {
        let (s, q) = (self.s, self.q);
        // The coefficient of a, and the rest.
        let mut coef = db / q;
        let mut out = DVector::zeros(self.y.len());
        if let Some(dv) = dv {
            out += dv;
            coef -= self.a.dot(dv) / q;
        }
        if let Some(da) = da {
            out.axpy(-s / q, da, 1.0);
            coef += -da.dot(&self.v) / q + 2.0 * s * self.a.dot(da) / (q * q);
        }
        out.axpy(coef, &self.a, 1.0);
        out
    }

    /// `∂y/∂v dv + ∂y/∂a da + ∂y/∂b db`.
    pub fn jvp(&self, dv: &DVector<f64>, da: &DVector<f64>, db: f64) -> DVector<f64> {
        self.jvp_opt(Some(dv), Some(da), db)
    }

    /// The cotangents `(v̄, ā, b̄)` of `g`.
    pub fn vjp(&self, g: &DVector<f64>) -> (DVector<f64>, DVector<f64>, f64) {
        let (s, q) = (self.s, self.q);
        let ag = self.a.dot(g);
        let dv = g - &self.a * (ag / q);
        let mut da = g * (-s / q);
        da.axpy(-ag / q, &self.v, 1.0);
        da.axpy(2.0 * s * ag / (q * q), &self.a, 1.0);
        (dv, da, ag / q)
    }
}

impl LinCore for ProjHyperplaneLin {
    fn outs(&self) -> &[Value] {
        self.outs.get_or_init(|| [Value::Vector(self.y.clone())])
    }
    fn nan_args(&self) -> Vec<Value> {
        let n = self.y.len();
        vec![
            Value::Vector(util::nan_vec(n)),
            Value::Vector(util::nan_vec(n)),
            Value::Scalar(f64::NAN),
        ]
    }
    fn try_jvp(&self, t: &[Option<Arg<'_>>]) -> Result<Vec<Value>, FoldError> {
        let n = self.y.len();
        let dv = util::vec_tan(HYPERPLANE, t, 0, n)?;
        let da = util::vec_tan(HYPERPLANE, t, 1, n)?;
        let db = util::scalar_tan(HYPERPLANE, t, 2)?;
        Ok(vec![Value::Vector(self.jvp_opt(dv, da, db))])
    }
    fn try_vjp(&self, c: &[Option<Arg<'_>>], _: &[bool]) -> Result<Vec<Value>, FoldError> {
        let n = self.y.len();
        let (dv, da, db) = match util::vec_tan(HYPERPLANE, c, 0, n)? {
            Some(g) => self.vjp(g),
            None => (DVector::zeros(n), DVector::zeros(n), 0.0),
        };
        Ok(vec![
            Value::Vector(dv),
            Value::Vector(da),
            Value::Scalar(db),
        ])
    }
}
impl_linearization!(ProjHyperplaneLin);

/// [`proj_hyperplane`] as a [`Primitive`]: arguments `(v, a, b)`, one output.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProjHyperplane;

impl Primitive for ProjHyperplane {
    type Linearization = ProjHyperplaneLin;
    fn name(&self) -> &'static str {
        HYPERPLANE
    }
    fn linearize(&self, args: &[Arg<'_>]) -> Result<ProjHyperplaneLin, FoldError> {
        util::arity(HYPERPLANE, args.len(), 3)?;
        ProjHyperplaneLin::new(
            util::vec_arg(HYPERPLANE, args, 0)?,
            util::vec_arg(HYPERPLANE, args, 1)?,
            util::scalar_arg(HYPERPLANE, args, 2)?,
        )
    }
}

/// Projection of `v` onto the affine subspace `Ax = b` (`A` m×n of full row rank):
/// `y = v − Aᵀ(AAᵀ)⁻¹(Av − b)`, computed from a QR factorization of `Aᵀ`.
///
/// Smooth in `(v, A, b)` on full-row-rank `A`: `∂y/∂v = I − Aᵀ(AAᵀ)⁻¹A`,
/// `∂y/∂b = Aᵀ(AAᵀ)⁻¹`. Returns a NaN-filled vector when `A` is (numerically)
/// rank-deficient, shapes disagree or anything is not finite (see [`try_proj_affine`]).
pub fn proj_affine(v: &DVector<f64>, a: &DMatrix<f64>, b: &DVector<f64>) -> DVector<f64> {
    try_proj_affine(v, a, b).unwrap_or_else(|_| util::nan_vec(v.len()))
}

/// [`proj_affine`], failing with `NonFinite`, `DimensionMismatch` or `PrimitiveFailed`
/// (rank-deficient `A`, including `m > n`: the subspace is empty or `(AAᵀ)⁻¹` does not
/// exist).
pub fn try_proj_affine(
    v: &DVector<f64>,
    a: &DMatrix<f64>,
    b: &DVector<f64>,
) -> Result<DVector<f64>, FoldError> {
    ProjAffineLin::new(v, a, b).map(|lin| lin.y)
}

/// [`proj_affine`] linearized at `(v, A, b)`; keeps the QR factors `Aᵀ = QR` so every
/// product costs O(mn).
///
/// Products with a (co)tangent of the wrong shape panic (a caller bug); the
/// [`Primitive`] trait's products return NaN instead.
#[derive(Debug)]
pub struct ProjAffineLin {
    y: DVector<f64>,
    /// Thin `Q` (n×m).
    q: DMatrix<f64>,
    /// `R` (m×m, upper triangular, nonsingular).
    r: DMatrix<f64>,
    /// `λ = (AAᵀ)⁻¹(Av − b)`, so that `y = v − Aᵀλ`.
    lambda: DVector<f64>,
    outs: OnceLock<[Value; 1]>,
}

impl ProjAffineLin {
    /// Evaluates at `(v, A, b)`; fails like [`try_proj_affine`].
    pub fn new(v: &DVector<f64>, a: &DMatrix<f64>, b: &DVector<f64>) -> Result<Self, FoldError> {
        util::finite_vec(AFFINE, "v", v)?;
        util::finite_mat(AFFINE, "A", a)?;
        util::finite_vec(AFFINE, "b", b)?;
        let (m, n) = a.shape();
        util::dim(AFFINE, "columns of A", v.len(), n)?;
        util::dim(AFFINE, "length of b", m, b.len())?;
        if m > n {
            return Err(FoldError::primitive(
                AFFINE,
                format!("rank-deficient A: {m} rows > {n} columns"),
            ));
        }
        let qr = a.transpose().qr();
        let (q, r) = (qr.q(), qr.r());
        for i in 0..m {
            // |Rᵢᵢ| is the distance of row i from the span of the rows before it.
            if r[(i, i)].abs() <= 1e-10 * a.row(i).norm() || r[(i, i)] == 0.0 {
                return Err(FoldError::primitive(
                    AFFINE,
                    format!("rank-deficient A: row {i} depends on the rows before it"),
                ));
            }
        }
        let rtb = r
            .tr_solve_upper_triangular(b)
            .ok_or_else(|| FoldError::primitive(AFFINE, "rank-deficient A"))?;
        let qtv = q.tr_mul(v);
        let resid = &qtv - &rtb;
        let lambda = r
            .solve_upper_triangular(&resid)
            .ok_or_else(|| FoldError::primitive(AFFINE, "rank-deficient A"))?;
        let y = v - &q * resid;
        util::finite_vec(AFFINE, "the projection", &y)?;
        Ok(ProjAffineLin {
            y,
            q,
            r,
            lambda,
            outs: OnceLock::new(),
        })
    }

    /// The projection.
    pub fn value(&self) -> &DVector<f64> {
        &self.y
    }

    /// The multiplier `λ = (AAᵀ)⁻¹(Av − b)`; `y = v − Aᵀλ`.
    pub fn multiplier(&self) -> &DVector<f64> {
        &self.lambda
    }

    /// `(I − QQᵀ) u`: the projection onto the null space of `A`.
    fn null_part(&self, u: &DVector<f64>) -> DVector<f64> {
        let mut out = u.clone();
        out.gemv(-1.0, &self.q, &self.q.tr_mul(u), 1.0);
        out
    }

    fn jvp_opt(
        &self,
        dv: Option<&DVector<f64>>,
        da: Option<&DMatrix<f64>>,
        db: Option<&DVector<f64>>,
    ) -> DVector<f64> {
        let (n, m) = self.q.shape();
        // dy = P(dv − dAᵀλ) + Q R⁻ᵀ(db − dA y).
        let mut first = dv.cloned().unwrap_or_else(|| DVector::zeros(n));
        let mut second = db.cloned().unwrap_or_else(|| DVector::zeros(m));
        if let Some(da) = da {
            first.gemv_tr(-1.0, da, &self.lambda, 1.0);
            second.gemv(-1.0, da, &self.y, 1.0);
        }
        let mut out = self.null_part(&first);
        if m > 0 {
            let w = self
                .r
                .tr_solve_upper_triangular(&second)
                .unwrap_or_else(|| util::nan_vec(m));
            out.gemv(1.0, &self.q, &w, 1.0);
        }
        out
    }

    /// `∂y/∂v dv + ∂y/∂A dA + ∂y/∂b db`.
    pub fn jvp(&self, dv: &DVector<f64>, da: &DMatrix<f64>, db: &DVector<f64>) -> DVector<f64> {
        self.jvp_opt(Some(dv), Some(da), Some(db))
    }

    /// The cotangents `(v̄, Ā, b̄)` of `g`: `v̄ = Pg`, `b̄ = w = (AAᵀ)⁻¹Ag`,
    /// `Ā = −λ v̄ᵀ − w yᵀ`.
    pub fn vjp(&self, g: &DVector<f64>) -> (DVector<f64>, DMatrix<f64>, DVector<f64>) {
        let m = self.r.nrows();
        let qtg = self.q.tr_mul(g);
        let mut dv = g.clone();
        dv.gemv(-1.0, &self.q, &qtg, 1.0);
        let w = self
            .r
            .solve_upper_triangular(&qtg)
            .unwrap_or_else(|| util::nan_vec(m));
        let mut da = &self.lambda * dv.transpose();
        da.ger(-1.0, &w, &self.y, -1.0);
        (dv, da, w)
    }
}

impl LinCore for ProjAffineLin {
    fn outs(&self) -> &[Value] {
        self.outs.get_or_init(|| [Value::Vector(self.y.clone())])
    }
    fn nan_args(&self) -> Vec<Value> {
        let (n, m) = self.q.shape();
        vec![
            Value::Vector(util::nan_vec(n)),
            Value::Matrix(DMatrix::from_element(m, n, f64::NAN)),
            Value::Vector(util::nan_vec(m)),
        ]
    }
    fn try_jvp(&self, t: &[Option<Arg<'_>>]) -> Result<Vec<Value>, FoldError> {
        let (n, m) = self.q.shape();
        let dv = util::vec_tan(AFFINE, t, 0, n)?;
        let da = util::mat_tan(AFFINE, t, 1, (m, n))?;
        let db = util::vec_tan(AFFINE, t, 2, m)?;
        Ok(vec![Value::Vector(self.jvp_opt(dv, da, db))])
    }
    fn try_vjp(&self, c: &[Option<Arg<'_>>], _: &[bool]) -> Result<Vec<Value>, FoldError> {
        let (n, m) = self.q.shape();
        let (dv, da, db) = match util::vec_tan(AFFINE, c, 0, n)? {
            Some(g) => self.vjp(g),
            None => (DVector::zeros(n), DMatrix::zeros(m, n), DVector::zeros(m)),
        };
        Ok(vec![
            Value::Vector(dv),
            Value::Matrix(da),
            Value::Vector(db),
        ])
    }
}
impl_linearization!(ProjAffineLin);

/// [`proj_affine`] as a [`Primitive`]: arguments `(v, A, b)`, one output.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProjAffine;

impl Primitive for ProjAffine {
    type Linearization = ProjAffineLin;
    fn name(&self) -> &'static str {
        AFFINE
    }
    fn linearize(&self, args: &[Arg<'_>]) -> Result<ProjAffineLin, FoldError> {
        util::arity(AFFINE, args.len(), 3)?;
        ProjAffineLin::new(
            util::vec_arg(AFFINE, args, 0)?,
            util::mat_arg(AFFINE, args, 1)?,
            util::vec_arg(AFFINE, args, 2)?,
        )
    }
}
