//! Projections onto the simplex `{x ≥ 0, Σx = r}` and the capped simplex
//! `{0 ≤ x ≤ 1, Σx = k}`. Both are `clamp(v − τ)` for a scalar threshold τ, so their
//! Jacobians are `diag(s) − ssᵀ/|S|` on the free coordinates `S`.

use super::util::{self, impl_linearization, LinCore};
use crate::{Arg, FoldError, Primitive, SupportKernel, Value};
use nalgebra::DVector;
use std::sync::OnceLock;

const SIMPLEX: &str = "proj_simplex";
const CAPPED: &str = "proj_capped_simplex";

/// The threshold τ with `Σ max(yᵢ − τ, 0) = a` (`a > 0`, `y` non-empty and finite), by
/// Condat's algorithm (Math. Program. 2016; linear time in practice), then refined on
/// the support it found so that rounding in its running means does not move the value.
fn simplex_threshold(y: &[f64], a: f64) -> f64 {
    let mut v: Vec<f64> = Vec::with_capacity(64);
    let mut spare: Vec<f64> = Vec::new();
    v.push(y[0]);
    let mut rho = y[0] - a;
    for &yn in &y[1..] {
        if yn > rho {
            rho += (yn - rho) / (v.len() as f64 + 1.0);
            if rho > yn - a {
                v.push(yn);
            } else {
                spare.extend_from_slice(&v);
                v.clear();
                v.push(yn);
                rho = yn - a;
            }
        }
    }
    for &yt in &spare {
        if yt > rho {
            v.push(yt);
            rho += (yt - rho) / v.len() as f64;
        }
    }
    loop {
        let before = v.len();
        let mut count = before;
        let mut kept = 0;
        for i in 0..before {
            let yi = v[i];
            if yi <= rho && count > 1 {
                count -= 1;
                rho += (rho - yi) / count as f64;
            } else {
                v[kept] = yi;
                kept += 1;
            }
        }
        v.truncate(kept);
        if kept == before {
            break;
        }
    }
    // Recompute τ exactly on its support (a Michelot step); twice covers a support that
    // rounding moved by one element.
    let mut tau = rho;
    for _ in 0..2 {
        let (mut sum, mut count) = (0.0, 0usize);
        for &yi in y {
            if yi > tau {
                sum += yi;
                count += 1;
            }
        }
        if count == 0 {
            break;
        }
        tau = (sum - a) / count as f64;
    }
    tau
}

fn check_simplex(v: &DVector<f64>, r: f64) -> Result<(), FoldError> {
    util::finite_vec(SIMPLEX, "v", v)?;
    util::finite_scalar(SIMPLEX, "r", r)?;
    if r <= 0.0 {
        return Err(FoldError::primitive(
            SIMPLEX,
            format!("radius r = {r} must be positive"),
        ));
    }
    if v.is_empty() {
        return Err(FoldError::primitive(
            SIMPLEX,
            "infeasible: empty vector with r > 0",
        ));
    }
    Ok(())
}

/// Euclidean projection of `v` onto the simplex `{x ≥ 0, Σx = r}`, `r > 0`:
/// `yᵢ = max(vᵢ − τ, 0)` with τ found in linear time in practice (Condat's algorithm).
///
/// Kinks: a coordinate with `vᵢ = τ` exactly gets `yᵢ = 0` and is treated as *at the
/// bound*: the derivative is the one-sided derivative of the side where it stays at zero,
/// `J = diag(s) − ssᵀ/|S|` with `S = {yᵢ > 0}` and `∂y/∂r = s/|S|` (`s` the indicator of
/// `S`). Returns a NaN-filled vector when `r ≤ 0`, `v` is empty or anything is not finite
/// (see [`try_proj_simplex`]).
pub fn proj_simplex(v: &DVector<f64>, r: f64) -> DVector<f64> {
    try_proj_simplex(v, r).unwrap_or_else(|_| util::nan_vec(v.len()))
}

/// [`proj_simplex`], failing with `NonFinite` on non-finite input and with
/// `PrimitiveFailed` when `r ≤ 0` or `v` is empty.
pub fn try_proj_simplex(v: &DVector<f64>, r: f64) -> Result<DVector<f64>, FoldError> {
    check_simplex(v, r)?;
    let tau = simplex_threshold(v.as_slice(), r);
    let y = v.map(|x| (x - tau).max(0.0));
    // Sums of values near f64::MAX overflow.
    util::finite_vec(SIMPLEX, "the projection", &y)?;
    Ok(y)
}

