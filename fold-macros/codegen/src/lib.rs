//! The `#[fold]` pipeline, as a library; the folders are its stages, in order:
//!
//! ```text
//! front/    the attribute and the signature parsed and validated; the body lowered to IR
//! ir/       the typed terms (one egg language), the DAG, dimension checks, the builtins
//! diff/     one table of local partials; VJP, JVP, structured Jacobians, reduced systems
//! egraph/   equality saturation and extraction of the cheapest terms
//! stage/    what is computed once per linearization vs per product
//! emit/     Rust tokens calling ::fold_runtime: the generated module; DERIVATIVES text
//! ```
//!
//! `rule.rs` builds the rule's model once (read by every later stage); `errors.rs` collects
//! spanned errors; `interp.rs` and `samples.rs` (feature `testing`) evaluate IR terms and
//! hold sample rules for tests and benchmarks.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod diff;
pub mod egraph;
pub mod emit;
pub mod errors;
pub mod front;
#[cfg(feature = "testing")]
pub mod interp;
pub mod ir;
pub mod rule;
#[cfg(feature = "testing")]
pub mod samples;
pub mod stage;

use proc_macro2::TokenStream;
use quote::quote;
use std::time::Instant;

/// The result of expanding one rule, for tests and benchmarks.
pub struct Expansion {
    /// The original function followed by the generated module.
    pub tokens: TokenStream,
    /// The `DERIVATIVES` text.
    pub derivatives: String,
    /// The generated module, pretty-printed (the `SOURCE` text).
    pub source: String,
    /// Wall time of each stage, in pipeline order.
    pub phases: Vec<(&'static str, std::time::Duration)>,
}

/// Expands `#[fold(attr)] item`; errors become `compile_error!` at their spans.
pub fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    match try_expand(attr, item.clone()) {
        Ok(e) => e.tokens,
        Err(err) => errors::fallback(&item, err),
    }
}

