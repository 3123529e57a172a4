//! Rejections of `#[fold]`: every error of a rule is reported at once, on the offending
//! code, and no input makes the macro panic. The sources are parsed from strings so that
//! spans carry line and column (proc-macro2's `span-locations`).

use fold_codegen::{expand, try_expand};
use proc_macro2::TokenStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::str::FromStr;

fn tokens(src: &str) -> TokenStream {
    TokenStream::from_str(src).unwrap_or_else(|e| panic!("bad test source {src}: {e}"))
}

/// One reported error: message, line and column of its start (1-based line).
#[derive(Debug)]
struct Reported {
    message: String,
    line: usize,
    column: usize,
}

fn errors(attr: &str, item: &str) -> Vec<Reported> {
    match try_expand(tokens(attr), tokens(item)) {
        Ok(_) => panic!("accepted:\n#[fold({attr})]\n{item}"),
        Err(e) => e
            .into_iter()
            .map(|e| {
                let start = e.span().start();
                Reported {
                    message: e.to_string(),
                    line: start.line,
                    column: start.column,
                }
            })
            .collect(),
    }
}

/// The 1-based line of the first line of `src` containing `needle`.
fn line_of(src: &str, needle: &str) -> usize {
    src.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not in source"))
        + 1
}

#[test]
fn every_body_error_is_reported_at_once_on_its_own_line() {
    let item = r#"
fn step(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
    let g = q * x + c;
    let first = g[0];
    let step = if first > 0.0 { alpha } else { 0.5 * alpha };
    let h = shrink(&g);
    let w = x * c;
    (x - h * step + w).normalize()
}
"#;
    let all = errors("state = x, params(c)", item);
    let expect = [
        ("g[0]", "indexing is not supported"),
        ("if first", "`if` is not supported"),
        ("shrink(&g)", "unknown function `shrink`"),
        ("x * c", "`*` between two vectors is not defined"),
        ("normalize", "unsupported method `.normalize()`"),
    ];
    assert_eq!(all.len(), expect.len(), "{all:#?}");
    for (e, (needle, message)) in all.iter().zip(expect) {
        assert!(e.message.contains(message), "{e:?} should say {message}");
        assert_eq!(
            e.line,
            line_of(item, needle),
            "{e:?} should point at `{needle}`"
        );
    }
    // The index error underlines the indexing expression itself.
    let index_line = item.lines().nth(all[0].line - 1).unwrap();
    assert_eq!(&index_line[all[0].column..all[0].column + 4], "g[0]");
}

#[test]
fn a_failed_let_does_not_cascade_into_unknown_names() {
    let item = r#"
fn step(x: &DVector<f64>, c: &DVector<f64>) -> DVector<f64> {
    let first = x[0];
    let half = |v: &DVector<f64>| v * 0.5;
    half(&(x * first + c))
}
"#;
    let all = errors("state = x, params(c)", item);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(
        all.iter().all(|e| !e.message.contains("cannot find")),
        "{all:#?}"
    );
    assert!(
        all.iter().all(|e| !e.message.contains("unknown function")),
        "{all:#?}"
    );
}

#[test]
fn every_attribute_error_is_reported_at_once() {
    let all = errors(
        "state(x), param(c), primitives = f",
        "fn step(x: &DVector<f64>, c: &DVector<f64>) -> DVector<f64> { x + c }",
    );
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(all[0].message.contains("`state = x`"), "{all:#?}");
    assert!(
        all[1].message.contains("did you mean `params`?"),
        "{all:#?}"
    );
    assert!(all[2].message.contains("primitives(f"), "{all:#?}");
    let columns: Vec<usize> = all.iter().map(|e| e.column).collect();
    assert_eq!(columns, [0, 10, 20], "each error starts at its own key");
}

#[test]
fn every_signature_error_is_reported_at_once() {
    let item = r#"
fn step<T>(x: &mut DVector<f64>, c: Vec<f64>, q: DMatrix<f32>, alpha: f32) -> DVector<f64> {
    x + c
}
"#;
    let all = errors("state = x, params(c, d)", item);
    let messages: Vec<&str> = all.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(all.len(), 6, "{messages:#?}");
    assert!(messages[0].contains("cannot be generic"));
    assert!(messages[1].contains("`&mut` arguments are not supported"));
    assert!(messages[2].contains("`Vec` arguments are not supported"));
    assert!(messages[3].contains("`DMatrix` arguments must hold f64"));
    assert!(messages[4].contains("`f32` arguments are not supported"));
    // `x` and `c` were rejected for their types: naming them is not a second error.
    assert!(messages[5].contains("`d` is not an argument of `step`"));
    // Type errors on the signature's line, the unknown parameter in the attribute.
    let lines: Vec<usize> = all.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 2, 2, 2, 2, 1]);
}

