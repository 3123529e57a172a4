//! One trait that every `#[fold]` rule implements, so that generic code (batches,
//! framework layers) is written once for all rules.
//!
//! For a rule `pgd_step`, the macro emits, inside the module `pgd_step`:
//!
//! - `pgd_step::Params`: one `pub` field per parameter (attribute order), owned type (the
//!   same struct as `pgd_step::Grads`);
//! - `pgd_step::Consts`: one `pub` field per constant (signature order), owned type;
//! - `pgd_step::Rule`: a unit struct implementing [`FoldRule`] with those types, the
//!   module's `Grads`, and the state as `DVector<f64>` or `DMatrix<f64>` (one block) or a
//!   tuple of blocks; a matrix block is packed as its column-major flattening.
//!
//! The module itself emits only what is specific to its rule (checks, the step, staging,
//! products); `FoldRule`, the bundles and the module's public functions are derived from
//! those once, here in the runtime.
//!
//! ```
//! use fold_runtime::prelude::*;
//!
//! #[fold(state = x, params(c))]
//! fn pgd_step(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
//!     proj_box(&(x - (q * x + c) * alpha), 0.0, 1.0)
//! }
//!
//! /// dL/dc for L = gᵀx*, for any rule.
//! fn gradient<R: FoldRule>(p: &R::Params, k: &R::Consts, x0: &R::State, g: &DVector<f64>)
//!     -> Result<R::Grads, FoldError> {
//!     let sol = R::solve(p, k, x0, &ForwardOptions::default())?;
//!     let x = R::unpack(&sol.x, x0)?;
//!     Ok(R::backward(p, k, &x, g, &BackwardOptions::default())?.0)
//! }
//!
//! let p = pgd_step::Params { c: DVector::from_vec(vec![-1.0, 0.4]) };
//! let k = pgd_step::Consts { q: DMatrix::from_row_slice(2, 2, &[2.0, 0.5, 0.5, 1.0]), alpha: 0.4 };
//! let grads = gradient::<pgd_step::Rule>(&p, &k, &DVector::zeros(2), &DVector::from_vec(vec![1.0, 1.0]))?;
//! assert!((grads.c[0] + 0.5).abs() < 1e-12 && grads.c[1] == 0.0);
//! assert_eq!(<pgd_step::Rule as FoldRule>::PARAMS, &["c"]);
//! # Ok::<(), FoldError>(())
//! ```

use crate::{BackwardOptions, Cotangent, FoldError, ForwardOptions, Solution, SolveStats};
use nalgebra::{DMatrix, DVector};
use std::fmt::Debug;

