//! An interpreter for IR terms on nalgebra values: the reference semantics that tests
//! compare derivatives, simplified terms and generated code against.

use crate::ir::graph::Graph;
use crate::ir::Node;
use egg::{Id, Language, Symbol};
use nalgebra::{DMatrix, DVector};
use std::collections::HashMap;

/// A run-time value of a term.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `f64`.
    Scalar(f64),
    /// `DVector<f64>`.
    Vector(DVector<f64>),
    /// `DMatrix<f64>` (sparse constants are interpreted densely).
    Matrix(DMatrix<f64>),
    /// An index set.
    Index(Vec<usize>),
    /// The outputs of an opaque call.
    Tuple(Vec<Value>),
    /// A structural zero.
    Zero,
}

impl Value {
    /// The scalar inside.
    pub fn scalar(&self) -> Result<f64, String> {
        match self {
            Value::Scalar(s) => Ok(*s),
            other => Err(format!("expected a scalar, found {other:?}")),
        }
    }

    /// The vector inside.
    pub fn vector(&self) -> Result<&DVector<f64>, String> {
        match self {
            Value::Vector(v) => Ok(v),
            other => Err(format!("expected a vector, found {}", other.describe())),
        }
    }

    /// The matrix inside.
    pub fn matrix(&self) -> Result<&DMatrix<f64>, String> {
        match self {
            Value::Matrix(m) => Ok(m),
            other => Err(format!("expected a matrix, found {}", other.describe())),
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "a scalar",
            Value::Vector(_) => "a vector",
            Value::Matrix(_) => "a matrix",
            Value::Index(_) => "an index set",
            Value::Tuple(_) => "a tuple",
            Value::Zero => "zero",
        }
    }

    /// Entries in column-major order (a scalar is one entry).
    pub fn entries(&self) -> Vec<f64> {
        match self {
            Value::Scalar(s) => vec![*s],
            Value::Vector(v) => v.as_slice().to_vec(),
            Value::Matrix(m) => m.as_slice().to_vec(),
            _ => Vec::new(),
        }
    }

    /// The same shape with entries replaced (column-major).
    pub fn with_entries(&self, e: &[f64]) -> Value {
        match self {
            Value::Scalar(_) => Value::Scalar(e[0]),
            Value::Vector(v) => Value::Vector(DVector::from_column_slice(&e[..v.len()])),
            Value::Matrix(m) => Value::Matrix(DMatrix::from_column_slice(
                m.nrows(),
                m.ncols(),
                &e[..m.len()],
            )),
            other => other.clone(),
        }
    }

    /// Applies `f` to every entry.
    pub fn map(&self, f: impl Fn(f64) -> f64) -> Result<Value, String> {
        Ok(match self {
            Value::Scalar(s) => Value::Scalar(f(*s)),
            Value::Vector(v) => Value::Vector(v.map(f)),
            Value::Matrix(m) => Value::Matrix(m.map(f)),
            other => return Err(format!("cannot map over {}", other.describe())),
        })
    }

    /// Combines two values of the same shape entrywise.
    pub fn zip(&self, other: &Value, f: impl Fn(f64, f64) -> f64) -> Result<Value, String> {
        Ok(match (self, other) {
            (Value::Scalar(a), Value::Scalar(b)) => Value::Scalar(f(*a, *b)),
            (Value::Vector(a), Value::Vector(b)) if a.len() == b.len() => {
                Value::Vector(a.zip_map(b, f))
            }
            (Value::Matrix(a), Value::Matrix(b)) if a.shape() == b.shape() => {
                Value::Matrix(a.zip_map(b, f))
            }
            (a, b) => {
                return Err(format!(
                    "shape mismatch: {} vs {}",
                    a.describe(),
                    b.describe()
                ))
            }
        })
    }
}

/// Opaque calls (`proj_polyhedron`, `qp_solve`, user primitives) for the interpreter.
pub trait Calls {
    /// Outputs of `name(args)`.
    fn call(&self, name: &str, args: &[Value]) -> Result<Vec<Value>, String>;
    /// Cotangents of the arguments given cotangents of the outputs.
    fn vjp(&self, name: &str, args: &[Value], cot: &[Value]) -> Result<Vec<Value>, String>;
    /// Tangents of the outputs given tangents of the arguments (`Value::Zero` for none).
    fn jvp(&self, name: &str, args: &[Value], tan: &[Value]) -> Result<Vec<Value>, String>;
}

