//! The typed IR: plain terms over scalars, vectors and matrices, one `egg` language for
//! primal and derivative terms alike. Masks, diagonals, outer products and support
//! restrictions are operations of their own so that derivatives stay readable and
//! simplifiable rather than hidden inside opaque calls.

pub mod builtins;
pub mod graph;
pub mod shape;

use egg::Symbol;
use std::fmt;
use std::str::FromStr;

/// A scalar literal, hashed and ordered by its bits so it can live in an e-graph.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lit(u64);

impl Lit {
    /// Wraps a finite `f64` (`-0.0` is normalized to `0.0`).
    pub fn new(value: f64) -> Lit {
        Lit(if value == 0.0 { 0.0f64 } else { value }.to_bits())
    }

    /// The value.
    pub fn get(self) -> f64 {
        f64::from_bits(self.0)
    }
}

impl fmt::Debug for Lit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.get())
    }
}

impl fmt::Display for Lit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.get())
    }
}

impl FromStr for Lit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Only numerals: names such as `inf` or `nan` are variables, never literals.
        let numeral = s
            .trim_start_matches('-')
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit());
        match s.parse::<f64>() {
            Ok(v) if numeral && v.is_finite() => Ok(Lit::new(v)),
            _ => Err(format!("not a literal: {s}")),
        }
    }
}

/// The operations, one e-graph language for primal and derivative terms.
mod language {
    // Variants are the operation names in the e-graph's syntax (the string beside each).
    #![allow(missing_docs)]
    use egg::{define_language, Id, Symbol};

    use super::Lit;

    define_language! {
        /// One operation of the IR. Operands follow nalgebra's meaning; `Mul`'s first operand
        /// is always a scalar, `Div`'s second always a scalar.
        pub enum Node {
            "+" = Add([Id; 2]),
            "neg" = Neg(Id),
            "*" = Mul([Id; 2]),
            "/" = Div([Id; 2]),
            "mv" = MatVec([Id; 2]),
            "mm" = MatMul([Id; 2]),
            "T" = Transpose(Id),
            "outer" = Outer([Id; 2]),
            "dot" = Dot([Id; 2]),
            "sum" = Sum(Id),
            "norm" = Norm(Id),
            "norm2" = NormSq(Id),
            ".*" = CMul([Id; 2]),
            "./" = CDiv([Id; 2]),
            "+s" = AddS([Id; 2]),
            "recip" = Recip(Id),
            "recip0" = SafeRecip(Id),
            "exp" = Exp(Id),
            "ln" = Ln(Id),
            "sin" = Sin(Id),
            "cos" = Cos(Id),
            "tanh" = Tanh(Id),
            "sqrt" = Sqrt(Id),
            "abs" = Abs(Id),
            "sigmoid" = Sigmoid(Id),
            "softplus" = Softplus(Id),
            "relu" = Relu(Id),
            "sign" = Sign(Id),
            "powi" = Powi([Id; 2]),
            "powf" = Powf([Id; 2]),
            "max" = Max([Id; 2]),
            "min" = Min([Id; 2]),
            "clamp" = Clamp([Id; 3]),
            "soft_threshold" = SoftThreshold([Id; 2]),
            "softmax" = Softmax(Id),
            "log_sum_exp" = LogSumExp(Id),
            "proj_simplex" = ProjSimplex([Id; 2]),
            "proj_capped_simplex" = ProjCappedSimplex([Id; 2]),
            "proj_l2_ball" = ProjL2Ball([Id; 2]),
            "solve" = Solve([Id; 2]),
            // `M⁻ᵀ r`: its own operation, so that the e-graph never rewrites the transpose of a
            // factored matrix into another matrix with a factorization of its own.
            "solve_t" = SolveT([Id; 2]),
            // 0/1 masks, elementwise (on scalars too): the diagonals of kinked derivatives.
            "in" = MaskIn([Id; 3]),
            ">" = Gt([Id; 2]),
            "<" = Lt([Id; 2]),
            ">=" = Ge([Id; 2]),
            "<=" = Le([Id; 2]),
            "outside" = Outside([Id; 2]),
            "ones" = Ones(Id),
            "eye" = Eye(Id),
            "diag" = Diag(Id),
            // Row totals `M 1` of a matrix (nalgebra's `column_sum`); the column totals
            // (`row_sum_tr`) are `colsum (T M)`.
            "colsum" = ColumnSum(Id),
            // The diagonal of a square matrix, as a vector (the adjoint of `diag`).
            "diagonal" = Diagonal(Id),
            // Vector reductions with a kink, and the indicators of where they are attained.
            "max_entry" = MaxEntry(Id),
            "min_entry" = MinEntry(Id),
            "argmax" = ArgMax(Id),
            "argmin" = ArgMin(Id),
            "select" = Select([Id; 3]),
            // Support restriction: `supp m` is the index set {i : mᵢ ≠ 0}.
            "supp" = Support(Id),
            "card" = Card(Id),
            "gv" = GatherV([Id; 2]),
            "gm" = GatherM([Id; 2]),
            "grows" = GatherRows([Id; 2]),
            "gcols" = GatherCols([Id; 2]),
            "scatter" = Scatter([Id; 3]),
            // Opaque primitives: `call` evaluates, `vjp`/`jvp` apply its Jacobian; `get` picks
            // output i (a literal) of a tuple.
            "vjp" = CallVjp(Box<[Id]>),
            "jvp" = CallJvp(Box<[Id]>),
            "get" = Get([Id; 2]),
            "zero" = Zero,
            Num(Lit),
            Var(Symbol),
            Call(Symbol, Vec<Id>),
        }
    }
}