#[test]
fn state_and_param_name_errors_suggest_the_argument() {
    let item = "fn step(iterate: &DVector<f64>, weights: &DVector<f64>) -> DVector<f64> { iterate + weights }";
    let all = errors("state = itreate, params(wieghts)", item);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(
        all[0]
            .message
            .contains("`itreate` is not an argument of `step` (did you mean `iterate`?)"),
        "{all:#?}"
    );
    assert!(
        all[1].message.contains("(did you mean `weights`?)"),
        "{all:#?}"
    );
    assert_eq!((all[0].column, all[1].column), (8, 24));
    // The state is not offered as a parameter.
    let all = errors("state = iterate, params(wieghts)", item);
    assert!(
        all[0].message.ends_with("one of its arguments: `weights`"),
        "{all:#?}"
    );
}

#[test]
fn block_state_arity_errors_point_at_the_tail() {
    let item = r#"
fn sweep(x: &DVector<f64>, z: &DVector<f64>) -> (DVector<f64>, DVector<f64>) {
    let y = x + z;
    (y.clone(), x.dot(z) * 1.0)
}
"#;
    let all = errors("state = (x, z)", item);
    assert_eq!(all.len(), 1, "{all:#?}");
    assert!(
        all[0].message.contains("the state block `z`, a vector"),
        "{all:#?}"
    );
    assert_eq!(all[0].line, 4);
    assert_eq!(
        all[0].column, 16,
        "points at the second element of the tuple"
    );

    let item =
        "fn sweep(x: &DVector<f64>, z: &DVector<f64>) -> (DVector<f64>, DVector<f64>) { x + z }";
    let all = errors("state = (x, z)", item);
    assert!(
        all[0].message.contains("must return a tuple of 2 vectors"),
        "{all:#?}"
    );
}