/// Evaluates terms of `graph` under variable bindings.
pub struct Interpreter<'a> {
    graph: &'a Graph,
    env: &'a HashMap<Symbol, Value>,
    calls: Option<&'a dyn Calls>,
    memo: HashMap<Id, Value>,
}

impl<'a> Interpreter<'a> {
    /// An interpreter for `graph` with `env` binding its variables.
    pub fn new(graph: &'a Graph, env: &'a HashMap<Symbol, Value>) -> Self {
        Interpreter {
            graph,
            env,
            calls: None,
            memo: HashMap::new(),
        }
    }

    /// Supplies the opaque calls.
    pub fn with_calls(mut self, calls: &'a dyn Calls) -> Self {
        self.calls = Some(calls);
        self
    }

    /// The value of term `id`.
    pub fn eval(&mut self, id: Id) -> Result<Value, String> {
        if let Some(v) = self.memo.get(&id) {
            return Ok(v.clone());
        }
        // Evaluate children first, iteratively in id order (children have smaller ids).
        let reach = self.graph.reachable(&[id]);
        for (i, &r) in reach.iter().enumerate() {
            let nid = Id::from(i);
            if r && !self.memo.contains_key(&nid) {
                let v = self.eval_node(nid)?;
                self.memo.insert(nid, v);
            }
        }
        self.memo
            .get(&id)
            .cloned()
            .ok_or_else(|| "unreachable".to_string())
    }

    fn get(&self, id: Id) -> Result<&Value, String> {
        self.memo
            .get(&id)
            .ok_or_else(|| format!("child {id} not evaluated"))
    }

