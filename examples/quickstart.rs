//! Placeholder until the macro lands: prints what Fold is.
fn main() {
    println!("Fold: folded differentiation of iterative solvers (quickstart coming with the #[fold] macro)");
}
