use fold_runtime::prelude::*;

struct Solver;

impl Solver {
    #[fold(state = x)]
    fn step(&self, x: &DVector<f64>) -> DVector<f64> {
        x * 0.5
    }
}

fn main() {}
