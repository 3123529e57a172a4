//! Representative update rules, shared by the snapshot tests and the expansion benchmark.

use proc_macro2::TokenStream;
use quote::quote;
use std::fmt::Write as _;
use std::str::FromStr;

/// A rule: its name, attribute and function.
pub struct Case {
    /// A short name.
    pub name: &'static str,
    /// The attribute's tokens.
    pub attr: TokenStream,
    /// The annotated function.
    pub item: TokenStream,
}

/// The representative rules.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "box_qp_pgd",
            attr: quote!(state = x, params(c)),
            item: quote! {
                fn pgd_step(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
                    let grad = q * x + c;
                    proj_box(&(x - grad * alpha), 0.0, 1.0)
                }
            },
        },
        Case {
            name: "nonconvex_box_qp",
            attr: quote!(state = x, params(p)),
            item: quote! {
                fn p2_step(x: &DVector<f64>, p: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
                    proj_box(&(x - (q * x + p.component_mul(&cos(x))) * alpha), -1.0, 1.0)
                }
            },
        },
        Case {
            name: "simplex_mean_variance",
            attr: quote!(state = x, params(mu)),
            item: quote! {
                fn p3_step(x: &DVector<f64>, mu: &DVector<f64>, sigma: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
                    proj_simplex(&(x - (sigma * x - mu) * alpha), 1.0)
                }
            },
        },
        Case {
            name: "tv_denoising_dual",
            attr: quote!(state = p, params(y)),
            item: quote! {
                fn tv_dual(p: &DVector<f64>, y: &DVector<f64>, d: &CsrMatrix<f64>, alpha: f64, lam: f64) -> DVector<f64> {
                    clamp(&(p - d * (d.transpose() * p - y) * alpha), -lam, lam)
                }
            },
        },
        Case {
            name: "ridge_gd",
            attr: quote!(state = x, params(lambda, y)),
            item: quote! {
                fn ridge_step(x: &DVector<f64>, lambda: f64, y: &DVector<f64>, a: &DMatrix<f64>, eta: f64) -> DVector<f64> {
                    let residual = a * x - y;
                    x - (a.transpose() * residual + x * lambda) * eta
                }
            },
        },
        Case {
            name: "lasso_ista",
            attr: quote!(state = x, params(b, lam)),
            item: quote! {
                fn ista(x: &DVector<f64>, b: &DVector<f64>, lam: f64, a: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
                    let grad = a.transpose() * (a * x - b);
                    soft_threshold(&(x - grad * alpha), lam * alpha)
                }
            },
        },
        Case {
            name: "tanh_equilibrium",
            attr: quote!(state = z, params(theta, b)),
            item: quote! {
                fn deq(z: &DVector<f64>, theta: &DVector<f64>, b: &DVector<f64>, w: &DMatrix<f64>, u: &DMatrix<f64>) -> DVector<f64> {
                    tanh(&(w * z + u * theta + b))
                }
            },
        },
        Case {
            name: "heavy_ball_two_blocks",
            attr: quote!(state = (x, y), params(c)),
            item: quote! {
                fn heavy_ball(x: &DVector<f64>, y: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64, beta: f64) -> (DVector<f64>, DVector<f64>) {
                    let x_new = y - (q * y + c) * alpha;
                    let y_new = &x_new + (&x_new - x) * beta;
                    (x_new, y_new)
                }
            },
        },
        Case {
            name: "logistic_map_rule",
            attr: quote!(state = x, params(w)),
            item: quote! {
                fn smooth(x: &DVector<f64>, w: &DVector<f64>, a: &DMatrix<f64>, eta: f64) -> DVector<f64> {
                    let s = (a * x).map(|e| 1.0 / (1.0 + (-e).exp()));
                    x - (a.transpose() * (s - w) + x * 0.1) * eta - x * (eta * 0.0)
                }
            },
        },
        Case {
            name: "stein_matrix_state",
            attr: quote!(state = x, params(a, q)),
            item: quote! {
                fn stein(x: &DMatrix<f64>, a: &DMatrix<f64>, q: &DMatrix<f64>) -> DMatrix<f64> {
                    a * x * a.transpose() + q
                }
            },
        },
    ]
}

/// `k` chained steps `y_{i+1} = proj_box(y_i − α(Q y_i + c ⊙ cos y_i), −1, 1)`.
/// (for the scaling benchmark and tests: the DAG grows linearly in `k`).
pub fn chained(k: usize) -> (TokenStream, TokenStream) {
    let mut body = String::new();
    for i in 0..k {
        writeln!(
            body,
            "let y{n} = proj_box(&(&y{i} - (q * &y{i} + c.component_mul(&cos(&y{i}))) * alpha), -1.0, 1.0);",
            n = i + 1
        )
        .expect("writes to a String");
    }
    let item = format!(
        "fn chain(y0: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {{ {body} y{k} }}"
    );
    (
        TokenStream::from_str("state = y0, params(c)").expect("well-formed tokens"),
        TokenStream::from_str(&item).expect("well-formed tokens"),
    )
}

/// A rule of `k` independent terms `a_i ⊙ tanh(x) * s_i` summed.
pub fn wide(k: usize) -> (TokenStream, TokenStream) {
    let args: String = (0..k).map(|i| format!(", a{i}: &DVector<f64>")).collect();
    let terms: Vec<String> = (0..k)
        .map(|i| format!("a{i}.component_mul(&tanh(&(x * {}.0))) * s", i + 1))
        .collect();
    let item = format!(
        "fn wide(x: &DVector<f64>, s: f64{args}) -> DVector<f64> {{ let z = {}; z * 0.5 }}",
        terms.join(" + ")
    );
    let params: Vec<String> = (0..k).map(|i| format!("a{i}")).collect();
    (
        TokenStream::from_str(&format!("state = x, params(s, {})", params.join(", ")))
            .expect("well-formed tokens"),
        TokenStream::from_str(&item).expect("well-formed tokens"),
    )
}
