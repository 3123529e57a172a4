//! The QP layer's solver back end: clarabel's interior-point method on the dense problem
//! converted to CSC.

use super::super::kkt::Hess;
use crate::ops::util;
use crate::FoldError;
use clarabel::algebra::CscMatrix;
use clarabel::solver::{
    DefaultSettings, DefaultSolver, IPSolver, NonnegativeConeT, SolverStatus, SupportedConeT,
    ZeroConeT,
};
use nalgebra::{DMatrix, DVector};

/// Dense to clarabel's CSC: all of `top` stacked on `bottom`, or the upper triangle of a
/// square `top` when `upper`.
fn csc(top: &DMatrix<f64>, bottom: Option<&DMatrix<f64>>, upper: bool) -> CscMatrix<f64> {
    let (m1, n) = top.shape();
    let m2 = bottom.map_or(0, |b| b.nrows());
    let mut colptr = Vec::with_capacity(n + 1);
    let (mut rowval, mut nzval) = (Vec::new(), Vec::new());
    colptr.push(0);
    for j in 0..n {
        let rows = if upper { (j + 1).min(m1) } else { m1 };
        for i in 0..rows {
            let x = top[(i, j)];
            if x != 0.0 {
                rowval.push(i);
                nzval.push(x);
            }
        }
        if let Some(b) = bottom {
            for i in 0..m2 {
                let x = b[(i, j)];
                if x != 0.0 {
                    rowval.push(m1 + i);
                    nzval.push(x);
                }
            }
        }
        colptr.push(rowval.len());
    }
    CscMatrix::new(m1 + m2, n, colptr, rowval, nzval)
}

/// Clarabel's raw solution: `(x, y, z, s)` with `s = h − Gx` the inequality slacks.
type Raw = (DVector<f64>, DVector<f64>, DVector<f64>, DVector<f64>);

pub(super) fn clarabel_solve(
    name: &str,
    h: Hess<'_>,
    p: &DVector<f64>,
    a: &DMatrix<f64>,
    b: &DVector<f64>,
    g: &DMatrix<f64>,
    hv: &DVector<f64>,
) -> Result<Raw, FoldError> {
    let (n, m, q) = (p.len(), a.nrows(), g.nrows());
    let pm = match h {
        Hess::Identity => CscMatrix::identity(n),
        Hess::Dense(hm) => csc(hm, None, true),
    };
    let am = csc(a, Some(g), false);
    let rhs: Vec<f64> = b.iter().chain(hv.iter()).copied().collect();
    let mut cones: Vec<SupportedConeT<f64>> = Vec::new();
    if m > 0 {
        cones.push(ZeroConeT(m));
    }
    if q > 0 {
        cones.push(NonnegativeConeT(q));
    }
    let settings = DefaultSettings {
        verbose: false,
        tol_gap_abs: 1e-10,
        tol_gap_rel: 1e-10,
        tol_feas: 1e-10,
        ..DefaultSettings::default()
    };
    // Clarabel is not expected to panic on finite, well-shaped data; a panic would still
    // be turned into an error rather than unwind through user code.
    let solved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut solver = DefaultSolver::new(&pm, p.as_slice(), &am, &rhs, &cones, settings)
            .map_err(|e| format!("setup failed: {e}"))?;
        solver.solve();
        let sol = &solver.solution;
        match sol.status {
            SolverStatus::Solved | SolverStatus::AlmostSolved => {
                Ok((sol.x.clone(), sol.z.clone(), sol.s.clone()))
            }
            status => Err(format!("{status:?}")),
        }
    }));
    let (x, zc, s) = match solved {
        Ok(Ok(v)) => v,
        Ok(Err(status)) => return Err(FoldError::primitive(name, status)),
        Err(_) => return Err(FoldError::primitive(name, "clarabel panicked")),
    };
    let x = DVector::from_vec(x);
    let y = DVector::from_column_slice(&zc[..m]);
    let z = DVector::from_column_slice(&zc[m..]);
    let s = DVector::from_column_slice(&s[m..]);
    for (v, what) in [(&x, "x"), (&y, "y"), (&z, "z")] {
        util::finite_vec(name, &format!("solver output {what}"), v)?;
    }
    Ok((x, y, z, s))
}