/// The threshold τ with `Σ clamp(vᵢ − τ, 0, 1) = k`, `0 ≤ k ≤ n`: a scan over the sorted
/// breakpoints `vᵢ − 1` (a coordinate leaves the upper bound) and `vᵢ` (it reaches zero).
fn capped_threshold(v: &[f64], k: f64) -> f64 {
    let n = v.len();
    let mut s = v.to_vec();
    s.sort_unstable_by(f64::total_cmp);
    // Merge the breakpoints sᵢ − 1 (index i into `up`) and sᵢ (index j into `low`).
    let (mut i, mut j) = (0usize, 0usize);
    let (mut n_up, mut n_free, mut free_sum) = (n as f64, 0.0f64, 0.0f64);
    let mut prev = f64::NEG_INFINITY;
    while j < n {
        let t = if i < n && s[i] - 1.0 <= s[j] {
            s[i] - 1.0
        } else {
            s[j]
        };
        // g at the next breakpoint with the sets of the current segment.
        let g = n_up + free_sum - n_free * t;
        if g <= k {
            if n_free > 0.0 {
                return ((n_up + free_sum - k) / n_free).clamp(prev.min(t), t);
            }
            // g is constant (= k) on the segment: any interior τ gives the same y.
            return if prev.is_finite() {
                0.5 * (prev + t)
            } else {
                t - 1.0
            };
        }
        if i < n && s[i] - 1.0 <= s[j] {
            n_up -= 1.0;
            n_free += 1.0;
            free_sum += s[i];
            i += 1;
        } else {
            n_free -= 1.0;
            free_sum -= s[j];
            j += 1;
        }
        prev = t;
    }
    // Unreachable for k ≥ 0 (g = 0 after the last breakpoint); a safe fallback.
    prev
}

fn check_capped(v: &DVector<f64>, k: f64) -> Result<(), FoldError> {
    util::finite_vec(CAPPED, "v", v)?;
    util::finite_scalar(CAPPED, "k", k)?;
    let n = v.len() as f64;
    if !(0.0..=n).contains(&k) {
        return Err(FoldError::primitive(
            CAPPED,
            format!("infeasible: k = {k} outside [0, n = {n}]"),
        ));
    }
    Ok(())
}

/// Euclidean projection of `v` onto the capped simplex `{0 ≤ x ≤ 1, Σx = k}`
/// (`0 ≤ k ≤ n`; for integer `k` the convex hull of the top-k indicators):
/// `yᵢ = clamp(vᵢ − τ, 0, 1)` with τ found by a sorted scan, O(n log n).
///
/// Kinks: a coordinate exactly at a bound (`vᵢ − τ ∈ {0, 1}`) is treated as *at the
/// bound*, so the derivative is `J = diag(f) − ffᵀ/|F|`, `∂y/∂k = f/|F|` on the free set
/// `F = {0 < yᵢ < 1}`, and `0` when `F` is empty (e.g. `k = 0`, `k = n`, or an integral
/// projection). Returns a NaN-filled vector when `k ∉ [0, n]` or anything is not finite
/// (see [`try_proj_capped_simplex`]).
pub fn proj_capped_simplex(v: &DVector<f64>, k: f64) -> DVector<f64> {
    try_proj_capped_simplex(v, k).unwrap_or_else(|_| util::nan_vec(v.len()))
}

/// [`proj_capped_simplex`], failing with `NonFinite` on non-finite input and with
/// `PrimitiveFailed` when `k ∉ [0, n]`.
pub fn try_proj_capped_simplex(v: &DVector<f64>, k: f64) -> Result<DVector<f64>, FoldError> {
    check_capped(v, k)?;
    if v.is_empty() {
        return Ok(DVector::zeros(0));
    }
    let mut tau = capped_threshold(v.as_slice(), k);
    // Recompute τ exactly on the sets it found.
    let (mut n_up, mut n_free, mut free_sum) = (0.0, 0usize, 0.0);
    for &x in v.iter() {
        let d = x - tau;
        if d >= 1.0 {
            n_up += 1.0;
        } else if d > 0.0 {
            n_free += 1;
            free_sum += x;
        }
    }
    if n_free > 0 {
        tau = (free_sum + n_up - k) / n_free as f64;
    }
    let y = v.map(|x| (x - tau).clamp(0.0, 1.0));
    util::finite_vec(CAPPED, "the projection", &y)?;
    Ok(y)
}

/// The Jacobian `diag(s) − ssᵀ/|S|` of a thresholded projection, and `s/|S|` for the
/// scalar that sets the total.
#[derive(Debug, Clone)]
struct Centered {
    support: Vec<usize>,
    n: usize,
}

impl Centered {
    fn mean(&self, u: &DVector<f64>) -> f64 {
        if self.support.is_empty() {
            return 0.0;
        }
        self.support.iter().map(|&i| u[i]).sum::<f64>() / self.support.len() as f64
    }

