//! The public functions of a generated module (DESIGN §3), written once here: each takes
//! the rule function's own arguments and calls the generic plumbing of
//! [`generic`](super::generic).

/// `Linearization`, `linearize`, `jacobians`, `backward`, `backward_with_stats` and `solve`
/// for the module's `Rule`: `api!(name<'a>(x: &'a DVector<f64>, alpha: f64))`, the
/// arguments as the rule function declares them (`'a` on every reference).
#[doc(hidden)]
#[macro_export]
macro_rules! __fold_api {
    ($rule:ident ($($arg:ident: $ty:ty),* $(,)?)) => {
        $crate::__fold_api!($rule<'a>($($arg: $ty),*));
    };
    ($rule:ident <$lt:lifetime> ($($arg:ident: $ty:ty),* $(,)?)) => {
        /// The update rule linearized at a point; see [`linearize`].
        pub type Linearization<$lt> =
            $crate::Linearization<<Rule as $crate::__private::Generated>::Staged<$lt>>;

        /// The rule linearized at a point, computed once for any number of products (a
        /// failure is reported by `Linearized::check`, and products then return NaN).
        pub fn linearize<$lt>($($arg: $ty),*) -> Linearization<$lt> {
            $crate::__private::generic::linearize::<Rule>(Args { $($arg),* })
        }

        /// Dense `Φ` and `Ψ` at the given point, from the structured formula where one
        /// exists (NaN-filled when the point cannot be linearized).
        pub fn jacobians<$lt>($($arg: $ty),*) -> Jacobians {
            $crate::__private::generic::jacobians::<Rule>(Args { $($arg),* })
        }

        /// The folded backward pass at a fixed point: solves `(I − Φ)ᵀ w = grad` and
        /// returns `Ψᵀ w` for every parameter. Every input is checked for non-finite
        /// values first.
        pub fn backward<$lt>(
            $($arg: $ty,)*
            grad: &$crate::nalgebra::DVector<f64>,
            opts: &$crate::BackwardOptions,
        ) -> ::std::result::Result<Grads, $crate::FoldError> {
            backward_with_stats($($arg,)* grad, opts).map(|(g, _)| g)
        }

        /// [`backward`], also reporting what the linear solver did.
        pub fn backward_with_stats<$lt>(
            $($arg: $ty,)*
            grad: &$crate::nalgebra::DVector<f64>,
            opts: &$crate::BackwardOptions,
        ) -> ::std::result::Result<(Grads, $crate::SolveStats), $crate::FoldError> {
            $crate::__private::generic::backward_with_stats::<Rule>(Args { $($arg),* }, grad, opts)
        }

        #[doc = concat!(
            "Runs `", stringify!($rule), "` to a fixed point from the given start (every input ",
            "is checked first)."
        )]
        pub fn solve<$lt>(
            $($arg: $ty,)*
            opts: &$crate::ForwardOptions,
        ) -> ::std::result::Result<$crate::Solution, $crate::FoldError> {
            $crate::__private::generic::solve::<Rule>(Args { $($arg),* }, opts)
        }
    };
}

pub use crate::__fold_api as api;
