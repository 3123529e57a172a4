use fold_runtime::prelude::*;

#[fold(state = x)]
fn step() {}

fn main() {}
