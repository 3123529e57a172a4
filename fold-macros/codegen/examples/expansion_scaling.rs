//! Expansion time against rule size: `k` chained projected-gradient steps of the nonconvex
//! box-QP, and a wide rule of `k` independent terms.
//!
//! ```sh
//! cargo run -p fold-codegen --example expansion_scaling            # the macro unoptimized
//! cargo run -p fold-codegen --example expansion_scaling --release  # the macro optimized
//! ```
//! Prints one row per rule (total time, e-graph time, generated-source lines) and writes
//! `--json FILE` when asked.

use fold_codegen::samples::{chained, wide};
use fold_codegen::{rule, try_expand};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1));
    let max: usize = args
        .iter()
        .position(|a| a == "--max")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    println!("profile: {profile}");
    println!("| rule | k | DAG nodes | expansion | analyze | e-graph | SOURCE lines | stop |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for (name, build) in [("chained", chained as fn(usize) -> _), ("wide", wide)] {
        for k in [1usize, 2, 4, 8, 12, 16, 24, 32, 48, 64]
            .into_iter()
            .filter(|&k| k <= max)
        {
            let (attr, item) = build(k);
            let t = Instant::now();
            let func: syn::ItemFn = syn::parse2(item.clone()).expect("parses");
            let analyzed = rule::analyze(attr.clone(), &func).expect("analyzes");
            let analyze = t.elapsed().as_secs_f64();
            let nodes = analyzed.graph.len();
            let t = Instant::now();
            let e = try_expand(attr, item).expect("expands");
            let total = t.elapsed().as_secs_f64();
            let lines = e.source.lines().filter(|l| !l.trim().is_empty()).count();
            let stats = e
                .source
                .lines()
                .find(|l| l.contains("stop_reason"))
                .unwrap_or("");
            let stop = stats.split('"').nth(1).unwrap_or("?").to_string();
            let egraph = e
                .source
                .lines()
                .find(|l| l.contains("egraph_micros"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| {
                    s.trim()
                        .trim_end_matches(',')
                        .trim_end_matches("u64")
                        .trim_end_matches("usize")
                        .to_string()
                })
                .unwrap_or_default();
            println!(
                "| {name} | {k} | {nodes} | {:.1} ms | {:.1} ms | {egraph} | {lines} | {stop} |",
                total * 1e3,
                analyze * 1e3
            );
            let ph: Vec<String> = e
                .phases
                .iter()
                .map(|(n, d)| format!("{n} {:.1}", d.as_secs_f64() * 1e3))
                .collect();
            println!("    {}", ph.join(", "));
            rows.push(format!(
                "{{\"rule\":\"{name}\",\"k\":{k},\"profile\":\"{profile}\",\"nodes\":{nodes},\"expansion_s\":{total},\"analyze_s\":{analyze},\"source_lines\":{lines}}}"
            ));
        }
    }
    if let Some(path) = json {
        std::fs::write(path, format!("{{\"results\":[{}]}}\n", rows.join(","))).expect("writes");
    }
}