/// Inputs that once risked a panic in the pipeline (or look like they might): each must be
/// accepted or rejected with errors, and `expand` must produce tokens either way.
#[test]
fn no_input_makes_the_macro_panic() {
    let cases: &[(&str, &str)] = &[
        ("state = x", "fn f() {}"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> {}"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { ; }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { { } }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { let y; y }"),
        ("state = x", "struct S { x: f64 }"),
        ("state = x", "enum E { A }"),
        ("state = x", "mod m {}"),
        ("state = x", "impl S {}"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64>;"),
        ("state = x", ""),
        ("", "fn f(x: &DVector<f64>) -> DVector<f64> { x * 2.0 }"),
        ("state", "fn f(x: &DVector<f64>) -> DVector<f64> { x * 2.0 }"),
        ("state =", "fn f(x: &DVector<f64>) -> DVector<f64> { x * 2.0 }"),
        ("state = ()", "fn f(x: &DVector<f64>) -> DVector<f64> { x * 2.0 }"),
        ("state = (x,)", "fn f(x: &DVector<f64>) -> (DVector<f64>,) { (x * 2.0,) }"),
        ("state = (x, x)", "fn f(x: &DVector<f64>) -> (DVector<f64>, DVector<f64>) { (x * 2.0, x * 1.0) }"),
        ("state = x, params()", "fn f(x: &DVector<f64>) -> DVector<f64> { x * 2.0 }"),
        ("state = x, params(x, x)", "fn f(x: &DVector<f64>) -> DVector<f64> { x * 2.0 }"),
        ("state = x, primitives()", "fn f(x: &DVector<f64>) -> DVector<f64> { x * 2.0 }"),
        ("state = x, primitives(g)", "fn f(x: &DVector<f64>) -> DVector<f64> { g() }"),
        ("state = x, primitives(g)", "fn f(x: &DVector<f64>) -> DVector<f64> { g(x) }"),
        ("state = x, primitives(g)", "fn f(x: &DVector<f64>, a: f64) -> DVector<f64> { g(a) }"),
        ("state = x, state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x * 2.0 }"),
        ("state = r#x", "fn f(r#x: &DVector<f64>) -> DVector<f64> { r#x * 2.0 }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { let r#type = x * 2.0; r#type }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { let grad = x * 2.0; let opts = grad * 1.0; opts }"),
        ("state = x, params(a)", "fn f(x: &DVector<f64>, a: f64) -> DVector<f64> { x * a.powi(99999999999) }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x * 1e999 }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x * 2f32 }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x * 99999999999999999999999999999999999999999 }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x.map(|| 1.0) }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x.map(|a, b| a) }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x.map(|_| 1.0) }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x.map(|(a, b)| a) }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x.map(|e| e.map(|f| f)) }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x.map(|e| x) }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x.map(move |e| e) }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x.map(f) }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x.transpose() }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x.transpose().norm() * x }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x.transpose() * x }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x * x.transpose() * x }"),
        ("state = x", "fn f(x: &DVector<f64>, q: &DMatrix<f64>) -> DVector<f64> { q * x.transpose() }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x.dot() }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x.dot(x, x) }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x.powi(2.5) }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x.sum().powi(x) * x }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x.clone::<f64>() }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { proj_box(x) }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { proj_box() }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { qp_solve(x) }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { let (a, b) = x; a }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { let (a, b) = (x, x, x); a }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { (x, x) }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { ((x)) }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { -(-x) }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { !x }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { *&*&x }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { &mut x }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { \"x\" }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x % 2.0 }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x / x }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { 1.0 / x }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { 1.0 - x }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x == x }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { std::f64::consts::PI * x }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { (|e| e)(x) }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x(x) }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { x? }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { unsafe { x * 1.0 } }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { 'a: { x * 1.0 } }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { [x] }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { let y = x else { return x }; y }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { fn g() {} x * 1.0 }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { { let y = x * 2.0; y } }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> { let y = { let z = x * 2.0; z }; z }"),
        ("state = x", "async fn f(x: &DVector<f64>) -> DVector<f64> { x * 1.0 }"),
        ("state = x", "fn f(&self, x: &DVector<f64>) -> DVector<f64> { x * 1.0 }"),
        ("state = x", "fn f(x: &DVector<f64>) -> DVector<f64> where f64: Copy { x * 1.0 }"),
        ("state = x", "fn f(x: &&DVector<f64>) -> DVector<f64> { x * 1.0 }"),
        ("state = x", "fn f(x: impl Fn()) -> DVector<f64> { x }"),
        ("state = x", "fn f(x: [f64; 3]) -> DVector<f64> { x }"),
        ("state = x", "fn f(x: DVector) -> DVector<f64> { x }"),
        ("state = x", "fn f(x: <T as Tr>::A) -> DVector<f64> { x }"),
        ("state = x", "fn f(x: &DVector<f64>) -> &DVector<f64> { x }"),
        ("state = x", "fn f(x: &DVector<f64>) -> f64 { x.sum() }"),
        ("state = x, params(d)", "fn f(x: &DVector<f64>, d: &CsrMatrix<f64>) -> DVector<f64> { d * x }"),
        ("state = x", "fn f(x: &DVector<f64>, d: &CsrMatrix<f64>) -> DVector<f64> { d * x + d.transpose() * x }"),
        ("state = x", "fn f(x: &DVector<f64>, d: &CsrMatrix<f64>) -> DVector<f64> { -d * x + (d + d) * x }"),
        ("state = x", "fn f(x: &DVector<f64>, d: CsrMatrix<f64>) -> DVector<f64> { x * 2.0 }"),
        ("state = x, params(q)", "fn f(x: &DVector<f64>, q: &DMatrix<f64>) -> DVector<f64> { q.map(|e| e.exp()) * x }"),
        ("state = x, params(q)", "fn f(x: &DVector<f64>, q: &DMatrix<f64>) -> DVector<f64> { (q * q.transpose()).norm() * x }"),
        ("state = x, params(a)", "fn f(x: &DVector<f64>, a: f64) -> DVector<f64> { x.map(|e| a) }"),
        ("state = x, params(a)", "fn f(x: &DVector<f64>, a: f64) -> DVector<f64> { x.map(|_| 2.0) * a }"),
        ("state = x, params(a)", "fn f(x: &DVector<f64>, a: f64) -> DVector<f64> { x * 0.0 + x * a * 0.0 }"),
        ("state = x, params(a)", "fn f(x: &DVector<f64>, a: f64) -> DVector<f64> { x.clone() }"),
        ("state = (x, z)", "fn f(x: &DVector<f64>, z: &DVector<f64>) -> (DVector<f64>, DVector<f64>) { (z.clone(), x.clone()) }"),
        ("state = x, params(a, b)", "fn f(x: &DVector<f64>, a: &DVector<f64>, b: f64) -> DVector<f64> { proj_hyperplane(x, a, b) }"),
        ("state = x, params(a, b)", "fn f(x: &DVector<f64>, a: &DMatrix<f64>, b: &DVector<f64>) -> DVector<f64> { proj_affine(x, a, b) }"),
        ("state = x", "fn f(x: &DVector<f64>, p: &DMatrix<f64>, a: &DMatrix<f64>, b: &DVector<f64>, g: &DMatrix<f64>, h: &DVector<f64>) -> DVector<f64> { let (y, l, n) = qp_solve(p, x, a, b, g, h); y }"),
    ];
    for (attr, item) in cases {
        let (attr_ts, item_ts) = (tokens(attr), tokens(item));
        let result = catch_unwind(AssertUnwindSafe(|| {
            let _ = try_expand(attr_ts.clone(), item_ts.clone());
            expand(attr_ts.clone(), item_ts.clone())
        }));
        let out = result.unwrap_or_else(|_| panic!("panicked on #[fold({attr})] {item}"));
        assert!(!out.is_empty() || item.is_empty(), "no output for {item}");
    }
}

/// A rejected function is kept, without its body, so that rustc does not repeat the
/// macro's errors as type errors while callers still resolve it.
#[test]
fn a_rejected_function_is_kept_without_its_body() {
    let out = expand(
        tokens("state = x"),
        tokens("pub fn step(x: &DVector<f64>, s: f64) -> DVector<f64> { x + s }"),
    )
    .to_string();
    assert!(out.contains("pub fn step"), "{out}");
    assert!(out.contains("rejected this function"), "{out}");
    assert!(!out.contains("x + s"), "{out}");
    assert!(out.contains("compile_error"), "{out}");
}
