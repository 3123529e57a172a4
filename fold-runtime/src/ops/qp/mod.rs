//! A differentiable convex QP layer (OptNet, Amos & Kolter 2017):
//!
//! ```text
//! min ½xᵀHx + pᵀx   s.t.  Ax = b,  Gx ≤ h
//! ```
//!
//! solved by `clarabel`, then polished on the active set and differentiated through the
//! KKT conditions restricted to that set.
//!
//! **Dual sign convention.** The Lagrangian is `½xᵀHx + pᵀx + yᵀ(Ax − b) + zᵀ(Gx − h)`,
//! so at the solution `Hx + p + Aᵀy + Gᵀz = 0`, `z ≥ 0` and `zᵢ(Gx − h)ᵢ = 0`; `y` has no
//! sign. (These are clarabel's own duals for the rows `[A; G]`.)
//!
//! **Active set.** Read from the duals: constraint `i` is active when its dual exceeds its
//! slack (`zᵢ > hᵢ − Gᵢx`), then confirmed on the polished solution, where a constraint
//! whose multiplier is (numerically) zero — *weakly active* — is dropped: the derivative
//! is that of the problem without it, the one-sided derivative for perturbations that
//! make it inactive. Inactive constraints keep `zᵢ = 0` and `dzᵢ = 0`.
//!
//! **Derivative.** With `C = [A; G_S]` and `ν = [y; z_S]`, the KKT conditions
//! `Hx + p + Cᵀν = 0`, `Cx = [b; h_S]` give
//!
//! ```text
//! [H Cᵀ; C 0] [dx; dν] = [−(dH x + dp + dCᵀν); d[b; h_S] − dC x]
//! ```
//!
//! solved with the pseudo-inverse `K⁺` of the KKT matrix (the inverse when nonsingular).
//! **Degenerate active sets** — linearly dependent active rows, more active constraints
//! than dimensions, a Hessian singular on the constraints' null space — make `K`
//! singular; `K⁺` then gives the least-squares, minimum-norm solution: the right-hand
//! side's constraint part is projected onto `range(C)` (for two copies of one constraint
//! perturbed differently, the average of the two one-sided derivatives), `dx` is unique
//! when `H` is definite on `null(C)`, and `dν` is the minimum-norm multiplier change.
//! `K⁺` is symmetric, so VJPs use the same factorization, computed once per
//! linearization. Only the symmetric part of `H` matters; `H̄` is symmetric.

mod backend;

use super::kkt::{Hess, Kkt};
use super::util::{self, impl_linearization, LinCore};
use crate::{Arg, FoldError, Primitive, Value};
use backend::clarabel_solve;
use nalgebra::{DMatrix, DVector};
use std::sync::OnceLock;

const QP: &str = "qp_solve";

/// A solved QP with its KKT factorization on the active set: what every product needs.
#[derive(Debug, Clone)]
pub(crate) struct QpCore {
    pub(crate) x: DVector<f64>,
    pub(crate) y: DVector<f64>,
    /// All inequality duals (zero off the active set).
    pub(crate) z: DVector<f64>,
    pub(crate) active: Vec<usize>,
    kkt: Kkt,
}

/// Gradients of the QP's inputs, before the caller maps `p` to its own arguments.
pub(crate) struct CoreGrads {
    /// `K⁺`'s first block: `p̄ = −a1`.
    pub(crate) a1: DVector<f64>,
    pub(crate) a: DMatrix<f64>,
    pub(crate) b: DVector<f64>,
    pub(crate) g: DMatrix<f64>,
    pub(crate) h: DVector<f64>,
}

