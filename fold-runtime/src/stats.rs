//! What the `#[fold]` macro did at compile time.

/// Floating-point work of a generated expression, by kind, with `n` a symbolic size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpCounts {
    /// Scalar operations (weight 1).
    pub scalar: usize,
    /// Elementwise vector operations (weight n).
    pub vector: usize,
    /// Matrix-vector products and O(n²) matrix work (weight n²).
    pub matvec: usize,
    /// Matrix-matrix products and factorizations (weight n³).
    pub matmul: usize,
}

impl OpCounts {
    /// Counts of scalar, vector, matrix·vector and matrix·matrix work.
    pub const fn new(scalar: usize, vector: usize, matvec: usize, matmul: usize) -> Self {
        OpCounts {
            scalar,
            vector,
            matvec,
            matmul,
        }
    }

    /// Estimated flops at size `n`.
    pub fn flops(&self, n: f64) -> f64 {
        self.scalar as f64
            + self.vector as f64 * n
            + self.matvec as f64 * n * n
            + self.matmul as f64 * n * n * n
    }
}

/// Compile-time statistics of one `#[fold]` expansion.
#[derive(Debug, Clone)]
pub struct CodegenStats {
    /// E-nodes in the e-graph when saturation stopped.
    pub egraph_nodes: usize,
    /// E-classes in the e-graph when saturation stopped.
    pub egraph_classes: usize,
    /// Rewrite iterations run, summed over the three phases (simplify, distribute,
    /// simplify again).
    pub iterations: usize,
    /// `"saturated"` when every phase saturated (then `iterations` is what saturation
    /// took); otherwise the first limit hit, e.g. `"distribute phase: iteration limit (30)
    /// after 30 iterations"`.
    pub stop_reason: &'static str,
    /// Work of one `Φᵀv` before simplification.
    pub vjp_before: OpCounts,
    /// Work of one `Φᵀv` after simplification.
    pub vjp_after: OpCounts,
    /// Work of one `linearize` before simplification.
    pub linearize_before: OpCounts,
    /// Work of one `linearize` after simplification.
    pub linearize_after: OpCounts,
    /// Whether a reduced backward (through a projection's support) was generated.
    pub reduced: bool,
    /// Empty, or why simplification left more per-linearization work than it found.
    pub note: &'static str,
    /// Wall time of the whole expansion, microseconds.
    pub expansion_micros: u64,
}