pub use language::Node;

/// What a term is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `f64`.
    Scalar,
    /// `DVector<f64>`.
    Vector,
    /// `DMatrix<f64>`.
    Matrix,
    /// `CsrMatrix<f64>`, a constant used only in products.
    Sparse,
    /// A set of indices (a support).
    Index,
    /// The outputs of an opaque call, read with `get`.
    Tuple,
    /// A structural zero standing for an absent tangent of an opaque call.
    Zero,
}

impl Kind {
    /// How the kind reads in error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Scalar => "a scalar (f64)",
            Kind::Vector => "a vector (DVector<f64>)",
            Kind::Matrix => "a matrix (DMatrix<f64>)",
            Kind::Sparse => "a sparse matrix (CsrMatrix<f64>)",
            Kind::Index => "an index set",
            Kind::Tuple => "a tuple",
            Kind::Zero => "a structural zero",
        }
    }

    /// Whether values of this kind are dense arrays (vector or matrix).
    pub fn is_array(self) -> bool {
        matches!(self, Kind::Vector | Kind::Matrix)
    }
}

/// Whether `node` is an elementwise function of one operand.
pub fn is_elementwise_unary(node: &Node) -> bool {
    matches!(
        node,
        Node::Neg(_)
            | Node::Recip(_)
            | Node::SafeRecip(_)
            | Node::Exp(_)
            | Node::Ln(_)
            | Node::Sin(_)
            | Node::Cos(_)
            | Node::Tanh(_)
            | Node::Sqrt(_)
            | Node::Abs(_)
            | Node::Sigmoid(_)
            | Node::Softplus(_)
            | Node::Relu(_)
            | Node::Sign(_)
    )
}

/// The role of a named variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// State block `block`.
    State {
        /// Its index.
        block: usize,
    },
    /// A differentiated parameter.
    Param,
    /// A constant (not differentiated).
    Const,
    /// The cotangent of output block `block` (the `v` of `Φᵀv`).
    Cotangent {
        /// The output block.
        block: usize,
    },
    /// The tangent of state block `block` (the `u` of `Φu`).
    Tangent {
        /// The state block.
        block: usize,
    },
    /// The tangent `δθ` of a parameter.
    ParamTangent {
        /// The parameter's index.
        param: usize,
    },
    /// The reduced unknown `a` on a support (the reduced backward).
    Reduced,
}

impl Role {
    /// Whether per-call values (cotangents, tangents) flow through it.
    pub fn is_seed(&self) -> bool {
        matches!(
            self,
            Role::Cotangent { .. }
                | Role::Tangent { .. }
                | Role::ParamTangent { .. }
                | Role::Reduced
        )
    }
}

/// Internal names of seeds carry a `@` so they never collide with user identifiers.
pub fn seed_symbol(base: &str) -> Symbol {
    Symbol::from(format!("@{base}"))
}

/// The user-facing spelling of a variable (seeds lose their `@`).
pub fn display_name(sym: Symbol) -> String {
    sym.as_str().trim_start_matches('@').to_string()
}