    fn jvp(&self, dv: Option<&DVector<f64>>, dtotal: f64) -> DVector<f64> {
        let mut out = DVector::zeros(self.n);
        if self.support.is_empty() {
            return out;
        }
        let shift = dtotal / self.support.len() as f64 - dv.map_or(0.0, |d| self.mean(d));
        for &i in &self.support {
            out[i] = dv.map_or(0.0, |d| d[i]) + shift;
        }
        out
    }

    fn vjp(&self, g: &DVector<f64>) -> (DVector<f64>, f64) {
        let mean = self.mean(g);
        let mut dv = DVector::zeros(self.n);
        for &i in &self.support {
            dv[i] = g[i] - mean;
        }
        (dv, mean)
    }
}

macro_rules! centered_lin {
    ($lin:ident, $prim:ident, $name:expr, $try_fn:ident, $val:literal, $scalar:ident,
     $support:literal, $upper:expr) => {
        #[doc = concat!("[`", $val, "`] linearized at `(v, ", stringify!($scalar), ")`:")]
        #[doc = concat!("`J = diag(s) − ssᵀ/|S|` on ", $support, ".")]
        ///
        /// The products index by the argument's length: a (co)tangent of another length
        /// panics (a caller bug); the [`Primitive`] trait's products return NaN instead.
        #[derive(Debug)]
        pub struct $lin {
            y: DVector<f64>,
            centered: Centered,
            outs: OnceLock<[Value; 1]>,
        }

        impl $lin {
            #[doc = concat!("Evaluates at `(v, ", stringify!($scalar), ")`;")]
            #[doc = concat!("fails like [`", stringify!($try_fn), "`].")]
            pub fn new(v: &DVector<f64>, $scalar: f64) -> Result<Self, FoldError> {
                let y = $try_fn(v, $scalar)?;
                let support = (0..y.len())
                    .filter(|&i| y[i] > 0.0 && y[i] < $upper)
                    .collect();
                Ok($lin {
                    centered: Centered {
                        support,
                        n: y.len(),
                    },
                    y,
                    outs: OnceLock::new(),
                })
            }

            /// The projection.
            pub fn value(&self) -> &DVector<f64> {
                &self.y
            }

            /// The free coordinates `S`, increasing.
            pub fn support(&self) -> &[usize] {
                &self.centered.support
            }

            /// The Jacobian's kernel on the support: `I − 11ᵀ/|S|`.
            pub fn kernel(&self) -> SupportKernel {
                SupportKernel::Centered
            }

            #[doc = concat!("`J dv + (s/|S|) d", stringify!($scalar), "`.")]
            pub fn jvp(&self, dv: &DVector<f64>, d: f64) -> DVector<f64> {
                self.centered.jvp(Some(dv), d)
            }

            #[doc = concat!("`(Jᵀ g, ∂y/∂", stringify!($scalar), " · g)`.")]
            pub fn vjp(&self, g: &DVector<f64>) -> (DVector<f64>, f64) {
                self.centered.vjp(g)
            }
        }

        impl LinCore for $lin {
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
                let dv = util::vec_tan($name, t, 0, self.y.len())?;
                let d = util::scalar_tan($name, t, 1)?;
                Ok(vec![Value::Vector(self.centered.jvp(dv, d))])
            }
            fn try_vjp(&self, c: &[Option<Arg<'_>>], _: &[bool]) -> Result<Vec<Value>, FoldError> {
                let n = self.y.len();
                let (dv, d) = match util::vec_tan($name, c, 0, n)? {
                    Some(g) => self.centered.vjp(g),
                    None => (DVector::zeros(n), 0.0),
                };
                Ok(vec![Value::Vector(dv), Value::Scalar(d)])
            }
        }
        impl_linearization!($lin);

        #[doc = concat!("[`", $val, "`] as a [`Primitive`]:")]
        #[doc = concat!("arguments `(v, ", stringify!($scalar), ")`, one output.")]
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $prim;

        impl Primitive for $prim {
            type Linearization = $lin;
            fn name(&self) -> &'static str {
                $name
            }
            fn linearize(&self, args: &[Arg<'_>]) -> Result<$lin, FoldError> {
                util::arity($name, args.len(), 2)?;
                $lin::new(
                    util::vec_arg($name, args, 0)?,
                    util::scalar_arg($name, args, 1)?,
                )
            }
        }
    };
}

centered_lin!(
    ProjSimplexLin,
    ProjSimplex,
    SIMPLEX,
    try_proj_simplex,
    "proj_simplex",
    r,
    "`S = {yᵢ > 0}`",
    f64::INFINITY
);
centered_lin!(
    ProjCappedSimplexLin,
    ProjCappedSimplex,
    CAPPED,
    try_proj_capped_simplex,
    "proj_capped_simplex",
    k,
    "`F = {0 < yᵢ < 1}`",
    1.0
);
