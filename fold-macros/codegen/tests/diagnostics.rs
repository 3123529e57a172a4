//! Honest diagnostics (issue 14, item 7): `DERIVATIVES` names the seeds as the terms
//! spell them, and the e-graph's stop reason agrees with its iteration count.

use fold_codegen::{rule, try_expand};
use quote::quote;

#[test]
fn derivatives_headers_use_the_cotangent_name_when_the_state_is_v() {
    let attr = quote!(state = v, params(c));
    let item = quote! {
        fn step(v: &DVector<f64>, c: &DVector<f64>, u: &DMatrix<f64>) -> DVector<f64> {
            u * v * 0.5 + c
        }
    };
    let e = try_expand(attr, item).unwrap();
    let d = &e.derivatives;
    // The state is `v` and a constant is `u`: the seeds are `v_` and `u_`.
    assert!(d.contains("Φᵀv_ = "), "{d}");
    assert!(d.contains("Ψ_cᵀv_ = "), "{d}");
    assert!(d.contains("Φu_ = "), "{d}");
    assert!(!d.contains("Φᵀv ="), "{d}");

    // An ordinary state keeps `v` and `u`.
    let e = try_expand(
        quote!(state = x, params(c)),
        quote! {
            fn step(x: &DVector<f64>, c: &DVector<f64>) -> DVector<f64> { x * 0.5 + c }
        },
    )
    .unwrap();
    assert!(e.derivatives.contains("Φᵀv = "), "{}", e.derivatives);
    assert!(e.derivatives.contains("Φu = "), "{}", e.derivatives);
}

#[test]
fn stop_reason_agrees_with_the_iterations() {
    let item: syn::ItemFn = syn::parse2(quote! {
        fn step(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
            let grad = q * x + c;
            proj_box(&(x - grad * alpha), 0.0, 1.0)
        }
    })
    .unwrap();
    let analyzed = rule::analyze(quote!(state = x, params(c)), &item).unwrap();
    let (_, report) = fold_codegen::egraph::simplify(&analyzed);
    assert!(report.iterations > 0);
    // Either every phase saturated, or the limit named is one of a phase.
    assert!(
        report.stop_reason == "saturated" || report.stop_reason.contains(" phase: "),
        "{}",
        report.stop_reason
    );
}
