//! Projection onto a polyhedron `{Ax = b, Gx ≤ h}`: the QP `min ½‖x − v‖²` solved by
//! clarabel and differentiated through its KKT conditions on the active set
//! (see [`crate::ops::qp`] for the active-set reading and the degenerate-set rule).

use super::kkt::Hess;
use super::qp::{check_constraints, QpCore};
use super::util::{self, impl_linearization, LinCore};
use crate::{Arg, FoldError, Primitive, Value};
use nalgebra::{DMatrix, DVector};
use std::sync::OnceLock;

const POLY: &str = "proj_polyhedron";

/// Euclidean projection of `v` onto `{x : Ax = b, Gx ≤ h}` (pass zero-row `A`, `b` or
/// `G`, `h` to omit either kind of constraint).
///
/// Derivative: `dx` solves the KKT system `[I Cᵀ; C 0][dx; dν] = [dv − dCᵀν; d[b; h_S] − dC x]`
/// on the active set `S` (constraints with a positive dual, `C = [A; G_S]`, `ν` the
/// duals), i.e. `∂x/∂v = I − C⁺C` is the projection onto `null(C)`.
///
/// Kinks: the active set is read from the duals. `v` on the boundary with a zero dual (a
/// weakly active constraint) counts as *inactive*: the derivative is the one-sided one
/// for perturbations that move `v` into the interior (`∂x/∂v = I` there). Degenerate
/// active sets (linearly dependent active rows, more active constraints than dimensions)
/// use the pseudo-inverse of the KKT matrix: `dx` is the least-squares solution of the
/// perturbed active constraints `C dx ≈ r` (within `null` of the rest), so two copies of
/// one constraint perturbed differently give the average of the one-sided derivatives.
///
/// Returns a NaN-filled vector when the polyhedron is empty, the solver fails, shapes
/// disagree or anything is not finite (see [`try_proj_polyhedron`]).
pub fn proj_polyhedron(
    v: &DVector<f64>,
    a: &DMatrix<f64>,
    b: &DVector<f64>,
    g: &DMatrix<f64>,
    h: &DVector<f64>,
) -> DVector<f64> {
    try_proj_polyhedron(v, a, b, g, h).unwrap_or_else(|_| util::nan_vec(v.len()))
}

/// [`proj_polyhedron`], failing with `NonFinite`, `DimensionMismatch` or
/// `PrimitiveFailed { primitive: "proj_polyhedron", status }` with clarabel's status
/// (`PrimalInfeasible` for an empty polyhedron).
pub fn try_proj_polyhedron(
    v: &DVector<f64>,
    a: &DMatrix<f64>,
    b: &DVector<f64>,
    g: &DMatrix<f64>,
    h: &DVector<f64>,
) -> Result<DVector<f64>, FoldError> {
    ProjPolyhedronLin::new(v, a, b, g, h).map(|lin| lin.core.x)
}

/// Tangents of `proj_polyhedron`'s inputs; `None` stands for zero.
#[derive(Debug, Clone, Copy, Default)]
pub struct PolyhedronTangent<'a> {
    /// `dv`.
    pub v: Option<&'a DVector<f64>>,
    /// `dA`.
    pub a: Option<&'a DMatrix<f64>>,
    /// `db`.
    pub b: Option<&'a DVector<f64>>,
    /// `dG`.
    pub g: Option<&'a DMatrix<f64>>,
    /// `dh`.
    pub h: Option<&'a DVector<f64>>,
}

/// Cotangents of `proj_polyhedron`'s inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct PolyhedronCotangent {
    /// `v̄`.
    pub v: DVector<f64>,
    /// `Ā`.
    pub a: DMatrix<f64>,
    /// `b̄`.
    pub b: DVector<f64>,
    /// `Ḡ` (zero on inactive rows).
    pub g: DMatrix<f64>,
    /// `h̄` (zero on inactive entries).
    pub h: DVector<f64>,
}

/// [`proj_polyhedron`] linearized at its inputs: the projection, the active set and one
/// KKT factorization that every JVP and VJP reuses.
///
/// Products with a (co)tangent of the wrong shape panic (a caller bug); the
/// [`Primitive`] trait's products return NaN instead.
#[derive(Debug)]
pub struct ProjPolyhedronLin {
    core: QpCore,
    outs: OnceLock<[Value; 1]>,
}

impl ProjPolyhedronLin {
    /// Solves and linearizes; fails like [`try_proj_polyhedron`].
    pub fn new(
        v: &DVector<f64>,
        a: &DMatrix<f64>,
        b: &DVector<f64>,
        g: &DMatrix<f64>,
        h: &DVector<f64>,
    ) -> Result<Self, FoldError> {
        util::finite_vec(POLY, "v", v)?;
        check_constraints(POLY, v.len(), a, b, g, h)?;
        let core = QpCore::solve(POLY, Hess::Identity, &-v, a, b, g, h)?;
        Ok(ProjPolyhedronLin {
            core,
            outs: OnceLock::new(),
        })
    }