impl QpCore {
    /// Solves and linearizes; inputs are assumed finite and well-shaped.
    pub(crate) fn solve(
        name: &str,
        h: Hess<'_>,
        p: &DVector<f64>,
        a: &DMatrix<f64>,
        b: &DVector<f64>,
        g: &DMatrix<f64>,
        hv: &DVector<f64>,
    ) -> Result<QpCore, FoldError> {
        let (m, q) = (a.nrows(), g.nrows());
        let (x_raw, y_raw, z_raw, s_raw) = clarabel_solve(name, h, p, a, b, g, hv)?;
        let mut active: Vec<usize> = (0..q).filter(|&i| z_raw[i] > s_raw[i]).collect();
        let neg_p = -p;
        let x_scale = 1.0 + x_raw.amax();
        for attempt in 0..2 {
            let kkt = Kkt::new(h, stack(a, g, &active));
            let d = stack_vec(b, hv, &active);
            let (xp, nu) = kkt.apply(&neg_p, &d);
            // Polishing is trusted only if it is primal feasible and close to the solver's x
            // (a wrong active set fails one of the two).
            let gx = g * &xp;
            let feasible = (0..q).all(|i| {
                let scale = 1.0 + hv[i].abs() + g.row(i).abs().dot(&xp.abs().transpose());
                gx[i] - hv[i] <= 1e-7 * scale
            });
            let close = (&xp - &x_raw).amax() <= 1e-4 * x_scale;
            if !(feasible && close && util::all_finite_vec(&xp) && util::all_finite_vec(&nu)) {
                let z = scatter(q, &active, &z_raw.select_rows(active.iter()));
                return Ok(QpCore {
                    x: x_raw,
                    y: y_raw,
                    z,
                    active,
                    kkt,
                });
            }
            let nu_z = nu.rows(m, active.len()).into_owned();
            let dual_scale = 1.0 + nu.amax();
            if nu_z.iter().all(|&v| v >= -1e-7 * dual_scale) {
                let weak: Vec<usize> = (0..active.len())
                    .filter(|&j| nu_z[j] <= 1e-9 * dual_scale)
                    .collect();
                if !weak.is_empty() && attempt == 0 {
                    let keep: Vec<usize> = (0..active.len())
                        .filter(|j| !weak.contains(j))
                        .map(|j| active[j])
                        .collect();
                    active = keep;
                    continue;
                }
                let z = scatter(q, &active, &nu_z.map(|v| v.max(0.0)));
                return Ok(QpCore {
                    x: xp,
                    y: nu.rows(0, m).into_owned(),
                    z,
                    active,
                    kkt,
                });
            }
            // Dependent active rows: the multipliers are not unique and the minimum-norm
            // ones may have the wrong sign; keep the solver's (valid) duals.
            let z = scatter(q, &active, &z_raw.select_rows(active.iter()));
            return Ok(QpCore {
                x: xp,
                y: y_raw,
                z,
                active,
                kkt,
            });
        }
        // Not reached: the second attempt always returns.
        Err(FoldError::primitive(
            name,
            "active-set polishing did not settle",
        ))
    }

    /// Whether the KKT matrix on the active set was singular (the pseudo-inverse rule
    /// applies).
    pub(crate) fn is_degenerate(&self) -> bool {
        !self.kkt.is_exact()
    }

