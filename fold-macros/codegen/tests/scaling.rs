//! Expansion work grows linearly with the depth of a rule (counted, not timed).

use fold_codegen::egraph::Budget;
use fold_codegen::rule;
use fold_codegen::samples::{chained, wide};
use fold_codegen::try_expand;

fn analyze(attr: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> rule::Rule {
    let func: syn::ItemFn = syn::parse2(item).expect("parses");
    rule::analyze(attr, &func).expect("analyzes")
}

/// Ratio of successive differences: 1 for a linear sequence, 2 when it doubles per step.
fn growth(values: &[usize]) -> Vec<f64> {
    let d: Vec<f64> = values
        .windows(2)
        .map(|w| w[1] as f64 - w[0] as f64)
        .collect();
    d.windows(2).map(|w| w[1] / w[0]).collect()
}

#[test]
fn reduction_visits_each_term_once() {
    // k = 8, 16, 24, 32: equal steps in k, so a linear count has equal differences.
    let ks = [8usize, 16, 24, 32];
    let visited: Vec<usize> = ks
        .iter()
        .map(|&k| {
            let (attr, item) = chained(k);
            let r = analyze(attr, item);
            r.reduction.expect("ends in proj_box").restricted
        })
        .collect();
    for g in growth(&visited) {
        assert!(
            (0.8..1.25).contains(&g),
            "restriction work {visited:?} is not linear in k"
        );
    }
    // A constant number of terms per step.
    assert!(visited[3] < 40 * 32, "{visited:?}");
}

#[test]
fn dag_and_generated_code_grow_linearly() {
    let ks = [8usize, 16, 24, 32];
    let mut nodes = Vec::new();
    let mut lines = Vec::new();
    for &k in &ks {
        let (attr, item) = chained(k);
        nodes.push(analyze(attr.clone(), item.clone()).graph.len());
        let e = try_expand(attr, item).expect("expands");
        lines.push(e.source.lines().filter(|l| !l.trim().is_empty()).count());
    }
    for g in growth(&nodes) {
        assert!((0.9..1.1).contains(&g), "DAG sizes {nodes:?}");
    }
    // Lines per step stay within a band: how much the e-graph simplifies varies with the
    // budget, but no step costs more than a constant.
    let per_step: Vec<f64> = lines
        .iter()
        .zip(ks)
        .map(|(l, k)| *l as f64 / k as f64)
        .collect();
    for p in &per_step {
        assert!(
            (0.75..1.3).contains(&(p / per_step[0])),
            "SOURCE lines {lines:?}"
        );
    }
}

#[test]
fn saturation_budget_scales_with_the_rule_and_is_reported() {
    let small = Budget::for_input(100);
    let large = Budget::for_input(10_000);
    assert!(large.work > 50 * small.work / 10, "{small:?} {large:?}");
    // A deep rule stops at its budget and says so; the small sample rules saturate.
    let (attr, item) = chained(32);
    let e = try_expand(attr, item).expect("expands");
    assert!(
        e.source.contains("work budget"),
        "STATS must name the limit hit"
    );
    let (attr, item) = wide(2);
    let e = try_expand(attr, item).expect("expands");
    assert!(e.source.contains("stop_reason: \"saturated\""));
}
