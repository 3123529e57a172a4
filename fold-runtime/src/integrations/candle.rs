//! A `#[fold]` rule as a [candle](https://docs.rs/candle-core) layer (feature `candle`).
//!
//! [`FoldLayer`] takes the rule's parameters as batched tensors (leading batch dimension:
//! a scalar parameter `(B)` or `(B, 1)`, a vector `(B, n)`, a matrix `(B, rows, cols)`),
//! shares the constants, and returns the fixed points `x*` as a `(B, state_dim)` tensor
//! (packed blocks). Its backward is the folded backward of every sample, so
//! `loss.backward()` on a candle graph gives gradients through the layer into whatever
//! produced the parameters. Any number of parameters: they are concatenated into one flat
//! tensor per sample and the gradient is split back by candle's own `cat` backward. Fold
//! computes in f64; the result has the dtype of the first parameter tensor (f32 or f64).
//! Errors are candle errors carrying a [`BatchError`] (the failing sample's index and the
//! [`FoldError`](crate::FoldError)); [`fold_error`] finds it.
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! use fold_runtime::integrations::candle::FoldLayer;
//! use fold_runtime::prelude::*;
//!
//! /// One projected-gradient step for  min ½xᵀQx + cᵀx  s.t.  0 ≤ x ≤ 1.
//! #[fold(state = x, params(c))]
//! fn pgd_step(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
//!     proj_box(&(x - (q * x + c) * alpha), 0.0, 1.0)
//! }
//!
//! # fn main() -> candle_core::Result<()> {
//! let q = DMatrix::from_row_slice(2, 2, &[2.0, 0.5, 0.5, 1.0]);
//! let layer = FoldLayer::<pgd_step::Rule>::new(pgd_step::Consts { q, alpha: 0.4 }, DVector::zeros(2));
//! // A batch of two cost vectors (in a model: the output of a network).
//! let c = Var::from_slice(&[-1.0f32, 0.4, -0.5, -0.2], (2, 2), &Device::Cpu)?;
//! let x = layer.forward(&[c.as_tensor()])?; // (2, 2), f32
//! let grads = x.sum_all()?.backward()?;
//! let dc = grads.get(c.as_tensor()).unwrap().to_vec2::<f32>()?;
//! // Sample 0: x₀ free, x₁ at its bound, so dL/dc = −Q_FF⁻¹ 1_F = (−0.5, 0).
//! assert!((dc[0][0] + 0.5).abs() < 1e-6 && dc[0][1] == 0.0);
//! # Ok(())
//! # }
//! ```

use crate::batch::{BatchError, Batcher, PerSample};
use crate::rule::StateLayout;
use crate::{BackwardOptions, FoldError, FoldRule, ForwardOptions};
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use nalgebra::DVector;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A batched forward solver replacing the rule's own `solve`: given every sample's
/// parameters, the constants and every sample's start, the packed fixed points (one
/// result per sample, in order).
pub type BatchForward<R> = dyn Fn(
        &[<R as FoldRule>::Params],
        &<R as FoldRule>::Consts,
        &[<R as FoldRule>::State],
    ) -> Vec<Result<DVector<f64>, FoldError>>
    + Send
    + Sync;

/// Time spent inside the layer since the last [`FoldLayer::reset_stats`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerStats {
    /// Forward solves (including unpacking the tensors).
    pub forward: Duration,
    /// Folded backward passes (including the tensor conversions).
    pub backward: Duration,
    /// Samples solved.
    pub forward_samples: usize,
    /// Samples differentiated.
    pub backward_samples: usize,
}

/// A differentiable candle layer computing the fixed points of rule `R`.
pub struct FoldLayer<R: FoldRule> {
    consts: Arc<R::Consts>,
    x0: Arc<R::State>,
    forward_opts: ForwardOptions,
    backward_opts: BackwardOptions,
    batcher: Arc<Batcher>,
    solver: Option<Arc<BatchForward<R>>>,
    stats: Arc<Mutex<LayerStats>>,
}

impl<R: FoldRule> Clone for FoldLayer<R> {
    fn clone(&self) -> Self {
        FoldLayer {
            consts: self.consts.clone(),
            x0: self.x0.clone(),
            forward_opts: self.forward_opts.clone(),
            backward_opts: self.backward_opts.clone(),
            batcher: self.batcher.clone(),
            solver: self.solver.clone(),
            stats: self.stats.clone(),
        }
    }
}

impl<R: FoldRule> FoldLayer<R> {
    /// A layer with shared constants, solving every sample from `x0` with the default
    /// forward and backward options on rayon's global pool.
    pub fn new(consts: R::Consts, x0: R::State) -> Self {
        FoldLayer {
            consts: Arc::new(consts),
            x0: Arc::new(x0),
            forward_opts: ForwardOptions::default(),
            backward_opts: BackwardOptions::default(),
            batcher: Arc::new(Batcher::global()),
            solver: None,
            stats: Arc::new(Mutex::new(LayerStats::default())),
        }
    }

