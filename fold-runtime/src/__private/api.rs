//! The items of a generated module that follow from the rule's signature alone, written
//! once here: the bundles (`Grads`, `Jacobians`, `Params`, `Consts`, `Args`), `Rule` with
//! its [`Declared`](super::Declared) impl, and the public functions of DESIGN §3 over the
//! generic plumbing of [`generic`](super::generic).

/// The signature-derived items of a generated module:
///
/// ```text
/// rule! {
///     fn name<'a>(x: &'a DVector<f64>, c: &'a DVector<f64>, alpha: f64);
///     state x: DVector<f64>;            // or `state (x: DVector<f64>, y: …);` for blocks
///     params c: DVector<f64>;
///     consts alpha: f64;
/// }
/// ```
///
/// The arguments as the rule function declares them (`'a` on every reference), then the
/// owned types of the state, the parameters (attribute order) and the constants.
#[doc(hidden)]
#[macro_export]
macro_rules! __fold_rule {
    (
        fn $name:ident <$lt:lifetime> ($($arg:ident: $ty:ty),* $(,)?);
        state $s:ident: $st:ty;
        params $($p:ident: $pt:ty),* ;
        consts $($k:ident: $kt:ty),* ;
    ) => {
        $crate::__fold_rule!(@items $name $lt ($($arg: $ty),*) [$s: $st] [$st] [$s]
            [$($p: $pt),*] [$($k: $kt),*]);
    };
    (
        fn $name:ident <$lt:lifetime> ($($arg:ident: $ty:ty),* $(,)?);
        state ($($s:ident: $st:ty),+ $(,)?);
        params $($p:ident: $pt:ty),* ;
        consts $($k:ident: $kt:ty),* ;
    ) => {
        $crate::__fold_rule!(@items $name $lt ($($arg: $ty),*) [$($s: $st),+] [($($st),+)]
            [($($s),+)] [$($p: $pt),*] [$($k: $kt),*]);
    };
    // `Args` from the public functions' parameters of the same names.
    (@args $($arg:ident),*) => {
        Args {
            $($arg,)*
            _lifetime: ::core::marker::PhantomData,
        }
    };
    (
        @items $name:ident $lt:lifetime ($($arg:ident: $ty:ty),*) [$($s:ident: $st:ty),+]
        [$state:ty] [$state_pat:pat] [$($p:ident: $pt:ty),*] [$($k:ident: $kt:ty),*]
    ) => {
        #[doc = concat!("Gradients of a loss with respect to the parameters of `", stringify!($name), "`.")]
        #[derive(Debug, Clone, PartialEq)]
        pub struct Grads {
            $(
                #[doc = concat!("`∂loss/∂", stringify!($p), "`.")]
                pub $p: $pt,
            )*
        }
        $crate::__fold_grads!(Grads { $($p),* }, Jacobians);

        #[doc = concat!(
            "`Φ = ∂", stringify!($name), "/∂state` (n × n) and `Ψ` per parameter (n × len, ",
            "matrices flattened column-major)."
        )]
        #[derive(Debug, Clone)]
        pub struct Jacobians {
            /// `Φ`, n × n.
            pub state: $crate::nalgebra::DMatrix<f64>,
            $(
                #[doc = concat!("`Ψ` of `", stringify!($p), "`.")]
                pub $p: $crate::nalgebra::DMatrix<f64>,
            )*
        }

        #[doc = concat!(
            "The parameters of `", stringify!($name), "`, owned: the same fields as [`Grads`] ",
            "(see [`Rule`])."
        )]
        pub type Params = Grads;

        #[doc = concat!(
            "The constants of `", stringify!($name), "`, owned: one field per constant (see ",
            "[`Rule`])."
        )]
        #[derive(Debug, Clone)]
        pub struct Consts {
            $(
                #[doc = concat!("`", stringify!($k), "`.")]
                pub $k: $kt,
            )*
        }

        #[doc = concat!("The arguments of `", stringify!($name), "`, as it declares them.")]
        pub struct Args<$lt> {
            $(
                #[doc = concat!("`", stringify!($arg), "`.")]
                pub $arg: $ty,
            )*
            _lifetime: ::core::marker::PhantomData<&$lt ()>,
        }

        #[doc = concat!(
            "`", stringify!($name), "` for code generic over rules ",
            "(`fold_runtime::FoldRule`: batches, layers)."
        )]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct Rule;

        impl $crate::__private::Declared for Rule {
            type State = $state;
            type Consts = Consts;
            type Grads = Grads;
            type Jacobians = Jacobians;
            type Args<$lt> = Args<$lt>;
            type ParamShapes = [(usize, usize); <[&str]>::len(&[$(stringify!($p)),*])];
            const NAME: &'static str = stringify!($name);
            const PARAMS: &'static [&'static str] = &[$(stringify!($p)),*];
            const CONSTS: &'static [&'static str] = &[$(stringify!($k)),*];

            fn args<$lt>(state: &$lt $state, p: &$lt Grads, k: &$lt Consts) -> Args<$lt> {
                let $state_pat = state;
                let Grads { $($p),* } = p;
                let Consts { $($k),* } = k;
                Args {
                    $( $arg: $crate::__private::FromOwned::from_owned($arg), )*
                    _lifetime: ::core::marker::PhantomData,
                }
            }
            // Each argument is read as its owned type whether declared by value or by
            // reference (`Borrow` covers both).
            fn state(args: &Args) -> $state {
                ($(::core::clone::Clone::clone(
                    ::core::borrow::Borrow::<$st>::borrow(&args.$s),
                )),+)
            }
            fn shapes(args: &Args) -> (usize, Self::ParamShapes) {
                use $crate::rule::FlatValue;
                let entries = |(r, c): (usize, usize)| r * c;
                (
                    0 $(+ entries(FlatValue::shape(::core::borrow::Borrow::<$st>::borrow(&args.$s))))+,
                    [$(FlatValue::shape(::core::borrow::Borrow::<$pt>::borrow(&args.$p))),*],
                )
            }
        }

        /// The update rule linearized at a point; see [`linearize`].
        pub type Linearization<$lt> =
            $crate::Linearization<<Rule as $crate::__private::Generated>::Staged<$lt>>;

        /// The rule linearized at a point, computed once for any number of products (a
        /// failure is reported by `Linearized::check`, and products then return NaN).
        pub fn linearize<$lt>($($arg: $ty),*) -> Linearization<$lt> {
            $crate::__private::generic::linearize::<Rule>($crate::__fold_rule!(@args $($arg),*))
        }

        /// Dense `Φ` and `Ψ` at the given point, from the structured formula where one
        /// exists (NaN-filled when the point cannot be linearized).
        pub fn jacobians<$lt>($($arg: $ty),*) -> Jacobians {
            $crate::__private::generic::jacobians::<Rule>($crate::__fold_rule!(@args $($arg),*))
        }

        /// The folded backward pass at a fixed point: solves `(I − Φ)ᵀ w = grad` and
        /// returns `Ψᵀ w` for every parameter. Every input is checked for non-finite
        /// values first.
        pub fn backward<$lt>(
            $($arg: $ty,)*
            grad: &$crate::nalgebra::DVector<f64>,
            opts: &$crate::BackwardOptions,
        ) -> ::core::result::Result<Grads, $crate::FoldError> {
            backward_with_stats($($arg,)* grad, opts).map(|(g, _)| g)
        }

        /// [`backward`], also reporting what the linear solver did.
        pub fn backward_with_stats<$lt>(
            $($arg: $ty,)*
            grad: &$crate::nalgebra::DVector<f64>,
            opts: &$crate::BackwardOptions,
        ) -> ::core::result::Result<(Grads, $crate::SolveStats), $crate::FoldError> {
            let args = $crate::__fold_rule!(@args $($arg),*);
            $crate::__private::generic::backward_with_stats::<Rule>(args, grad, opts)
        }

        #[doc = concat!(
            "Runs `", stringify!($name), "` to a fixed point from the given start (every ",
            "input is checked first)."
        )]
        pub fn solve<$lt>(
            $($arg: $ty,)*
            opts: &$crate::ForwardOptions,
        ) -> ::core::result::Result<$crate::Solution, $crate::FoldError> {
            let args = $crate::__fold_rule!(@args $($arg),*);
            $crate::__private::generic::solve::<Rule>(args, opts)
        }
    };
}

pub use crate::__fold_rule as rule;
