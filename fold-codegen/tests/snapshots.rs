//! Snapshots of what the macro derives (`DERIVATIVES`) and generates (`SOURCE`) for
//! representative rules, and the simplifier's flop accounting on them.

use fold_codegen::{rule, try_expand, work};
use proc_macro2::TokenStream;
use quote::quote;

struct Case {
    name: &'static str,
    attr: TokenStream,
    item: TokenStream,
}

fn cases() -> Vec<Case> {
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
    ]
}

#[test]
fn derivatives_and_sources() {
    let mut strictly_lower = 0;
    for case in cases() {
        let item: syn::ItemFn = syn::parse2(case.item.clone()).unwrap();
        let analyzed = rule::analyze(case.attr.clone(), &item)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let before = work(&analyzed).0;
        let (simplified, _) = fold_codegen::egraph::simplify(&analyzed);
        let after = work(&simplified).0;
        let flops = |c: [usize; 4], n: f64| {
            c[0] as f64 + c[1] as f64 * n + c[2] as f64 * n * n + c[3] as f64 * n * n * n
        };
        let (b, a) = (flops(before, 1e4), flops(after, 1e4));
        assert!(
            a <= b,
            "{}: flops went up: {before:?} -> {after:?}",
            case.name
        );
        if a < b {
            strictly_lower += 1;
        }
        let e = try_expand(case.attr, case.item).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let header = format!(
            "Φᵀv work [scalar, vector, matvec, matmul]: before {before:?}, after {after:?}\n\n"
        );
        insta::assert_snapshot!(
            format!("{}_derivatives", case.name),
            format!("{header}{}", e.derivatives)
        );
        // The expansion time varies run to run; everything else is deterministic.
        let source: String = e
            .source
            .lines()
            .map(|l| {
                if l.contains("expansion_micros") {
                    "        expansion_micros: <elided>,"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        insta::assert_snapshot!(format!("{}_source", case.name), source);
    }
    assert!(
        strictly_lower >= 4,
        "only {strictly_lower} rules got cheaper"
    );
}
