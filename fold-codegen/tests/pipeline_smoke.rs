use quote::quote;

#[test]
fn boxqp_source_prints() {
    let e = fold_codegen::try_expand(
        quote!(state = x, params(c)),
        quote! {
            fn pgd_step(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
                let grad = q * x + c;
                proj_box(&(x - grad * alpha), 0.0, 1.0)
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    println!("{}\n{}", e.derivatives, e.source);
}
