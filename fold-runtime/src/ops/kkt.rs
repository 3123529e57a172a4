//! The KKT matrix `K = [H Cᵀ; C 0]` of an equality-constrained QP, factored once and
//! applied as its Moore–Penrose pseudo-inverse `K⁺` (which is `K⁻¹` when `K` is
//! nonsingular). `K⁺` is symmetric, so one factorization serves JVPs and VJPs alike.
//!
//! Paths, cheapest first:
//! 1. `H` (or `H + ρCᵀC` when `H` is only semidefinite) is numerically positive
//!    definite: a Schur complement `S = C H⁻¹ Cᵀ`, itself solved by Cholesky, or by an
//!    eigendecomposition pseudo-inverse when the rows of `C` are (nearly) dependent.
//!    This equals `K⁺`: `r₂` is projected onto `range(C)` and the multiplier returned is
//!    the minimum-norm one.
//! 2. Otherwise an eigendecomposition pseudo-inverse of the whole `K`.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::{MatMut, MatRef, Par};
use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// Eigenvalues below this fraction of the largest one are treated as zero.
const PINV_RCOND: f64 = 1e-10;
/// A Cholesky pivot below this fraction of its diagonal entry means (near) dependence.
const PIVOT_RATIO: f64 = 1e-10;

/// A lower Cholesky factor computed by faer in place (its blocked kernel is several
/// times faster than nalgebra's above n ≈ 100).
#[derive(Debug, Clone)]
struct Chol {
    l: DMatrix<f64>,
}

impl Chol {
    /// `None` unless `a` is numerically positive definite: every pivot `lᵢᵢ²` must exceed
    /// `PIVOT_RATIO · aᵢᵢ` (the squared distance of row i from the span of the rows
    /// before it, relative to its own size).
    fn factor(a: &DMatrix<f64>) -> Option<Chol> {
        use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch};
        let n = a.nrows();
        let mut l = a.clone();
        let mut mem = MemBuffer::new(cholesky_in_place_scratch::<f64>(
            n,
            Par::Seq,
            Default::default(),
        ));
        let (m, k) = l.shape();
        cholesky_in_place(
            MatMut::from_column_major_slice_mut(l.as_mut_slice(), m, k),
            Default::default(),
            Par::Seq,
            MemStack::new(&mut mem),
            Default::default(),
        )
        .ok()?;
        let ok = (0..n).all(|i| {
            let d = l[(i, i)];
            d.is_finite() && d * d > PIVOT_RATIO * a[(i, i)] && d > 0.0
        });
        ok.then_some(Chol { l })
    }

    fn solve_in_place(&self, x: &mut DVector<f64>) {
        use faer::linalg::triangular_solve as ts;
        let n = x.len();
        let l = MatRef::from_column_major_slice(self.l.as_slice(), n, n);
        let xm = MatMut::from_column_major_slice_mut(x.as_mut_slice(), n, 1);
        ts::solve_lower_triangular_in_place(l, xm, Par::Seq);
        let xm = MatMut::from_column_major_slice_mut(x.as_mut_slice(), n, 1);
        ts::solve_upper_triangular_in_place(l.transpose(), xm, Par::Seq);
    }

    fn solve_mat_in_place(&self, x: &mut DMatrix<f64>) {
        use faer::linalg::triangular_solve as ts;
        let (n, k) = x.shape();
        let l = MatRef::from_column_major_slice(self.l.as_slice(), n, n);
        let xm = MatMut::from_column_major_slice_mut(x.as_mut_slice(), n, k);
        ts::solve_lower_triangular_in_place(l, xm, Par::Seq);
        let xm = MatMut::from_column_major_slice_mut(x.as_mut_slice(), n, k);
        ts::solve_upper_triangular_in_place(l.transpose(), xm, Par::Seq);
    }
}

/// A symmetric matrix's inverse (Cholesky) or pseudo-inverse (eigendecomposition).
#[derive(Debug, Clone)]
enum SymSolve {
    Chol(Chol),
    /// `V diag(inv) Vᵀ` with `inv = 1/λ` above the cutoff, 0 below.
    Pinv {
        v: DMatrix<f64>,
        inv: DVector<f64>,
    },
}

impl SymSolve {
    /// Cholesky when `a` is numerically positive definite and `try_chol`, else the
    /// pseudo-inverse.
    fn new(a: &DMatrix<f64>, try_chol: bool) -> SymSolve {
        if try_chol {
            if let Some(c) = Chol::factor(a) {
                return SymSolve::Chol(c);
            }
        }
        SymSolve::pinv(a)
    }

    fn pinv(a: &DMatrix<f64>) -> SymSolve {
        if a.is_empty() {
            return SymSolve::Pinv {
                v: a.clone(),
                inv: DVector::zeros(0),
            };
        }
        let eig = SymmetricEigen::new(a.clone());
        let max = eig.eigenvalues.amax();
        let cut = PINV_RCOND * max;
        let inv = eig.eigenvalues.map(|l| {
            if l.abs() > cut && l != 0.0 {
                1.0 / l
            } else {
                0.0
            }
        });
        SymSolve::Pinv {
            v: eig.eigenvectors,
            inv,
        }
    }

    fn is_exact(&self) -> bool {
        match self {
            SymSolve::Chol(_) => true,
            SymSolve::Pinv { inv, .. } => inv.iter().all(|&x| x != 0.0),
        }
    }