/// A `#[fold]` update rule seen by generic code; implemented by the generated
/// `<module>::Rule`.
///
/// The flat views (`*_to_flat`, `*_from_flat`) list the parameters in [`FoldRule::PARAMS`]
/// order, each as its entries with a shape `(rows, cols)`: a scalar is `(1, 1)`, a vector
/// of length n is `(n, 1)`, a matrix is flattened column-major. Every method checks its
/// inputs and reports bad data as a [`FoldError`]; none panics.
pub trait FoldRule: 'static {
    /// The state: `DVector<f64>` or `DMatrix<f64>`, or a tuple of such blocks in declared
    /// order (matrix blocks pack column-major).
    type State: StateLayout + Clone + Send + Sync + Debug;
    /// The parameters, owned (generated `<module>::Params`).
    type Params: ParamFields + Clone + Send + Sync + Debug;
    /// The constants, owned (generated `<module>::Consts`).
    type Consts: Clone + Send + Sync + Debug;
    /// Gradients with respect to the parameters (generated `<module>::Grads`).
    type Grads: Cotangent + ParamFields + Send + Sync + Debug;

    /// The rule's function name.
    const NAME: &'static str;
    /// Parameter names, in attribute order.
    const PARAMS: &'static [&'static str];
    /// Constant names, in signature order.
    const CONSTS: &'static [&'static str];
    /// Number of state blocks.
    const BLOCKS: usize = <Self::State as StateLayout>::BLOCKS;

    /// The state as one vector (blocks concatenated in declared order, matrices flattened
    /// column-major).
    fn pack(x: &Self::State) -> DVector<f64> {
        x.pack()
    }
    /// Splits a packed state into blocks shaped like `like`; a length mismatch is a
    /// [`FoldError::DimensionMismatch`].
    fn unpack(packed: &DVector<f64>, like: &Self::State) -> Result<Self::State, FoldError> {
        StateLayout::unpack(packed, like)
    }
    /// Forward fixed-point iteration of the rule from `x0` (the module's `solve`).
    fn solve(
        p: &Self::Params,
        k: &Self::Consts,
        x0: &Self::State,
        opts: &ForwardOptions,
    ) -> Result<Solution, FoldError>;
    /// One application of the update rule, `U(x)`, with dimensions checked.
    fn step(p: &Self::Params, k: &Self::Consts, x: &Self::State) -> Result<Self::State, FoldError>;
    /// The folded backward pass at a fixed point `x` for the cotangent `grad` (packed),
    /// with what the linear solver did (the module's `backward_with_stats`).
    fn backward(
        p: &Self::Params,
        k: &Self::Consts,
        x: &Self::State,
        grad: &DVector<f64>,
        opts: &BackwardOptions,
    ) -> Result<(Self::Grads, SolveStats), FoldError>;

    /// The shape `(rows, cols)` of every parameter, in [`FoldRule::PARAMS`] order.
    fn param_shapes(p: &Self::Params) -> Vec<(usize, usize)> {
        p.shapes()
    }
    /// Appends every parameter's entries to `out`, in [`FoldRule::PARAMS`] order.
    fn params_to_flat(p: &Self::Params, out: &mut Vec<f64>) {
        p.extend_flat(out)
    }
    /// Parameters from their concatenated entries and shapes (the reverse of
    /// [`FoldRule::params_to_flat`]).
    fn params_from_flat(
        flat: &[f64],
        shapes: &[(usize, usize)],
    ) -> Result<Self::Params, FoldError> {
        Self::Params::from_flat(flat, shapes)
    }
    /// Appends every gradient's entries to `out`, in [`FoldRule::PARAMS`] order.
    fn grads_to_flat(g: &Self::Grads, out: &mut Vec<f64>) {
        g.extend_flat(out)
    }
    /// Gradients from their concatenated entries and shapes.
    fn grads_from_flat(flat: &[f64], shapes: &[(usize, usize)]) -> Result<Self::Grads, FoldError> {
        Self::Grads::from_flat(flat, shapes)
    }
}

/// A struct with one field per parameter of a rule (its `Grads`, which is also its
/// `Params`), seen as one flat vector in [`FoldRule::PARAMS`] order.
pub trait ParamFields: Sized {
    /// The shape `(rows, cols)` of every field.
    fn shapes(&self) -> Vec<(usize, usize)>;
    /// Appends every field's entries to `out`.
    fn extend_flat(&self, out: &mut Vec<f64>);
    /// The fields from their concatenated entries and shapes.
    fn from_flat(flat: &[f64], shapes: &[(usize, usize)]) -> Result<Self, FoldError>;
}

/// A value with a flat view: `f64`, `DVector<f64>` and `DMatrix<f64>` (column-major).
pub trait FlatValue: Sized {
    /// `(rows, cols)`; `(1, 1)` for a scalar, `(n, 1)` for a vector.
    fn shape(&self) -> (usize, usize);
    /// Appends the entries to `out` (column-major for matrices).
    fn extend_flat(&self, out: &mut Vec<f64>);
    /// The value of the given shape from exactly `rows · cols` entries; `what` names it
    /// in errors.
    fn from_flat(flat: &[f64], shape: (usize, usize), what: &str) -> Result<Self, FoldError>;
    /// NaN-filled, of the given shape (a scalar ignores it).
    fn nan(shape: (usize, usize)) -> Self;
}

fn expect_len(flat: &[f64], len: usize, what: &str) -> Result<(), FoldError> {
    crate::__private::check::same_dim(what, len, flat.len())
}

impl FlatValue for f64 {
    fn shape(&self) -> (usize, usize) {
        (1, 1)
    }
    fn extend_flat(&self, out: &mut Vec<f64>) {
        out.push(*self);
    }
    fn from_flat(flat: &[f64], shape: (usize, usize), what: &str) -> Result<Self, FoldError> {
        crate::__private::check::same_dim(what, 1, shape.0 * shape.1)?;
        expect_len(flat, 1, what)?;
        Ok(flat[0])
    }
    fn nan(_: (usize, usize)) -> Self {
        f64::NAN
    }
}

