//! The field-by-field impls of a generated `Grads` struct, written once here instead of
//! in every generated module.

/// `+=`, [`Cotangent`](crate::Cotangent) and [`ParamFields`](crate::rule::ParamFields)
/// for a struct of gradient-shaped fields: `grads!(Grads { a, b })`.
#[doc(hidden)]
#[macro_export]
macro_rules! __fold_grads {
    ($name:ident { $($field:ident),* $(,)? }, $jacobians:ident) => {
        $crate::__fold_grads!($name { $($field),* });

        impl $crate::__private::Shaped for $name {
            #[allow(unused_mut, unused_variables)]
            fn nan(n: usize, params: &[(usize, usize)]) -> Self {
                let mut shapes = params.iter().copied();
                $name { $( $field: $crate::rule::FlatValue::nan(shapes.next().unwrap_or((0, 0))), )* }
            }
        }

        impl $crate::__private::Shaped for $jacobians {
            #[allow(unused_mut, unused_variables)]
            fn nan(n: usize, params: &[(usize, usize)]) -> Self {
                let mut widths = params.iter().map(|(r, c)| r * c);
                $jacobians {
                    state: $crate::__private::kernels::nan_matrix(n, n),
                    $( $field: $crate::__private::kernels::nan_matrix(n, widths.next().unwrap_or(0)), )*
                }
            }
        }
    };
    ($name:ident { $($field:ident),* $(,)? }) => {
        impl<'r> ::core::ops::AddAssign<&'r $name> for $name {
            fn add_assign(&mut self, other: &'r $name) {
                $( $crate::Cotangent::add_scaled(&mut self.$field, 1.0, &other.$field); )*
            }
        }

        impl $crate::Cotangent for $name {
            fn zeros_like(&self) -> Self {
                $name { $( $field: $crate::Cotangent::zeros_like(&self.$field), )* }
            }
            fn scale_by(&mut self, s: f64) {
                $( $crate::Cotangent::scale_by(&mut self.$field, s); )*
            }
            fn dot_with(&self, other: &Self) -> f64 {
                0.0 $( + $crate::Cotangent::dot_with(&self.$field, &other.$field) )*
            }
            fn all_finite(&self) -> bool {
                true $( && $crate::Cotangent::all_finite(&self.$field) )*
            }
        }

        impl $crate::rule::ParamFields for $name {
            fn shapes(&self) -> ::std::vec::Vec<(usize, usize)> {
                ::std::vec![$( $crate::rule::FlatValue::shape(&self.$field) ),*]
            }
            fn extend_flat(&self, out: &mut ::std::vec::Vec<f64>) {
                $( $crate::rule::FlatValue::extend_flat(&self.$field, out); )*
            }
            #[allow(unused_mut, unused_variables)]
            fn from_flat(
                flat: &[f64],
                shapes: &[(usize, usize)],
            ) -> ::std::result::Result<Self, $crate::FoldError> {
                let fields: &[&str] = &[$( stringify!($field) ),*];
                let mut r = $crate::rule::FlatReader::new(flat, shapes, fields.len())?;
                ::std::result::Result::Ok($name { $( $field: r.read(stringify!($field))?, )* })
            }
        }
    };
}

pub use crate::__fold_grads as grads;
