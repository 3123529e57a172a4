//! Compile-fail tests: every rule `#[fold]` rejects, with the error on the offending
//! code and a sentence saying what is supported instead (`tests/ui/*.stderr`).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