impl FlatValue for DVector<f64> {
    fn shape(&self) -> (usize, usize) {
        (self.len(), 1)
    }
    fn extend_flat(&self, out: &mut Vec<f64>) {
        out.extend_from_slice(self.as_slice());
    }
    fn from_flat(flat: &[f64], shape: (usize, usize), what: &str) -> Result<Self, FoldError> {
        crate::__private::check::same_dim(what, 1, shape.1)?;
        expect_len(flat, shape.0, what)?;
        Ok(DVector::from_column_slice(flat))
    }
    fn nan(shape: (usize, usize)) -> Self {
        DVector::from_element(shape.0, f64::NAN)
    }
}

impl FlatValue for DMatrix<f64> {
    fn shape(&self) -> (usize, usize) {
        (self.nrows(), self.ncols())
    }
    fn extend_flat(&self, out: &mut Vec<f64>) {
        out.extend_from_slice(self.as_slice());
    }
    fn from_flat(flat: &[f64], shape: (usize, usize), what: &str) -> Result<Self, FoldError> {
        expect_len(flat, shape.0 * shape.1, what)?;
        Ok(DMatrix::from_column_slice(shape.0, shape.1, flat))
    }
    fn nan(shape: (usize, usize)) -> Self {
        DMatrix::from_element(shape.0, shape.1, f64::NAN)
    }
}

/// A rule's state as one vector: `DVector<f64>`, `DMatrix<f64>` (column-major) or a tuple
/// of such blocks, concatenated in order.
pub trait StateLayout: Sized {
    /// Number of blocks.
    const BLOCKS: usize;
    /// The blocks concatenated.
    fn pack(&self) -> DVector<f64>;
    /// Blocks shaped like `like` from a packed state; a length mismatch is a
    /// [`FoldError::DimensionMismatch`].
    fn unpack(packed: &DVector<f64>, like: &Self) -> Result<Self, FoldError>;
    /// [`StateLayout::unpack`] of an owned packed state, which a single vector block
    /// takes as it is.
    fn unpack_owned(packed: DVector<f64>, like: &Self) -> Result<Self, FoldError> {
        Self::unpack(&packed, like)
    }
    /// `f` of the state a packed vector holds (shaped like `like`), packed again: one
    /// step of a forward iteration on packed states.
    fn map_packed(
        packed: &DVector<f64>,
        like: &Self,
        f: impl FnOnce(&Self) -> Result<Self, FoldError>,
    ) -> Result<DVector<f64>, FoldError> {
        Ok(f(&Self::unpack(packed, like)?)?.pack())
    }
}

/// One block of a state.
trait Block: FlatValue {}
impl Block for DVector<f64> {}
impl Block for DMatrix<f64> {}

impl StateLayout for DVector<f64> {
    const BLOCKS: usize = 1;
    fn pack(&self) -> DVector<f64> {
        self.clone()
    }
    fn unpack(packed: &DVector<f64>, like: &Self) -> Result<Self, FoldError> {
        check_packed(packed, &[like.len()])?;
        Ok(packed.clone())
    }
    fn unpack_owned(packed: DVector<f64>, like: &Self) -> Result<Self, FoldError> {
        check_packed(&packed, &[like.len()])?;
        Ok(packed)
    }
    /// The packed vector is the state: no copies.
    fn map_packed(
        packed: &DVector<f64>,
        like: &Self,
        f: impl FnOnce(&Self) -> Result<Self, FoldError>,
    ) -> Result<DVector<f64>, FoldError> {
        check_packed(packed, &[like.len()])?;
        f(packed)
    }
}

impl StateLayout for DMatrix<f64> {
    const BLOCKS: usize = 1;
    fn pack(&self) -> DVector<f64> {
        DVector::from_column_slice(self.as_slice())
    }
    fn unpack(packed: &DVector<f64>, like: &Self) -> Result<Self, FoldError> {
        check_packed(packed, &[like.len()])?;
        Ok(DMatrix::from_column_slice(
            like.nrows(),
            like.ncols(),
            packed.as_slice(),
        ))
    }
}