    fn eval_node(&self, id: Id) -> Result<Value, String> {
        let node = self.graph.node(id);
        let c = |k: usize| self.get(node.children()[k]);
        let sc = |k: usize| c(k).and_then(Value::scalar);
        let ind = |b: bool| if b { 1.0 } else { 0.0 };
        Ok(match node {
            Node::Num(l) => Value::Scalar(l.get()),
            Node::Var(s) => self
                .env
                .get(s)
                .cloned()
                .ok_or_else(|| format!("unbound variable {s}"))?,
            Node::Zero => Value::Zero,
            Node::Add(_) => c(0)?.zip(c(1)?, |a, b| a + b)?,
            Node::Neg(_) => c(0)?.map(|a| -a)?,
            Node::Mul(_) => {
                let s = sc(0)?;
                c(1)?.map(|a| s * a)?
            }
            Node::Div(_) => {
                let s = sc(1)?;
                c(0)?.map(|a| a / s)?
            }
            Node::MatVec(_) => Value::Vector(checked_mv(c(0)?.matrix()?, c(1)?.vector()?)?),
            Node::MatMul(_) => {
                let (a, b) = (c(0)?.matrix()?, c(1)?.matrix()?);
                if a.ncols() != b.nrows() {
                    return Err("matmul dimension mismatch".into());
                }
                Value::Matrix(a * b)
            }
            Node::Transpose(_) => Value::Matrix(c(0)?.matrix()?.transpose()),
            Node::Outer(_) => Value::Matrix(c(0)?.vector()? * c(1)?.vector()?.transpose()),
            Node::Dot(_) => {
                let (a, b) = (c(0)?.entries(), c(1)?.entries());
                if a.len() != b.len() {
                    return Err("dot dimension mismatch".into());
                }
                Value::Scalar(a.iter().zip(&b).map(|(x, y)| x * y).sum())
            }
            Node::Sum(_) => Value::Scalar(c(0)?.entries().iter().sum()),
            Node::MaxEntry(_) | Node::MinEntry(_) | Node::ArgMax(_) | Node::ArgMin(_) => {
                let v = c(0)?.vector()?;
                let max = matches!(node, Node::MaxEntry(_) | Node::ArgMax(_));
                let mut at = 0;
                for i in 1..v.len() {
                    if (max && v[i] > v[at]) || (!max && v[i] < v[at]) {
                        at = i;
                    }
                }
                if v.is_empty() {
                    return Err("reduction of an empty vector".into());
                }
                match node {
                    Node::MaxEntry(_) | Node::MinEntry(_) => Value::Scalar(v[at]),
                    _ => Value::Vector(DVector::from_fn(v.len(), |i, _| f64::from(i == at))),
                }
            }
            Node::Norm(_) => {
                Value::Scalar(c(0)?.entries().iter().map(|x| x * x).sum::<f64>().sqrt())
            }
            Node::NormSq(_) => Value::Scalar(c(0)?.entries().iter().map(|x| x * x).sum()),
            Node::CMul(_) => c(0)?.zip(c(1)?, |a, b| a * b)?,
            Node::CDiv(_) => c(0)?.zip(c(1)?, |a, b| a / b)?,
            Node::AddS(_) => {
                let s = sc(1)?;
                c(0)?.map(|a| a + s)?
            }
            Node::Recip(_) => c(0)?.map(|a| 1.0 / a)?,
            Node::SafeRecip(_) => c(0)?.map(|a| if a == 0.0 { 0.0 } else { 1.0 / a })?,
            Node::Exp(_) => c(0)?.map(f64::exp)?,
            Node::Ln(_) => c(0)?.map(f64::ln)?,
            Node::Sin(_) => c(0)?.map(f64::sin)?,
            Node::Cos(_) => c(0)?.map(f64::cos)?,
            Node::Tanh(_) => c(0)?.map(f64::tanh)?,
            Node::Sqrt(_) => c(0)?.map(f64::sqrt)?,
            Node::Abs(_) => c(0)?.map(f64::abs)?,
            Node::Sigmoid(_) => c(0)?.map(|x| 1.0 / (1.0 + (-x).exp()))?,
            Node::Softplus(_) => c(0)?.map(|x| x.max(0.0) + (-x.abs()).exp().ln_1p())?,
            Node::Relu(_) => c(0)?.map(|x| x.max(0.0))?,
            Node::Sign(_) => c(0)?.map(|x| {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            })?,
            Node::Powi(_) => {
                let k = sc(1)? as i32;
                c(0)?.map(|x| x.powi(k))?
            }
            Node::Powf(_) => {
                let p = sc(1)?;
                c(0)?.map(|x| x.powf(p))?
            }
            Node::Max(_) => {
                let s = sc(1)?;
                c(0)?.map(|x| x.max(s))?
            }
            Node::Min(_) => {
                let s = sc(1)?;
                c(0)?.map(|x| x.min(s))?
            }
            Node::Clamp(_) => {
                let (lo, hi) = (sc(1)?, sc(2)?);
                c(0)?.map(|x| x.max(lo).min(hi))?
            }
            Node::SoftThreshold(_) => {
                let t = sc(1)?;
                c(0)?.map(|x| x.signum() * (x.abs() - t).max(0.0))?
            }
            Node::Softmax(_) => Value::Vector(softmax(c(0)?.vector()?)),
            Node::LogSumExp(_) => {
                let v = c(0)?.vector()?;
                let m = v.max();
                Value::Scalar(m + v.map(|x| (x - m).exp()).sum().ln())
            }
            Node::ProjSimplex(_) => Value::Vector(proj_simplex(c(0)?.vector()?, sc(1)?)),
            Node::ProjCappedSimplex(_) => {
                Value::Vector(proj_capped_simplex(c(0)?.vector()?, sc(1)?))
            }
            Node::ProjL2Ball(_) => {
                let (v, r) = (c(0)?.vector()?, sc(1)?);
                let n = v.norm();
                Value::Vector(if n <= r { v.clone() } else { v * (r / n) })
            }
            Node::Solve(_) | Node::SolveT(_) => {
                let m = c(0)?.matrix()?;
                let lu = if matches!(node, Node::SolveT(_)) {
                    m.transpose().lu()
                } else {
                    m.clone().lu()
                };
                match c(1)? {
                    Value::Vector(r) => Value::Vector(lu.solve(r).ok_or("singular solve")?),
                    Value::Matrix(r) => Value::Matrix(lu.solve(r).ok_or("singular solve")?),
                    other => return Err(format!("solve with {}", other.describe())),
                }
            }
            Node::MaskIn(_) => {
                let (lo, hi) = (sc(1)?, sc(2)?);
                c(0)?.map(|x| ind(lo < x && x < hi))?
            }
            Node::Gt(_) => {
                let s = sc(1)?;
                c(0)?.map(|x| ind(x > s))?
            }
            Node::Lt(_) => {
                let s = sc(1)?;
                c(0)?.map(|x| ind(x < s))?
            }
            Node::Ge(_) => {
                let s = sc(1)?;
                c(0)?.map(|x| ind(x >= s))?
            }
            Node::Le(_) => {
                let s = sc(1)?;
                c(0)?.map(|x| ind(x <= s))?
            }
            Node::Outside(_) => {
                let t = sc(1)?;
                c(0)?.map(|x| ind(x.abs() > t))?
            }
            Node::Ones(_) => c(0)?.map(|_| 1.0)?,
            Node::Eye(_) => {
                let n = c(0)?.vector()?.len();
                Value::Matrix(DMatrix::identity(n, n))
            }
            Node::Diag(_) => Value::Matrix(DMatrix::from_diagonal(c(0)?.vector()?)),
            Node::ColumnSum(_) => Value::Vector(c(0)?.matrix()?.column_sum()),
            Node::Diagonal(_) => Value::Vector(c(0)?.matrix()?.diagonal()),
            Node::Select(_) => {
                if sc(0)? != 0.0 {
                    c(1)?.clone()
                } else {
                    c(2)?.clone()
                }
            }
            Node::Support(_) => Value::Index(
                c(0)?
                    .entries()
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| **x != 0.0)
                    .map(|(i, _)| i)
                    .collect(),
            ),
            Node::Card(_) => match c(0)? {
                Value::Index(s) => Value::Scalar(s.len() as f64),
                other => return Err(format!("card of {}", other.describe())),
            },
            Node::GatherV(_) => {
                let (v, s) = (c(0)?.vector()?, index(c(1)?)?);
                Value::Vector(DVector::from_iterator(s.len(), s.iter().map(|&i| v[i])))
            }
            Node::GatherM(_) => {
                let (a, s) = (c(0)?.matrix()?, index(c(1)?)?);
                Value::Matrix(DMatrix::from_fn(s.len(), s.len(), |i, j| a[(s[i], s[j])]))
            }
            Node::GatherRows(_) => {
                let (a, s) = (c(0)?.matrix()?, index(c(1)?)?);
                Value::Matrix(DMatrix::from_fn(s.len(), a.ncols(), |i, j| a[(s[i], j)]))
            }
            Node::GatherCols(_) => {
                let (a, s) = (c(0)?.matrix()?, index(c(1)?)?);
                Value::Matrix(DMatrix::from_fn(a.nrows(), s.len(), |i, j| a[(i, s[j])]))
            }
            Node::Scatter(_) => {
                let (a, s, like) = (c(0)?.vector()?, index(c(1)?)?, c(2)?.vector()?);
                let mut out = DVector::zeros(like.len());
                for (k, &i) in s.iter().enumerate() {
                    out[i] = a[k];
                }
                Value::Vector(out)
            }
            Node::Get([t, i]) => {
                let k = self.get(*i)?.scalar()? as usize;
                match self.get(*t)? {
                    Value::Tuple(items) => {
                        items.get(k).cloned().ok_or("tuple index out of range")?
                    }
                    other => return Err(format!("get from {}", other.describe())),
                }
            }
            Node::Call(name, args) => {
                let calls = self.calls.ok_or("no opaque calls supplied")?;
                let vals = args
                    .iter()
                    .map(|a| self.get(*a).cloned())
                    .collect::<Result<Vec<_>, _>>()?;
                Value::Tuple(calls.call(name.as_str(), &vals)?)
            }
            Node::CallVjp(ch) | Node::CallJvp(ch) => {
                let calls = self.calls.ok_or("no opaque calls supplied")?;
                let Node::Call(name, args) = self.graph.node(ch[0]) else {
                    return Err("vjp/jvp of a non-call".into());
                };
                let vals = args
                    .iter()
                    .map(|a| self.get(*a).cloned())
                    .collect::<Result<Vec<_>, _>>()?;
                let seeds = ch[1..]
                    .iter()
                    .map(|a| self.get(*a).cloned())
                    .collect::<Result<Vec<_>, _>>()?;
                Value::Tuple(if matches!(node, Node::CallVjp(_)) {
                    calls.vjp(name.as_str(), &vals, &seeds)?
                } else {
                    calls.jvp(name.as_str(), &vals, &seeds)?
                })
            }
        })
    }
}