    /// The projection.
    pub fn value(&self) -> &DVector<f64> {
        &self.core.x
    }

    /// The equality duals `y` (`x − v + Aᵀy + Gᵀz = 0`).
    pub fn y(&self) -> &DVector<f64> {
        &self.core.y
    }

    /// The inequality duals `z ≥ 0` (zero off the active set).
    pub fn z(&self) -> &DVector<f64> {
        &self.core.z
    }

    /// The active inequality constraints used by the derivative, increasing.
    pub fn active_set(&self) -> &[usize] {
        &self.core.active
    }

    /// Whether the KKT matrix on the active set is singular (the pseudo-inverse rule
    /// applies).
    pub fn is_degenerate(&self) -> bool {
        self.core.is_degenerate()
    }

    /// `dx` for the given input tangents.
    pub fn jvp(&self, t: &PolyhedronTangent<'_>) -> DVector<f64> {
        let neg_dv = t.v.map(|dv| -dv);
        self.core.jvp(None, neg_dv.as_ref(), t.a, t.b, t.g, t.h).0
    }

    /// Cotangents of all inputs for the output cotangent `g`.
    pub fn vjp(&self, g: &DVector<f64>) -> PolyhedronCotangent {
        self.vjp_opt(g, [true; 4])
    }

    fn vjp_opt(&self, g: &DVector<f64>, wanted: [bool; 4]) -> PolyhedronCotangent {
        let cg = self.core.vjp(Some(g), None, None, wanted);
        PolyhedronCotangent {
            v: cg.a1,
            a: cg.a,
            b: cg.b,
            g: cg.g,
            h: cg.h,
        }
    }
}

impl LinCore for ProjPolyhedronLin {
    fn outs(&self) -> &[Value] {
        self.outs
            .get_or_init(|| [Value::Vector(self.core.x.clone())])
    }
    fn nan_args(&self) -> Vec<Value> {
        let (n, m, q) = (self.core.x.len(), self.core.y.len(), self.core.z.len());
        let nan_m = |r, c| Value::Matrix(DMatrix::from_element(r, c, f64::NAN));
        vec![
            Value::Vector(util::nan_vec(n)),
            nan_m(m, n),
            Value::Vector(util::nan_vec(m)),
            nan_m(q, n),
            Value::Vector(util::nan_vec(q)),
        ]
    }
    fn try_jvp(&self, t: &[Option<Arg<'_>>]) -> Result<Vec<Value>, FoldError> {
        let (n, m, q) = (self.core.x.len(), self.core.y.len(), self.core.z.len());
        let tan = PolyhedronTangent {
            v: util::vec_tan(POLY, t, 0, n)?,
            a: util::mat_tan(POLY, t, 1, (m, n))?,
            b: util::vec_tan(POLY, t, 2, m)?,
            g: util::mat_tan(POLY, t, 3, (q, n))?,
            h: util::vec_tan(POLY, t, 4, q)?,
        };
        Ok(vec![Value::Vector(self.jvp(&tan))])
    }
    fn try_vjp(&self, c: &[Option<Arg<'_>>], wanted: &[bool]) -> Result<Vec<Value>, FoldError> {
        let n = self.core.x.len();
        let zero = DVector::zeros(n);
        let g = util::vec_tan(POLY, c, 0, n)?.unwrap_or(&zero);
        let w = |i| util::wants(wanted, i);
        let ct = self.vjp_opt(g, [w(1), w(2), w(3), w(4)]);
        Ok(vec![
            Value::Vector(ct.v),
            Value::Matrix(ct.a),
            Value::Vector(ct.b),
            Value::Matrix(ct.g),
            Value::Vector(ct.h),
        ])
    }
}
impl_linearization!(ProjPolyhedronLin);

/// [`proj_polyhedron`] as a [`Primitive`]: arguments `(v, A, b, G, h)`, one output.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProjPolyhedron;

impl Primitive for ProjPolyhedron {
    type Linearization = ProjPolyhedronLin;
    fn name(&self) -> &'static str {
        POLY
    }
    fn linearize(&self, args: &[Arg<'_>]) -> Result<ProjPolyhedronLin, FoldError> {
        util::arity(POLY, args.len(), 5)?;
        ProjPolyhedronLin::new(
            util::vec_arg(POLY, args, 0)?,
            util::mat_arg(POLY, args, 1)?,
            util::vec_arg(POLY, args, 2)?,
            util::mat_arg(POLY, args, 3)?,
            util::vec_arg(POLY, args, 4)?,
        )
    }
}