macro_rules! tuple_layout {
    ($n:expr; $($b:ident $i:tt),+) => {
        impl<$($b: Block),+> StateLayout for ($($b,)+) {
            const BLOCKS: usize = $n;
            fn pack(&self) -> DVector<f64> {
                let mut out = Vec::new();
                $( self.$i.extend_flat(&mut out); )+
                crate::__private::temps::as_vector(out)
            }
            #[allow(unused_assignments)]
            fn unpack(packed: &DVector<f64>, like: &Self) -> Result<Self, FoldError> {
                let shapes = [$( like.$i.shape() ),+];
                let lens = shapes.map(|(r, c)| r * c);
                check_packed(packed, &lens)?;
                let mut at = 0;
                Ok(($({
                    let v = $b::from_flat(&packed.as_slice()[at..at + lens[$i]], shapes[$i], "packed state block")?;
                    at += lens[$i];
                    v
                },)+))
            }
        }
    };
}
tuple_layout!(2; A 0, B 1);
tuple_layout!(3; A 0, B 1, C 2);
tuple_layout!(4; A 0, B 1, C 2, D 3);
tuple_layout!(5; A 0, B 1, C 2, D 3, E 4);
tuple_layout!(6; A 0, B 1, C 2, D 3, E 4, F 5);

/// Reads values one after another from a flat buffer and its shapes (what the generated
/// `params_from_flat` / `grads_from_flat` use).
#[derive(Debug)]
pub struct FlatReader<'a> {
    flat: &'a [f64],
    shapes: &'a [(usize, usize)],
    pos: usize,
    next: usize,
}

impl<'a> FlatReader<'a> {
    /// A reader expecting exactly `count` values.
    pub fn new(
        flat: &'a [f64],
        shapes: &'a [(usize, usize)],
        count: usize,
    ) -> Result<Self, FoldError> {
        crate::__private::check::same_dim("number of parameter shapes", count, shapes.len())?;
        let total: usize = shapes.iter().map(|(r, c)| r * c).sum();
        crate::__private::check::same_dim(
            "flat parameter length (sum of shapes)",
            total,
            flat.len(),
        )?;
        Ok(FlatReader {
            flat,
            shapes,
            pos: 0,
            next: 0,
        })
    }

    /// The next value, named `what` in errors.
    pub fn read<T: FlatValue>(&mut self, what: &str) -> Result<T, FoldError> {
        let shape = *self.shapes.get(self.next).ok_or_else(|| {
            FoldError::dimension(
                "number of parameter shapes",
                self.next + 1,
                self.shapes.len(),
            )
        })?;
        let len = shape.0 * shape.1;
        let end = self.pos + len;
        let slice = self
            .flat
            .get(self.pos..end)
            .ok_or_else(|| FoldError::dimension(what, end, self.flat.len()))?;
        let v = T::from_flat(slice, shape, what)?;
        self.pos = end;
        self.next += 1;
        Ok(v)
    }
}

/// `Err(DimensionMismatch)` unless `packed` is as long as the blocks `lens` together
/// (what the generated `unpack` checks for block state).
pub fn check_packed(packed: &DVector<f64>, lens: &[usize]) -> Result<(), FoldError> {
    crate::__private::check::same_dim("packed state length", lens.iter().sum(), packed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_round_trip_and_errors() {
        let m = DMatrix::from_row_slice(2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let mut out = Vec::new();
        2.5f64.extend_flat(&mut out);
        m.extend_flat(&mut out);
        // Column-major: 1 4 2 5 3 6.
        assert_eq!(out, vec![2.5, 1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        let shapes = [2.5f64.shape(), m.shape()];
        let mut r = FlatReader::new(&out, &shapes, 2).unwrap();
        assert_eq!(r.read::<f64>("s").unwrap(), 2.5);
        assert_eq!(r.read::<DMatrix<f64>>("m").unwrap(), m);
        assert!(FlatReader::new(&out[..6], &shapes, 2).is_err());
        assert!(FlatReader::new(&out, &shapes, 3).is_err());
        assert!(DVector::<f64>::from_flat(&[1.0, 2.0], (1, 2), "v").is_err());
    }
}