fn index(v: &Value) -> Result<&[usize], String> {
    match v {
        Value::Index(s) => Ok(s),
        other => Err(format!("expected an index set, found {}", other.describe())),
    }
}

fn checked_mv(a: &DMatrix<f64>, x: &DVector<f64>) -> Result<DVector<f64>, String> {
    if a.ncols() != x.len() {
        return Err(format!("matvec {}x{} by {}", a.nrows(), a.ncols(), x.len()));
    }
    Ok(a * x)
}

/// Softmax, shifted by the maximum for stability.
pub fn softmax(v: &DVector<f64>) -> DVector<f64> {
    let m = v.max();
    let e = v.map(|x| (x - m).exp());
    let s = e.sum();
    e / s
}

/// Euclidean projection onto `{x ≥ 0, Σx = r}` by sorting (reference implementation).
pub fn proj_simplex(v: &DVector<f64>, r: f64) -> DVector<f64> {
    let mut u: Vec<f64> = v.iter().copied().collect();
    u.sort_by(|a, b| b.total_cmp(a));
    let mut cum = 0.0;
    let mut tau = 0.0;
    for (k, &x) in u.iter().enumerate() {
        cum += x;
        let t = (cum - r) / (k as f64 + 1.0);
        if x - t > 0.0 {
            tau = t;
        }
    }
    v.map(|x| (x - tau).max(0.0))
}

