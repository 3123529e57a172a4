//! Prints the expansion of a rule given in `FOLD_RULE` (or the box-QP step): a debugging aid.
use quote::quote;

#[test]
fn boxqp_source_prints() {
    let e = fold_codegen::try_expand(
        quote!(state = x, params(lambda, y)),
        quote! {
            fn ridge_step(x: &DVector<f64>, lambda: f64, y: &DVector<f64>, a: &DMatrix<f64>, eta: f64) -> DVector<f64> {
                let residual = a * x - y;
                x - (a.transpose() * residual + x * lambda) * eta
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    println!("{}\n{}", e.derivatives, e.source);
}