/// Expands, returning the pieces or the collected errors.
pub fn try_expand(attr: TokenStream, item: TokenStream) -> syn::Result<Expansion> {
    let start = Instant::now();
    let mut phases = Vec::new();
    let mut lap = Instant::now();
    let mut mark = |name: &'static str| {
        phases.push((name, lap.elapsed()));
        lap = Instant::now();
    };
    let func = errors::parse_function(item.clone())?;
    let rule = rule::analyze(attr, &func)?;
    mark("analyze");
    let before = work(&rule);
    let (rule, report) = egraph::simplify(&rule);
    let after = work(&rule);
    mark("egraph");
    let derivatives = emit::pretty::derivatives(&rule);
    mark("derivatives");
    let counts = |c: [usize; 4]| {
        let [s, v, mv, mm] = c.map(proc_macro2::Literal::usize_unsuffixed);
        quote!(OpCounts::new(#s, #v, #mv, #mm))
    };
    let (vb, lb, va, la) = (
        counts(before.0),
        counts(before.1),
        counts(after.0),
        counts(after.1),
    );
    let [nodes, classes, iterations] = [report.nodes, report.classes, report.iterations]
        .map(proc_macro2::Literal::usize_unsuffixed);
    let stop = report.stop_reason.clone();
    let reduced = rule.reduction.is_some();
    let note = work_note(before, after);
    let stats_of = |micros: u64| {
        let micros = proc_macro2::Literal::u64_unsuffixed(micros);
        quote!(CodegenStats {
            egraph_nodes: #nodes,
            egraph_classes: #classes,
            iterations: #iterations,
            stop_reason: #stop,
            vjp_before: #vb,
            vjp_after: #va,
            linearize_before: #lb,
            linearize_after: #la,
            reduced: #reduced,
            note: #note,
            expansion_micros: #micros,
        })
    };
    let input = emit::module::ModuleInput {
        rule: &rule,
        derivatives: derivatives.clone(),
    };
    let module = emit::module::module(&input)?;
    mark("module");
    let stats = |micros: u64| {
        let s = stats_of(micros);
        quote! {
            /// What the macro did at compile time.
            pub const STATS: CodegenStats = #s;
        }
    };
    let source = pretty_source(&module.with_tail(stats(0)), &module.rule_text);
    mark("pretty");
    let micros = start.elapsed().as_micros() as u64;
    let source_item = quote! {
        /// The generated code of this module, pretty-printed.
        pub const SOURCE: &str = #source;
    };
    let tail = stats(micros);
    let module = module.with_tail(quote!(#tail #source_item));
    mark("assemble");
    // The function is the forward step: referenced so that a rule used only through its
    // module does not warn as dead code.
    let name = &func.sig.ident;
    let used = quote!(const _: () = { let _ = #name; };);
    Ok(Expansion {
        tokens: quote!(#func #used #module),
        derivatives,
        source,
        phases,
    })
}

/// Work of one `Φᵀv` (per-call part of the state VJP) and of one linearization (the
/// seed-free part of every product).
pub fn work(rule: &rule::Rule) -> ([usize; 4], [usize; 4]) {
    let vjp: Vec<egg::Id> = rule.vjp_state.iter().flatten().copied().collect();
    let (per_call, _) = egraph::op_counts(&rule.graph, &vjp);
    let all: Vec<egg::Id> = rule.product_roots().collect();
    let (_, once) = egraph::op_counts(&rule.graph, &all);
    (per_call, once)
}

/// Why per-linearization work grew in simplification, when it did: the cost model weighs
/// per-product work [`egraph::cost::PER_CALL_WEIGHT`] times more, so it moves work out of
/// the products into the linearization (flops compared at `n =` [`egraph::cost::N`]).
fn work_note(before: ([usize; 4], [usize; 4]), after: ([usize; 4], [usize; 4])) -> String {
    let w = egraph::cost::weight;
    let (lb, la) = (w(before.1), w(after.1));
    if la <= lb {
        return String::new();
    }
    let (vb, va) = (w(before.0), w(after.0));
    let counts = |c: [usize; 4]| {
        format!(
            "{} scalar, {} vector, {} matvec, {} matmul",
            c[0], c[1], c[2], c[3]
        )
    };
    let (l0, l1) = (counts(before.1), counts(after.1));
    if va < vb {
        let (v0, v1) = (counts(before.0), counts(after.0));
        format!(
            "per-linearization work grew ({l0} → {l1}) to cut the work of each product ({v0} → {v1}): a product counts {}× a linearization",
            egraph::cost::PER_CALL_WEIGHT
        )
    } else {
        format!(
            "per-linearization work grew ({l0} → {l1}) with no gain per product: the saturation budget stopped before a cheaper form was found"
        )
    }
}

/// The module pretty-printed with prettyplease.
///
/// Inside a proc macro every token of a `TokenStream` lives in the compiler, and parsing
/// one reads it a token at a time across the proc-macro bridge; the module is instead
/// turned into text once and parsed in-process by proc-macro2's own implementation.
/// Nothing built while that is forced leaves this function (only the `String` does).
fn pretty_source(module: &TokenStream, rule_text: &str) -> String {
    let text = module.to_string();
    proc_macro2::fallback::force();
    let pretty = match syn::parse_file(&text) {
        Ok(file) => with_rule_text(prettyplease::unparse(&file), rule_text),
        Err(_) => text,
    };
    proc_macro2::fallback::unforce();
    pretty
}

/// `pretty` with its `rule! { … }` call replaced by `rule_text`.
fn with_rule_text(pretty: String, rule_text: &str) -> String {
    const OPEN: &str = "\n    rule! {\n";
    const CLOSE: &str = "\n    }\n";
    let Some(start) = pretty.find(OPEN) else {
        return pretty;
    };
    let Some(len) = pretty[start + OPEN.len()..].find(CLOSE) else {
        return pretty;
    };
    let end = start + OPEN.len() + len + CLOSE.len();
    format!("{}\n{rule_text}{}", &pretty[..start], &pretty[end..])
}
