//! A hyperplane and an affine subspace: smooth wherever their constraints are
//! independent.

use crate::ops::util::{self, impl_linearization, LinCore};
use crate::{Arg, FoldError, Primitive, Value};
use nalgebra::{DMatrix, DVector};
use std::sync::OnceLock;

const HYPERPLANE: &str = "proj_hyperplane";
const AFFINE: &str = "proj_affine";

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
