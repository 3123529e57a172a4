//! Expansion time against rule size: `k` chained projected-gradient steps of the nonconvex
//! box-QP, and a wide rule of `k` independent terms.
//!
//! ```sh
//! cargo run -p fold-codegen --example expansion_scaling            # the macro unoptimized
//! cargo run -p fold-codegen --example expansion_scaling --release  # the macro optimized
//! ```
//! Prints one row per rule (total time, e-graph time, generated-source lines) and writes
//! `--json FILE` when asked.

use fold_codegen::{rule, try_expand};
use proc_macro2::TokenStream;
use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Instant;

/// `k` chained steps `y_{i+1} = proj_box(y_i − α(Q y_i + c ⊙ cos y_i), −1, 1)`.
pub fn chained(k: usize) -> (TokenStream, TokenStream) {
    let mut body = String::new();
    for i in 0..k {
        writeln!(
            body,
            "let y{n} = proj_box(&(&y{i} - (q * &y{i} + c.component_mul(&cos(&y{i}))) * alpha), -1.0, 1.0);",
            n = i + 1
        )
        .unwrap();
    }
    let item = format!(
        "fn chain(y0: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {{ {body} y{k} }}"
    );
    (
        TokenStream::from_str("state = y0, params(c)").unwrap(),
        TokenStream::from_str(&item).unwrap(),
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
        TokenStream::from_str(&format!("state = x, params(s, {})", params.join(", "))).unwrap(),
        TokenStream::from_str(&item).unwrap(),
    )
}

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
