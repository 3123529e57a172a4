//! What the body language does not have, and the message saying so.

use super::*;

/// The message for a construct the body language does not have (control flow, macros,
/// indexing, …), with the tokens to underline: the keyword for control flow, whose body
/// may span many lines, and the whole expression otherwise.
pub(super) fn construct_error(e: &Expr) -> Option<(proc_macro2::TokenStream, String)> {
    const LOOP: &str = "loops are not supported: a #[fold] function is one iteration of the solver, and `solve` runs the loop";
    let kinks =
        "express kinks with `max`, `min`, `clamp`, `relu` or a projection such as `proj_box`";
    let t = |x: &dyn ToTokens| x.to_token_stream();
    Some(match e {
        Expr::If(x) => (
            t(&x.if_token),
            format!("`if` is not supported: {STRAIGHT_LINE}; {kinks}"),
        ),
        Expr::Match(x) => (
            t(&x.match_token),
            format!("`match` is not supported: {STRAIGHT_LINE}; {kinks}"),
        ),
        Expr::ForLoop(x) => (t(&x.for_token), LOOP.to_string()),
        Expr::While(x) => (t(&x.while_token), LOOP.to_string()),
        Expr::Loop(x) => (t(&x.loop_token), LOOP.to_string()),
        Expr::Index(x) => (
            t(x),
            "indexing is not supported in a #[fold] body: use whole-vector operations (`dot`, `component_mul`, `sum`, `map`, …)".to_string(),
        ),
        Expr::Range(x) => (t(x), format!("ranges are not supported; {STRAIGHT_LINE}")),
        Expr::Field(x) => (
            t(x),
            "field access is not supported in a #[fold] body: pass the value as an argument".to_string(),
        ),
        Expr::Cast(x) => (
            t(x),
            "casts are not supported: every value of a #[fold] rule is already f64".to_string(),
        ),
        Expr::Closure(x) => (
            t(x),
            "closures are only supported as the argument of `.map(|e| …)`; write the computation inline, or make it a user primitive listed in `primitives(…)`".to_string(),
        ),
        Expr::Macro(x) => (
            t(&x.mac),
            format!("macros are not supported in a #[fold] body; {STRAIGHT_LINE}"),
        ),
        Expr::Assign(x) => (
            t(x),
            format!("assignment is not supported: bindings are immutable; bind a new name with `let` ({STRAIGHT_LINE})"),
        ),
        Expr::Binary(x) if is_compound_assign(&x.op) => {
            // `y *= 0.5` → `let y = y * 0.5;` when both sides print simply.
            let op = x.op.to_token_stream().to_string();
            let simple = |e: &Expr| matches!(e, Expr::Path(_) | Expr::Lit(_));
            let fix = match (&*x.left, op.strip_suffix('=')) {
                (Expr::Path(l), Some(op)) if simple(&x.right) => {
                    let (l, r) = (l.to_token_stream(), x.right.to_token_stream());
                    format!("`let {l} = {l} {op} {r};`")
                }
                _ => "`let y = y * 2.0;`".to_string(),
            };
            (
                t(x),
                format!("compound assignment is not supported: bindings are immutable; write {fix} instead ({STRAIGHT_LINE})"),
            )
        }
        Expr::Return(x) => (
            t(x),
            "`return` is not supported: the body ends with the next state as its tail expression, without `return`".to_string(),
        ),
        Expr::Break(x) => (t(x), LOOP.to_string()),
        Expr::Continue(x) => (t(x), LOOP.to_string()),
        Expr::Try(x) => (
            t(x),
            "`?` is not supported: the update rule cannot fail; `backward` and `solve` check their inputs".to_string(),
        ),
        Expr::Unsafe(x) => (t(&x.unsafe_token), format!("`unsafe` blocks are not supported; {STRAIGHT_LINE}")),
        Expr::Async(x) => (t(&x.async_token), format!("`async` blocks are not supported; {STRAIGHT_LINE}")),
        Expr::Await(x) => (t(x), format!("`.await` is not supported; {STRAIGHT_LINE}")),
        Expr::Struct(x) => (t(x), format!("struct expressions are not supported; {STRAIGHT_LINE}")),
        Expr::Array(x) => (
            t(x),
            "array literals are not supported: vectors and matrices come in as arguments".to_string(),
        ),
        Expr::Repeat(x) => (
            t(x),
            "array literals are not supported: vectors and matrices come in as arguments".to_string(),
        ),
        Expr::Let(x) => (t(x), format!("`let` expressions are not supported; {STRAIGHT_LINE}")),
        Expr::Block(x) => (
            t(x),
            format!("labelled blocks and attributes on blocks are not supported; {STRAIGHT_LINE}"),
        ),
        _ => return None,
    })
}

pub(super) fn is_compound_assign(op: &BinOp) -> bool {
    matches!(
        op,
        BinOp::AddAssign(_)
            | BinOp::SubAssign(_)
            | BinOp::MulAssign(_)
            | BinOp::DivAssign(_)
            | BinOp::RemAssign(_)
            | BinOp::BitXorAssign(_)
            | BinOp::BitAndAssign(_)
            | BinOp::BitOrAssign(_)
            | BinOp::ShlAssign(_)
            | BinOp::ShrAssign(_)
    )
}
