//! Differentiable primitives an update rule may call.
//!
//! Every primitive comes as a value function (`proj_simplex(&v, r)`), a fallible variant
//! (`try_proj_simplex`) that reports infeasible or non-finite input as a [`crate::FoldError`]
//! (the value function then returns NaN, never panics), a linearization
//! (`ProjSimplexLin`) holding what its Jacobian products need, and a unit struct
//! implementing [`crate::Primitive`] (`ProjSimplex`) for the uniform interface.
//!
//! Kink conventions (the one-sided derivative each primitive uses):
//!
//! | primitive | at the kink |
//! |---|---|
//! | `clamp`, `proj_box`, `relu`, `max`, `min`, `proj_nonneg` | a tie with a bound is *at the bound*: `∂/∂x = 0`, the bound gets the derivative |
//! | `soft_threshold(v, t)` | `\|vᵢ\| = t` is thresholded: derivative 0 |
//! | `proj_simplex(v, r)` | `vᵢ = τ` gives `yᵢ = 0`, outside the support `S = {y > 0}` |
//! | `proj_capped_simplex(v, k)` | `yᵢ ∈ {0, 1}` is outside the free set `F = {0 < y < 1}`; `F = ∅` gives 0 |
//! | `proj_l2_ball(v, r)` | `‖v‖ = r` counts as inside: `J = I`, `∂y/∂r = 0` |
//! | `proj_polyhedron`, `qp_solve` | a weakly active constraint (zero dual) counts as inactive; degenerate active sets use the KKT pseudo-inverse ([`qp`]) |
//! | `v.max()`, `v.min()` | the first maximal (minimal) entry gets the derivative 1, every other 0 ([`reduce`]) |
//! | `softmax`, `log_sum_exp`, `proj_hyperplane`, `proj_affine`, `linsolve` | smooth (`linsolve`: a singular matrix is an error, never a number) |
//!
//! Removable kinks of the rule language (a rule differentiable at a point gets its
//! derivative there; the guarded reciprocal is [`recip0`], `1/0 := 0`):
//!
//! | construct | at the kink |
//! |---|---|
//! | `.norm()` | `∂‖v‖ = vᵀ/‖v‖` is `0` at `v = 0` (so `g / (1 + ‖g‖)` has derivative `I` at `g = 0`, and `‖v‖ v` has `0`) |
//! | `.sqrt()`, `sqrt(v)` | `sqrt'(0) := 0` (so `(v·v).sqrt()` behaves like `.norm()`; `sqrt(x²)` like `abs`) |
//! | `.powf(c)` | `∂xᶜ/∂x = c xᶜ/x`, `0` at `x = 0`: exact for `c > 1`, the convention for `c < 1` (infinite slope), wrong only for a non-literal `c` equal to 1 at `x = 0`; a literal `c ≥ 1` uses `c x^(c−1)` (exact everywhere) |
//! | `.abs()`, `abs(v)` | `sign(0) = 0` |
//!
//! Domain checks (`lo ≤ hi`, `t ≥ 0`, `r ≥ 0`, `r > 0` for the simplex, `0 ≤ k ≤ n`)
//! apply wherever a primitive is evaluated or linearized: see [`domain`].

pub mod domain;
pub mod elementwise;
mod kkt;
pub mod linsolve;
pub mod mask;
pub mod polyhedron;
pub mod projections;
pub mod qp;
pub mod reduce;
pub mod simplex;
pub mod softmax;
pub(crate) mod util;

pub use elementwise::*;
pub use linsolve::*;
pub use polyhedron::*;
pub use projections::*;
pub use qp::*;
pub use reduce::*;
pub use simplex::*;
pub use softmax::*;