    /// Forward options of the rule's own solve.
    pub fn with_forward_options(mut self, opts: ForwardOptions) -> Self {
        self.forward_opts = opts;
        self
    }

    /// Options of the folded backward.
    pub fn with_backward_options(mut self, opts: BackwardOptions) -> Self {
        self.backward_opts = opts;
        self
    }

    /// Where the per-sample work runs (e.g. [`Batcher::with_threads`]); an
    /// `Arc<Batcher>` shares one with a solver of the caller's, so that both run on the
    /// same helpers.
    pub fn with_batcher(mut self, batcher: impl Into<Arc<Batcher>>) -> Self {
        self.batcher = batcher.into();
        self
    }

    /// A forward solver of the caller's own (any method reaching the rule's fixed points).
    pub fn with_solver(mut self, solver: Arc<BatchForward<R>>) -> Self {
        self.solver = Some(solver);
        self
    }

    /// The shared constants.
    pub fn consts(&self) -> &R::Consts {
        &self.consts
    }

    /// Time spent in the layer so far.
    pub fn stats(&self) -> LayerStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Resets [`FoldLayer::stats`].
    pub fn reset_stats(&self) {
        if let Ok(mut s) = self.stats.lock() {
            *s = LayerStats::default();
        }
    }

    /// `x*` for every sample, from the layer's start `x0`.
    pub fn forward(&self, params: &[&Tensor]) -> candle_core::Result<Tensor> {
        self.apply(params, None)
    }

    /// `x*` for every sample, sample `i` started from `starts[i]` (warm starts); the starts
    /// have the shape of the layer's `x0`.
    pub fn forward_from(
        &self,
        params: &[&Tensor],
        starts: Vec<R::State>,
    ) -> candle_core::Result<Tensor> {
        self.apply(params, Some(Arc::new(starts)))
    }

    fn apply(
        &self,
        params: &[&Tensor],
        starts: Option<Arc<Vec<R::State>>>,
    ) -> candle_core::Result<Tensor> {
        let err = |e: FoldError| to_candle::<R>(BatchError { index: 0, error: e });
        crate::__private::check::same_dim(
            "number of parameter tensors",
            R::PARAMS.len(),
            params.len(),
        )
        .map_err(err)?;
        let first = params[0];
        let b = first.dim(0)?;
        let mut flats = Vec::with_capacity(params.len());
        let mut shapes = Vec::with_capacity(params.len());
        for (t, name) in params.iter().zip(R::PARAMS) {
            crate::__private::check::same_dim(&format!("batch size of `{name}`"), b, t.dim(0)?)
                .map_err(err)?;
            let t = t.to_dtype(DType::F64)?;
            let (shape, flat) = match t.dims() {
                [_] => ((1, 1), t.reshape((b, 1))?),
                [_, n] => ((*n, 1), t),
                [_, r, c] => ((*r, *c), t.transpose(1, 2)?.reshape((b, r * c))?),
                other => {
                    return Err(err(FoldError::dimension(
                        format!("rank of `{name}` (batch, then at most two dimensions)"),
                        3,
                        other.len(),
                    )))
                }
            };
            shapes.push(shape);
            flats.push(flat);
        }
        if let Some(s) = &starts {
            crate::__private::check::same_dim("number of starts", b, s.len()).map_err(err)?;
        }
        let flat = Tensor::cat(&flats, 1)?.contiguous()?;
        let op = FoldOp::<R> {
            layer: self.clone(),
            shapes,
            starts,
        };
        flat.apply_op1(op)?.to_dtype(first.dtype())
    }
}

/// The custom op: the flat parameters `(B, Σ len)` in, `x*` `(B, n)` out.
struct FoldOp<R: FoldRule> {
    layer: FoldLayer<R>,
    shapes: Vec<(usize, usize)>,
    starts: Option<Arc<Vec<R::State>>>,
}

impl<R: FoldRule> FoldOp<R> {
    fn params(&self, data: &[f64], b: usize) -> Result<Vec<R::Params>, BatchError> {
        let total: usize = self.shapes.iter().map(|(r, c)| r * c).sum();
        (0..b)
            .map(|i| {
                R::params_from_flat(&data[i * total..(i + 1) * total], &self.shapes)
                    .map_err(|error| BatchError { index: i, error })
            })
            .collect()
    }