    /// `(dx, dy, dz)` for tangents of `(H, p, A, b, G, h)`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn jvp(
        &self,
        dhm: Option<&DMatrix<f64>>,
        dp: Option<&DVector<f64>>,
        da: Option<&DMatrix<f64>>,
        db: Option<&DVector<f64>>,
        dg: Option<&DMatrix<f64>>,
        dh: Option<&DVector<f64>>,
    ) -> (DVector<f64>, DVector<f64>, DVector<f64>) {
        let (n, m, q) = (self.x.len(), self.y.len(), self.z.len());
        // r₁ = −(sym(dH) x + dp + dAᵀy + dGᵀz), r₂ = [db − dA x; (dh − dG x)_S].
        let mut r1 = DVector::zeros(n);
        if let Some(dhm) = dhm {
            r1.gemv(-0.5, dhm, &self.x, 1.0);
            r1.gemv_tr(-0.5, dhm, &self.x, 1.0);
        }
        if let Some(dp) = dp {
            r1 -= dp;
        }
        let mut r_eq = db.cloned().unwrap_or_else(|| DVector::zeros(m));
        if let Some(da) = da {
            r1.gemv_tr(-1.0, da, &self.y, 1.0);
            r_eq.gemv(-1.0, da, &self.x, 1.0);
        }
        let mut r_in = dh.cloned().unwrap_or_else(|| DVector::zeros(q));
        if let Some(dg) = dg {
            r1.gemv_tr(-1.0, dg, &self.z, 1.0);
            r_in.gemv(-1.0, dg, &self.x, 1.0);
        }
        let r2 = stack_vec(&r_eq, &r_in, &self.active);
        let (dx, dnu) = self.kkt.apply(&r1, &r2);
        let dy = dnu.rows(0, m).into_owned();
        let dz = scatter(
            q,
            &self.active,
            &dnu.rows(m, self.active.len()).into_owned(),
        );
        (dx, dy, dz)
    }

    /// Gradients of `(p via a1, A, b, G, h)` for cotangents of `(x, y, z)`; those not
    /// `wanted` (`[A, b, G, h]`) are left empty.
    pub(crate) fn vjp(
        &self,
        gx: Option<&DVector<f64>>,
        gy: Option<&DVector<f64>>,
        gz: Option<&DVector<f64>>,
        wanted: [bool; 4],
    ) -> CoreGrads {
        let (n, m, q) = (self.x.len(), self.y.len(), self.z.len());
        let c1 = gx.cloned().unwrap_or_else(|| DVector::zeros(n));
        let zero_m = DVector::zeros(m);
        let zero_q = DVector::zeros(q);
        let c2 = stack_vec(gy.unwrap_or(&zero_m), gz.unwrap_or(&zero_q), &self.active);
        let (a1, a2) = self.kkt.apply(&c1, &c2);
        let ay = a2.rows(0, m).into_owned();
        let az = scatter(q, &self.active, &a2.rows(m, self.active.len()).into_owned());
        let outer = |u: &DVector<f64>, w: &DVector<f64>| -> DMatrix<f64> {
            // −u a1ᵀ − w xᵀ
            let mut out = DMatrix::zeros(u.len(), n);
            out.ger(-1.0, u, &a1, 0.0);
            out.ger(-1.0, w, &self.x, 1.0);
            out
        };
        let empty_m = || DMatrix::zeros(0, 0);
        CoreGrads {
            a: if wanted[0] {
                outer(&self.y, &ay)
            } else {
                empty_m()
            },
            b: ay,
            g: if wanted[2] {
                outer(&self.z, &az)
            } else {
                empty_m()
            },
            h: az,
            a1,
        }
    }

    /// `H̄ = −½(a1 xᵀ + x a1ᵀ)`.
    pub(crate) fn hessian_grad(&self, a1: &DVector<f64>) -> DMatrix<f64> {
        let n = self.x.len();
        let mut out = DMatrix::zeros(n, n);
        out.ger(-0.5, a1, &self.x, 0.0);
        out.ger(-0.5, &self.x, a1, 1.0);
        out
    }
}

/// `[A; G_S]`.
fn stack(a: &DMatrix<f64>, g: &DMatrix<f64>, active: &[usize]) -> DMatrix<f64> {
    let (m, n) = a.shape();
    let mut c = DMatrix::zeros(m + active.len(), n);
    c.rows_mut(0, m).copy_from(a);
    for (k, &i) in active.iter().enumerate() {
        c.row_mut(m + k).copy_from(&g.row(i));
    }
    c
}

/// `[b; h_S]`.
fn stack_vec(b: &DVector<f64>, h: &DVector<f64>, active: &[usize]) -> DVector<f64> {
    let m = b.len();
    let mut d = DVector::zeros(m + active.len());
    d.rows_mut(0, m).copy_from(b);
    for (k, &i) in active.iter().enumerate() {
        d[m + k] = h[i];
    }
    d
}

