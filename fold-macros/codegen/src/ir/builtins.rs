//! The functions of `fold_runtime::ops` a rule body may call: one table of names and
//! argument kinds, and for the opaque ones (solved by a runtime primitive) their runtime
//! type, outputs and shapes. Lowering, kind and shape inference, emission and the
//! "supported …" messages all read it.

use crate::ir::Kind;
use proc_macro2::TokenStream;
use quote::quote;

const S: &[Kind] = &[Kind::Scalar];
const V: &[Kind] = &[Kind::Vector];
const M: &[Kind] = &[Kind::Matrix];
const ANY: &[Kind] = &[Kind::Scalar, Kind::Vector, Kind::Matrix];
const ARRAY: &[Kind] = &[Kind::Vector, Kind::Matrix];

macro_rules! builtins {
    ($($variant:ident = $name:literal ($($arg:ident),*);)*) => {
        /// A builtin function of the rule language.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Builtin {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl Builtin {
            /// Every builtin, in the order the messages list them.
            pub const ALL: &'static [Builtin] = &[$(Builtin::$variant),*];

            /// Its name in a rule body.
            pub fn name(self) -> &'static str {
                match self {
                    $(Builtin::$variant => $name,)*
                }
            }

            /// The kinds each argument may have.
            pub fn args(self) -> &'static [&'static [Kind]] {
                match self {
                    $(Builtin::$variant => &[$($arg),*],)*
                }
            }
        }
    };
}

builtins! {
    Exp = "exp" (ANY);
    Ln = "ln" (ANY);
    Sin = "sin" (ANY);
    Cos = "cos" (ANY);
    Tanh = "tanh" (ANY);
    Sigmoid = "sigmoid" (ANY);
    Sqrt = "sqrt" (ANY);
    Abs = "abs" (ANY);
    Relu = "relu" (ANY);
    Softplus = "softplus" (ANY);
    Max = "max" (ARRAY, S);
    Min = "min" (ARRAY, S);
    Clamp = "clamp" (ARRAY, S, S);
    Softmax = "softmax" (V);
    LogSumExp = "log_sum_exp" (V);
    SoftThreshold = "soft_threshold" (ARRAY, S);
    ProjBox = "proj_box" (ARRAY, S, S);
    ProjNonneg = "proj_nonneg" (ANY);
    ProjSimplex = "proj_simplex" (V, S);
    ProjCappedSimplex = "proj_capped_simplex" (V, S);
    ProjL2Ball = "proj_l2_ball" (V, S);
    ProjHyperplane = "proj_hyperplane" (V, V, S);
    ProjAffine = "proj_affine" (V, M, V);
    ProjPolyhedron = "proj_polyhedron" (V, M, V, M, V);
    QpSolve = "qp_solve" (M, V, M, V, M, V);
    Linsolve = "linsolve" (M, ARRAY);
}

impl Builtin {
    /// The builtin called `name`.
    pub fn from_name(name: &str) -> Option<Builtin> {
        Builtin::ALL.iter().copied().find(|b| b.name() == name)
    }

    /// Every name, comma-separated (for messages).
    pub fn names() -> String {
        Builtin::ALL
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The builtins solved by a runtime primitive rather than lowered to terms.
    pub fn opaque(self) -> Option<Opaque> {
        match self {
            Builtin::ProjPolyhedron => Some(Opaque::ProjPolyhedron),
            Builtin::QpSolve => Some(Opaque::QpSolve),
            _ => None,
        }
    }
}

/// The "supported …" list of unknown-function messages.
pub fn supported() -> String {
    format!(
        "supported: {}, and user primitives listed in `primitives(…)`",
        Builtin::names()
    )
}

/// A builtin that lowers to an opaque call of a runtime `fold_runtime::Primitive`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opaque {
    /// `proj_polyhedron(v, A, b, G, h)`: the projection onto `{Ax = b, Gx ≤ h}`.
    ProjPolyhedron,
    /// `qp_solve(P, q, A, b, G, h)`: primal, equality and inequality duals.
    QpSolve,
}

impl Opaque {
    /// The opaque builtin an opaque call's `name` refers to (`None`: a user primitive).
    pub fn from_name(name: &str) -> Option<Opaque> {
        Builtin::from_name(name).and_then(Builtin::opaque)
    }

    /// The runtime type implementing it (generated code imports `ops`).
    pub fn runtime_type(self) -> TokenStream {
        match self {
            Opaque::ProjPolyhedron => quote!(ops::ProjPolyhedron),
            Opaque::QpSolve => quote!(ops::QpSolve),
        }
    }

    /// The builtin it is.
    pub fn builtin(self) -> Builtin {
        match self {
            Opaque::ProjPolyhedron => Builtin::ProjPolyhedron,
            Opaque::QpSolve => Builtin::QpSolve,
        }
    }

    /// How many outputs it has (a tuple when more than one); all are vectors.
    pub fn outputs(self) -> usize {
        match self {
            Opaque::ProjPolyhedron => 1,
            Opaque::QpSolve => 3,
        }
    }

    /// The argument whose length output `i` has.
    pub fn output_like(self, i: usize) -> Option<usize> {
        match (self, i) {
            (Opaque::ProjPolyhedron, 0) => Some(0),
            (Opaque::QpSolve, 0) => Some(1),
            (Opaque::QpSolve, 1) => Some(3),
            (Opaque::QpSolve, 2) => Some(5),
            _ => None,
        }
    }

    /// The argument that has the primal dimension n.
    pub fn primal(self) -> usize {
        match self {
            Opaque::ProjPolyhedron => 0,
            Opaque::QpSolve => 1,
        }
    }

    /// `(matrix, vector)` argument pairs with `matrix` of shape `len(vector) × n`; for
    /// `qp_solve`, `P` (argument 0) is n × n besides.
    pub fn constraint_pairs(self) -> &'static [(usize, usize)] {
        match self {
            Opaque::ProjPolyhedron => &[(1, 2), (3, 4)],
            Opaque::QpSolve => &[(2, 3), (4, 5)],
        }
    }

    /// The square n × n matrix argument, if any.
    pub fn square(self) -> Option<usize> {
        match self {
            Opaque::ProjPolyhedron => None,
            Opaque::QpSolve => Some(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_opaque_outputs_have_their_shapes() {
        for &b in Builtin::ALL {
            assert_eq!(Builtin::from_name(b.name()), Some(b));
        }
        assert_eq!(Builtin::from_name("porj_box"), None);
        for o in [Opaque::ProjPolyhedron, Opaque::QpSolve] {
            assert_eq!(Opaque::from_name(o.builtin().name()), Some(o));
            let args = o.builtin().args().len();
            for i in 0..o.outputs() {
                assert!(o.output_like(i).is_some_and(|a| a < args));
            }
            assert!(o.output_like(o.outputs()).is_none());
        }
        assert!(supported().contains("linsolve, and user primitives"));
    }
}