/// Euclidean projection onto `{0 ≤ x ≤ 1, Σx = k}` by bisection on the shift
/// (reference implementation).
pub fn proj_capped_simplex(v: &DVector<f64>, k: f64) -> DVector<f64> {
    let total = |tau: f64| v.iter().map(|x| (x - tau).clamp(0.0, 1.0)).sum::<f64>();
    let (mut lo, mut hi) = (v.min() - 1.0, v.max());
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if total(mid) > k {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    // Exact shift from the free coordinates at the bisection's bracket.
    let tau = 0.5 * (lo + hi);
    let free: Vec<f64> = v
        .iter()
        .copied()
        .filter(|x| *x - tau > 0.0 && *x - tau < 1.0)
        .collect();
    let ones = v.iter().filter(|x| **x - tau >= 1.0).count() as f64;
    let tau = if free.is_empty() {
        tau
    } else {
        (free.iter().sum::<f64>() + ones - k) / free.len() as f64
    };
    v.map(|x| (x - tau).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::dvector;

    #[test]
    fn simplex_projection_reference() {
        let p = proj_simplex(&dvector![0.5, 1.5, -1.0], 1.0);
        assert!((p - dvector![0.0, 1.0, 0.0]).norm() < 1e-15);
        let p = proj_simplex(&dvector![0.3, 0.4, 0.1], 1.0);
        assert!((p.sum() - 1.0).abs() < 1e-15);
        assert!((p - dvector![0.3 + 0.2 / 3.0, 0.4 + 0.2 / 3.0, 0.1 + 0.2 / 3.0]).norm() < 1e-15);
    }

    #[test]
    fn capped_simplex_reference() {
        let p = proj_capped_simplex(&dvector![2.0, 0.3, 0.2, -1.0], 2.0);
        assert!((p.sum() - 2.0).abs() < 1e-12);
        assert!((p[0] - 1.0).abs() < 1e-12);
        assert!((p[1] - p[2] - 0.1).abs() < 1e-12);
    }
}