/// A length-`q` vector with `vals` at `idx`, zero elsewhere.
fn scatter(q: usize, idx: &[usize], vals: &DVector<f64>) -> DVector<f64> {
    let mut out = DVector::zeros(q);
    for (k, &i) in idx.iter().enumerate() {
        out[i] = vals[k];
    }
    out
}

/// Checks shapes and finiteness of `(G, h)` against `n`, and of `(A, b)`.
pub(crate) fn check_constraints(
    name: &str,
    n: usize,
    a: &DMatrix<f64>,
    b: &DVector<f64>,
    g: &DMatrix<f64>,
    h: &DVector<f64>,
) -> Result<(), FoldError> {
    util::dim(name, "columns of A", n, a.ncols())?;
    util::dim(name, "length of b", a.nrows(), b.len())?;
    util::dim(name, "columns of G", n, g.ncols())?;
    util::dim(name, "length of h", g.nrows(), h.len())?;
    util::finite_mat(name, "A", a)?;
    util::finite_vec(name, "b", b)?;
    util::finite_mat(name, "G", g)?;
    util::finite_vec(name, "h", h)
}

/// `(x, y, z)`: the primal solution, the equality duals and the inequality duals.
pub type QpSolution = (DVector<f64>, DVector<f64>, DVector<f64>);

/// Solves `min ½xᵀHx + pᵀx s.t. Ax = b, Gx ≤ h` (convex: `H` symmetric positive
/// semidefinite; only its symmetric part is used) and returns `(x, y, z)`: the primal
/// solution, the equality duals and the inequality duals, with the sign convention of the
/// [module docs](self) (`Hx + p + Aᵀy + Gᵀz = 0`, `z ≥ 0`). Pass `A`, `b` (or `G`, `h`)
/// with zero rows for no equality (inequality) constraints.
///
/// Kinks: at a weakly active constraint (zero dual on the boundary) the derivative is the
/// one-sided derivative of the problem without it; degenerate active sets use the KKT
/// pseudo-inverse (see the module docs). Returns NaN-filled vectors when the problem is
/// infeasible, unbounded, the solver fails, shapes disagree or anything is not finite
/// (see [`try_qp_solve`]).
pub fn qp_solve(
    hm: &DMatrix<f64>,
    p: &DVector<f64>,
    a: &DMatrix<f64>,
    b: &DVector<f64>,
    g: &DMatrix<f64>,
    h: &DVector<f64>,
) -> QpSolution {
    try_qp_solve(hm, p, a, b, g, h).unwrap_or_else(|_| {
        (
            util::nan_vec(p.len()),
            util::nan_vec(a.nrows()),
            util::nan_vec(g.nrows()),
        )
    })
}

/// [`qp_solve`], failing with `NonFinite`, `DimensionMismatch` or
/// `PrimitiveFailed { primitive: "qp_solve", status }` where `status` is clarabel's
/// (`PrimalInfeasible`, `DualInfeasible`, `MaxIterations`, …).
pub fn try_qp_solve(
    hm: &DMatrix<f64>,
    p: &DVector<f64>,
    a: &DMatrix<f64>,
    b: &DVector<f64>,
    g: &DMatrix<f64>,
    h: &DVector<f64>,
) -> Result<QpSolution, FoldError> {
    QpSolveLin::new(hm, p, a, b, g, h).map(|lin| (lin.core.x, lin.core.y, lin.core.z))
}

/// Tangents of `qp_solve`'s inputs; `None` stands for zero.
#[derive(Debug, Clone, Copy, Default)]
pub struct QpTangent<'a> {
    /// `dH` (only its symmetric part matters).
    pub hm: Option<&'a DMatrix<f64>>,
    /// `dp`.
    pub p: Option<&'a DVector<f64>>,
    /// `dA`.
    pub a: Option<&'a DMatrix<f64>>,
    /// `db`.
    pub b: Option<&'a DVector<f64>>,
    /// `dG`.
    pub g: Option<&'a DMatrix<f64>>,
    /// `dh`.
    pub h: Option<&'a DVector<f64>>,
}

