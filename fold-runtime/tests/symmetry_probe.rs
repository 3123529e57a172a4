//! A reduced matrix that is symmetric except for one interior pair of entries: the dense
//! solve must not return the Cholesky solution of its lower triangle: the answer must be
//! exact.

use fold_runtime::nalgebra::{DMatrix, DVector};
use fold_runtime::{folded_backward, BackwardOptions, Factored, Linearized, SupportKernel};

/// Φ = M (support = everything, K = I), Ψ = I: the reduced system is (I − Mᵀ) w = g.
struct Plain {
    m: DMatrix<f64>,
    support: Vec<usize>,
}

impl Linearized for Plain {
    type Grads = DVector<f64>;
    fn state_dim(&self) -> usize {
        self.m.nrows()
    }
    fn vjp_state(&self, v: &DVector<f64>) -> DVector<f64> {
        self.m.tr_mul(v)
    }
    fn jvp_state(&self, u: &DVector<f64>) -> DVector<f64> {
        &self.m * u
    }
    fn vjp_params(&self, v: &DVector<f64>) -> DVector<f64> {
        v.clone()
    }
    fn jvp_params(&self, d: &DVector<f64>) -> DVector<f64> {
        d.clone()
    }
    fn factored(&self) -> Option<&dyn Factored<Grads = DVector<f64>>> {
        Some(self)
    }
}

impl Factored for Plain {
    fn support(&self) -> &[usize] {
        &self.support
    }
    fn kernel(&self) -> SupportKernel {
        SupportKernel::Identity
    }
    fn inner_vjp_state(&self, u: &DVector<f64>) -> DVector<f64> {
        self.m.tr_mul(u)
    }
    fn inner_vjp_params(&self, u: &DVector<f64>) -> DVector<f64> {
        u.clone()
    }
    fn head_vjp_params(&self, _w: &DVector<f64>) -> Option<DVector<f64>> {
        None
    }
    fn head_has_params(&self) -> bool {
        false
    }
    fn reduced_matrix(&self) -> Option<DMatrix<f64>> {
        let n = self.m.nrows();
        Some(DMatrix::identity(n, n) - self.m.transpose())
    }
}

#[test]
fn an_almost_symmetric_reduced_matrix_is_solved_exactly() {
    let n = 7;
    // I − Mᵀ symmetric positive definite except for one interior pair of entries.
    let mut a = DMatrix::from_fn(n, n, |i, j| {
        if i == j {
            3.0
        } else {
            0.2 / (1.0 + (i + j) as f64)
        }
    });
    a[(1, 5)] += 0.8;
    let m = (DMatrix::identity(n, n) - &a).transpose();
    let lin = Plain {
        m,
        support: (0..n).collect(),
    };
    let g = DVector::from_fn(n, |i, _| (i as f64 + 1.0).sin());
    let (grad, _) = folded_backward(&lin, &g, &BackwardOptions::default()).unwrap();
    // Ψ = I: the gradient is w = (I − Mᵀ)⁻¹ g = A⁻¹ g.
    let expected = a.lu().solve(&g).unwrap();
    assert!((grad - &expected).norm() <= 1e-10 * expected.norm());
}
