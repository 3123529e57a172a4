//! Snapshots of what the macro derives (`DERIVATIVES`) and generates (`SOURCE`) for
//! representative rules, and the simplifier's flop accounting on them.

use fold_codegen::samples::cases;
use fold_codegen::{rule, try_expand, work};

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