/// Cotangents of `qp_solve`'s inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct QpCotangent {
    /// `H̄` (symmetric).
    pub hm: DMatrix<f64>,
    /// `p̄`.
    pub p: DVector<f64>,
    /// `Ā`.
    pub a: DMatrix<f64>,
    /// `b̄`.
    pub b: DVector<f64>,
    /// `Ḡ` (zero on inactive rows).
    pub g: DMatrix<f64>,
    /// `h̄` (zero on inactive entries).
    pub h: DVector<f64>,
}

/// [`qp_solve`] linearized at its inputs: the solution, the active set and one KKT
/// factorization that every JVP and VJP reuses.
///
/// Products with a (co)tangent of the wrong shape panic (a caller bug); the
/// [`Primitive`] trait's products return NaN instead.
#[derive(Debug)]
pub struct QpSolveLin {
    core: QpCore,
    outs: OnceLock<[Value; 3]>,
}

impl QpSolveLin {
    /// Solves and linearizes; fails like [`try_qp_solve`].
    pub fn new(
        hm: &DMatrix<f64>,
        p: &DVector<f64>,
        a: &DMatrix<f64>,
        b: &DVector<f64>,
        g: &DMatrix<f64>,
        h: &DVector<f64>,
    ) -> Result<Self, FoldError> {
        let n = p.len();
        util::dim(QP, "rows of H", n, hm.nrows())?;
        util::dim(QP, "columns of H", n, hm.ncols())?;
        util::finite_mat(QP, "H", hm)?;
        util::finite_vec(QP, "p", p)?;
        check_constraints(QP, n, a, b, g, h)?;
        if let Some(i) = (0..n).find(|&i| hm[(i, i)] < 0.0) {
            // A cheap necessary condition; clarabel assumes convexity.
            return Err(FoldError::primitive(
                QP,
                format!("H is not positive semidefinite (H[{i},{i}] < 0)"),
            ));
        }
        let hs = (hm + hm.transpose()) * 0.5;
        let core = QpCore::solve(QP, Hess::Dense(&hs), p, a, b, g, h)?;
        Ok(QpSolveLin {
            core,
            outs: OnceLock::new(),
        })
    }

    /// The primal solution `x`.
    pub fn x(&self) -> &DVector<f64> {
        &self.core.x
    }

    /// The equality duals `y`.
    pub fn y(&self) -> &DVector<f64> {
        &self.core.y
    }

    /// The inequality duals `z` (zero off the active set).
    pub fn z(&self) -> &DVector<f64> {
        &self.core.z
    }

    /// The active inequality constraints used by the derivative, increasing.
    pub fn active_set(&self) -> &[usize] {
        &self.core.active
    }

    /// Whether the KKT matrix on the active set is singular, so that the derivative uses
    /// its pseudo-inverse (see the module docs).
    pub fn is_degenerate(&self) -> bool {
        self.core.is_degenerate()
    }

    /// `(dx, dy, dz)` for the given input tangents.
    pub fn jvp(&self, t: &QpTangent<'_>) -> QpSolution {
        self.core.jvp(t.hm, t.p, t.a, t.b, t.g, t.h)
    }

    /// Cotangents of all inputs for output cotangents `(x̄, ȳ, z̄)`.
    pub fn vjp(&self, gx: &DVector<f64>, gy: &DVector<f64>, gz: &DVector<f64>) -> QpCotangent {
        self.vjp_opt(Some(gx), Some(gy), Some(gz), [true; 6])
    }

