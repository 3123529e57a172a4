//! Prints the expansion of a rule: a debugging aid kept as a smoke test.
use quote::quote;

#[test]
fn rule_expands() {
    let e = fold_codegen::try_expand(
        quote!(state = x, params(b, lam)),
        quote! {
            fn ista(x: &DVector<f64>, b: &DVector<f64>, lam: f64, a: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
                soft_threshold(&(x - a.transpose() * (a * x - b) * alpha), lam * alpha)
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    println!("{}\n{}", e.derivatives, e.source);
}
