//! Prints the generated source and DERIVATIVES of one sample rule (for reading).
//!
//! ```sh
//! cargo run -p fold-codegen --example dump_case -- tv_denoising_dual
//! ```
fn main() {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "box_qp_pgd".into());
    for case in fold_codegen::samples::cases() {
        if case.name == name {
            match fold_codegen::try_expand(case.attr, case.item) {
                Ok(e) => println!("{}\n{}", e.derivatives, e.source),
                Err(e) => println!("error: {e}"),
            }
            return;
        }
    }
    eprintln!("no case {name}");
}