    fn vjp_opt(
        &self,
        gx: Option<&DVector<f64>>,
        gy: Option<&DVector<f64>>,
        gz: Option<&DVector<f64>>,
        wanted: [bool; 6],
    ) -> QpCotangent {
        let cg = self
            .core
            .vjp(gx, gy, gz, [wanted[2], wanted[3], wanted[4], wanted[5]]);
        QpCotangent {
            hm: if wanted[0] {
                self.core.hessian_grad(&cg.a1)
            } else {
                DMatrix::zeros(0, 0)
            },
            p: -cg.a1,
            a: cg.a,
            b: cg.b,
            g: cg.g,
            h: cg.h,
        }
    }
}

impl LinCore for QpSolveLin {
    fn outs(&self) -> &[Value] {
        self.outs.get_or_init(|| {
            [
                Value::Vector(self.core.x.clone()),
                Value::Vector(self.core.y.clone()),
                Value::Vector(self.core.z.clone()),
            ]
        })
    }
    fn nan_args(&self) -> Vec<Value> {
        let (n, m, q) = (self.core.x.len(), self.core.y.len(), self.core.z.len());
        let nan_m = |r, c| Value::Matrix(DMatrix::from_element(r, c, f64::NAN));
        vec![
            nan_m(n, n),
            Value::Vector(util::nan_vec(n)),
            nan_m(m, n),
            Value::Vector(util::nan_vec(m)),
            nan_m(q, n),
            Value::Vector(util::nan_vec(q)),
        ]
    }
    fn try_jvp(&self, t: &[Option<Arg<'_>>]) -> Result<Vec<Value>, FoldError> {
        let (n, m, q) = (self.core.x.len(), self.core.y.len(), self.core.z.len());
        let tan = QpTangent {
            hm: util::mat_tan(QP, t, 0, (n, n))?,
            p: util::vec_tan(QP, t, 1, n)?,
            a: util::mat_tan(QP, t, 2, (m, n))?,
            b: util::vec_tan(QP, t, 3, m)?,
            g: util::mat_tan(QP, t, 4, (q, n))?,
            h: util::vec_tan(QP, t, 5, q)?,
        };
        let (dx, dy, dz) = self.jvp(&tan);
        Ok(vec![
            Value::Vector(dx),
            Value::Vector(dy),
            Value::Vector(dz),
        ])
    }
    fn try_vjp(&self, c: &[Option<Arg<'_>>], wanted: &[bool]) -> Result<Vec<Value>, FoldError> {
        let (n, m, q) = (self.core.x.len(), self.core.y.len(), self.core.z.len());
        let gx = util::vec_tan(QP, c, 0, n)?;
        let gy = util::vec_tan(QP, c, 1, m)?;
        let gz = util::vec_tan(QP, c, 2, q)?;
        let w = |i| util::wants(wanted, i);
        let ct = self.vjp_opt(gx, gy, gz, [w(0), w(1), w(2), w(3), w(4), w(5)]);
        Ok(vec![
            Value::Matrix(ct.hm),
            Value::Vector(ct.p),
            Value::Matrix(ct.a),
            Value::Vector(ct.b),
            Value::Matrix(ct.g),
            Value::Vector(ct.h),
        ])
    }
}
impl_linearization!(QpSolveLin);

/// [`qp_solve`] as a [`Primitive`]: arguments `(H, p, A, b, G, h)`, outputs `(x, y, z)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct QpSolve;

impl Primitive for QpSolve {
    type Linearization = QpSolveLin;
    fn name(&self) -> &'static str {
        QP
    }
    fn linearize(&self, args: &[Arg<'_>]) -> Result<QpSolveLin, FoldError> {
        util::arity(QP, args.len(), 6)?;
        QpSolveLin::new(
            util::mat_arg(QP, args, 0)?,
            util::vec_arg(QP, args, 1)?,
            util::mat_arg(QP, args, 2)?,
            util::vec_arg(QP, args, 3)?,
            util::mat_arg(QP, args, 4)?,
            util::vec_arg(QP, args, 5)?,
        )
    }
}
