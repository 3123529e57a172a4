//! The Euclidean ball: a radial kink at the sphere.

use crate::ops::util::{self, impl_linearization, LinCore};
use crate::{Arg, FoldError, Primitive, Value};
use nalgebra::DVector;
use std::sync::OnceLock;

const BALL: &str = "proj_l2_ball";

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
