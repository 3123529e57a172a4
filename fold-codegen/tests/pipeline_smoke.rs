use fold_codegen::pretty::Printer;
use fold_codegen::rule::analyze;
use quote::quote;

#[test]
fn boxqp_derivatives_print() {
    let item: syn::ItemFn = syn::parse2(quote! {
        fn pgd_step(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
            let grad = q * x + c;
            proj_box(&(x - grad * alpha), 0.0, 1.0)
        }
    }).unwrap();
    let rule = analyze(quote!(state = x, params(c)), &item).unwrap();
    let mut roots = vec![];
    roots.extend(rule.vjp_state.iter().flatten());
    roots.extend(rule.vjp_params.iter().flatten());
    roots.extend(rule.jvp_state.iter().flatten());
    roots.extend(rule.jvp_params.iter().flatten());
    let p = Printer::new(&rule.graph, &roots);
    for d in p.definitions(&roots) { println!("{d}"); }
    for r in &roots { println!("{}", p.term(*r)); }
    println!("{:?}", rule.dim_checks);
}