    fn apply(&self, x: &mut DVector<f64>) {
        match self {
            SymSolve::Chol(c) => c.solve_in_place(x),
            SymSolve::Pinv { v, inv } => {
                let mut t = v.tr_mul(x);
                t.component_mul_assign(inv);
                x.gemv(1.0, v, &t, 0.0);
            }
        }
    }
}

/// How `K⁺` is applied.
#[derive(Debug, Clone)]
enum Path {
    /// Schur complement on `H_ρ = H + ρCᵀC`, `H_ρ⁻¹` by Cholesky (`None`: `H_ρ = I`).
    Schur {
        hinv: Option<Chol>,
        rho: f64,
        /// `W = H_ρ⁻¹ Cᵀ` (n×k).
        w: DMatrix<f64>,
        /// `S = C W`.
        s: SymSolve,
    },
    /// `K⁺` from an eigendecomposition of the whole `K`.
    Full(SymSolve),
}

/// `K = [H Cᵀ; C 0]` factored; `apply` returns `K⁺ [r₁; r₂]`.
#[derive(Debug, Clone)]
pub(crate) struct Kkt {
    /// The constraint rows `C` (k×n).
    c: DMatrix<f64>,
    path: Path,
}

/// The Hessian of a QP: the identity (projections) or a dense symmetric matrix.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Hess<'a> {
    /// `H = I`.
    Identity,
    /// A dense symmetric `H`.
    Dense(&'a DMatrix<f64>),
}

impl Kkt {
    /// Factors `K` for a symmetric positive semidefinite `H` and constraint rows `C`.
    pub(crate) fn new(h: Hess<'_>, c: DMatrix<f64>) -> Kkt {
        let path = match h {
            Hess::Identity => Self::schur(None, 0.0, &c),
            Hess::Dense(h) => match Chol::factor(h) {
                Some(ch) => Self::schur(Some(ch), 0.0, &c),
                None => {
                    // Semidefinite H: K⁺ is unchanged by H → H + ρCᵀC (the rows C dx = r₂
                    // fix the added term), which is definite when H is on null(C).
                    let cn = c.norm_squared();
                    let hn = h.norm();
                    let rho = if hn > 0.0 { hn } else { 1.0 } / cn.max(f64::MIN_POSITIVE);
                    let mut hr = h.clone();
                    hr.gemm_tr(rho, &c, &c, 1.0);
                    match (c.nrows() > 0).then(|| Chol::factor(&hr)).flatten() {
                        Some(ch) => Self::schur(Some(ch), rho, &c),
                        None => Self::full(h, &c),
                    }
                }
            },
        };
        Kkt { c, path }
    }

    fn schur(hinv: Option<Chol>, rho: f64, c: &DMatrix<f64>) -> Path {
        let mut w = c.transpose();
        if let Some(ch) = &hinv {
            ch.solve_mat_in_place(&mut w);
        }
        let s = c * &w;
        let s = (&s + s.transpose()) * 0.5;
        Path::Schur {
            hinv,
            rho,
            w,
            s: SymSolve::new(&s, true),
        }
    }

    fn full(h: &DMatrix<f64>, c: &DMatrix<f64>) -> Path {
        let (k, n) = c.shape();
        let mut kk = DMatrix::zeros(n + k, n + k);
        kk.view_mut((0, 0), (n, n)).copy_from(h);
        kk.view_mut((n, 0), (k, n)).copy_from(c);
        kk.view_mut((0, n), (n, k)).copy_from(&c.transpose());
        Path::Full(SymSolve::pinv(&kk))
    }

    /// Whether `K` was nonsingular (then `K⁺ = K⁻¹`); `false` on a degenerate active set.
    pub(crate) fn is_exact(&self) -> bool {
        match &self.path {
            Path::Schur { s, .. } => s.is_exact(),
            Path::Full(s) => s.is_exact(),
        }
    }

    /// `(dx, dν) = K⁺ [r₁; r₂]`.
    pub(crate) fn apply(
        &self,
        r1: &DVector<f64>,
        r2: &DVector<f64>,
    ) -> (DVector<f64>, DVector<f64>) {
        let (k, n) = self.c.shape();
        match &self.path {
            Path::Schur { hinv, rho, w, s } => {
                // dx = H_ρ⁻¹(r₁' − Cᵀν), ν = S⁺(C H_ρ⁻¹ r₁' − r₂), r₁' = r₁ + ρCᵀr₂.
                let mut u = r1.clone();
                if *rho != 0.0 {
                    u.gemv_tr(*rho, &self.c, r2, 1.0);
                }
                if let Some(ch) = hinv {
                    ch.solve_in_place(&mut u);
                }
                let mut nu = r2.clone();
                nu.gemv(1.0, &self.c, &u, -1.0);
                s.apply(&mut nu);
                u.gemv(-1.0, w, &nu, 1.0);
                (u, nu)
            }
            Path::Full(s) => {
                let mut z = DVector::zeros(n + k);
                z.rows_mut(0, n).copy_from(r1);
                z.rows_mut(n, k).copy_from(r2);
                s.apply(&mut z);
                (z.rows(0, n).into_owned(), z.rows(n, k).into_owned())
            }
        }
    }
}