    fn solve(&self, data: &[f64], b: usize) -> Result<Vec<f64>, BatchError> {
        let l = &self.layer;
        let params = self.params(data, b)?;
        let n = R::pack(&l.x0).len();
        let results = match &l.solver {
            Some(f) => {
                let shared;
                let starts = match &self.starts {
                    Some(s) => s.as_slice(),
                    None => {
                        shared = vec![l.x0.as_ref().clone(); b];
                        &shared
                    }
                };
                f(&params, &l.consts, starts)
            }
            None => {
                let x0 = match &self.starts {
                    Some(s) => PerSample::Each(s.as_slice()),
                    None => PerSample::Shared(l.x0.as_ref()),
                };
                l.batcher
                    .solve::<R>(&params, PerSample::Shared(&l.consts), x0, &l.forward_opts)
                    .results
                    .into_iter()
                    .map(|r| r.map(|s| s.x))
                    .collect()
            }
        };
        crate::__private::check::same_dim("number of solutions", b, results.len())
            .map_err(|error| BatchError { index: 0, error })?;
        let mut out = Vec::with_capacity(b * n);
        for (index, r) in results.into_iter().enumerate() {
            let x = r.map_err(|error| BatchError { index, error })?;
            crate::__private::check::same_dim("solution length", n, x.len())
                .map_err(|error| BatchError { index, error })?;
            out.extend_from_slice(x.as_slice());
        }
        Ok(out)
    }

    fn backward(
        &self,
        arg: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<Vec<f64>, candle_core::Error> {
        let l = &self.layer;
        let (b, _) = arg.dims2()?;
        let (_, n) = res.dims2()?;
        let flat = |t: &Tensor| t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>();
        let (data, xs, gs) = (flat(arg)?, flat(res)?, flat(grad)?);
        let params = self.params(&data, b).map_err(to_candle::<R>)?;
        // Rows of length n (b empty ones for a zero-length state).
        let rows = |v: &[f64]| -> Vec<DVector<f64>> {
            (0..v.len().checked_div(n).unwrap_or(b))
                .map(|i| DVector::from_column_slice(&v[i * n..(i + 1) * n]))
                .collect()
        };
        let states = rows(&xs)
            .into_iter()
            .enumerate()
            .map(|(index, x)| {
                StateLayout::unpack_owned(x, l.x0.as_ref())
                    .map_err(|error| BatchError { index, error })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(to_candle::<R>)?;
        let gs = rows(&gs);
        let grads = l
            .batcher
            .backward::<R>(
                &params,
                PerSample::Shared(&l.consts),
                &states,
                &gs,
                &l.backward_opts,
            )
            .into_all()
            .map_err(to_candle::<R>)?;
        let mut out = Vec::with_capacity(data.len());
        for (g, _) in &grads {
            R::grads_to_flat(g, &mut out);
        }
        Ok(out)
    }

    fn record(&self, forward: bool, t: Duration, samples: usize) {
        if let Ok(mut s) = self.layer.stats.lock() {
            if forward {
                s.forward += t;
                s.forward_samples += samples;
            } else {
                s.backward += t;
                s.backward_samples += samples;
            }
        }
    }
}

impl<R: FoldRule> CustomOp1 for FoldOp<R> {
    fn name(&self) -> &'static str {
        R::NAME
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let start = Instant::now();
        let (o1, o2) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::msg("fold layer: non-contiguous input"))?;
        let data = &storage.as_slice::<f64>()?[o1..o2];
        let (b, _) = layout.shape().dims2()?;
        let out = self.solve(data, b).map_err(to_candle::<R>)?;
        let n = out.len().checked_div(b).unwrap_or(0);
        self.record(true, start.elapsed(), b);
        Ok((CpuStorage::F64(out), Shape::from((b, n))))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let start = Instant::now();
        let out = self.backward(arg, res, grad_res)?;
        let g = Tensor::from_vec(out, arg.shape(), arg.device())?;
        self.record(false, start.elapsed(), arg.dim(0)?);
        Ok(Some(g))
    }
}

/// A candle error carrying `e` (find it again with [`fold_error`]).
fn to_candle<R: FoldRule>(e: BatchError) -> candle_core::Error {
    candle_core::Error::WrappedContext {
        wrapped: Box::new(e),
        context: format!("fold layer `{}`", R::NAME),
    }
}

/// The [`BatchError`] (failing sample and [`FoldError`]) inside a candle error raised by
/// a [`FoldLayer`], if it is one.
pub fn fold_error(e: &candle_core::Error) -> Option<&BatchError> {
    use candle_core::Error as E;
    match e {
        E::WrappedContext { wrapped, .. } => wrapped.downcast_ref::<BatchError>(),
        E::WithBacktrace { inner, .. } | E::Context { inner, .. } | E::WithPath { inner, .. } => {
            fold_error(inner)
        }
        _ => None,
    }
}
