//! Property tests of the symbolic derivatives (issue 3, item 5).
//!
//! A generator writes random, well-typed update rules as Rust source text (so attribute
//! parsing, signature analysis and lowering run too) over scalars, vectors and matrices of
//! two independent dimensions, with vector/scalar/matrix parameters and constants and one
//! or two state blocks. For every rule and random inputs the interpreter evaluates:
//!
//! * (a) `Φu`, `Ψδθ` on every basis direction and `Φᵀv`, `Ψᵀv` against central finite
//!   differences of the interpreted rule (Richardson-extrapolated), away from kinks;
//! * (b) the adjoint identities `⟨v, Φu⟩ = ⟨Φᵀv, u⟩` and `⟨v, Ψδθ⟩ = ⟨Ψᵀv, δθ⟩`;
//! * (c) the structured Jacobians of `diff::jacobian` against the JVP columns.
//!
//! (a) skips points within `KINK_MARGIN` of a kink (mask arguments vs thresholds, norms
//! vs 0, projections vs the boundary of their support) and columns whose differences
//! with `H` and `H/2` disagree; half of the points snap inputs to threshold literals, so
//! (b) and (c) also run exactly on kinks, where the one-sided masks must agree.
//!
//! Rules are drawn from choice streams (Hypothesis style): shrinking them towards zeros
//! and shorter lengths yields smaller rules, and every failure message carries the rule's
//! source. The proptest seed is fixed, so runs are reproducible; `FOLD_PROPTEST_SCALE=k`
//! runs k times the cases for a longer hunt (k = 100, 500 000 rules, passes).

use egg::{Id, Language, Symbol};
use fold_codegen::diff;
use fold_codegen::interp::{Interpreter, Value};
use fold_codegen::ir::graph::Graph;
use fold_codegen::ir::{Node, Role as IrRole};
use fold_codegen::rule::{self, Rule};
use nalgebra::{DMatrix, DVector};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Mutex;

// ---------------------------------------------------------------------------------------
// The rule generator.
// ---------------------------------------------------------------------------------------

/// A type of the rule language; dimensions are indices into `dims` (two symbolic sizes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    S,
    V(usize),
    M(usize, usize),
}

/// A generated expression: atomic source text (a name, a literal, or parenthesized),
/// its type, a rough bound `hi` on its entries' magnitude for inputs in [-1.5, 1.5],
/// and, for expressions positive by construction, a lower bound `lo > 0`.
#[derive(Clone, Debug)]
struct E {
    src: String,
    ty: Ty,
    hi: f64,
    lo: Option<f64>,
}

impl E {
    fn new(src: String, ty: Ty, hi: f64, lo: Option<f64>) -> E {
        E { src, ty, hi, lo }
    }
    fn r(&self) -> String {
        format!("&{}", self.src)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    State,
    Param,
    Const,
}

#[derive(Clone, Debug)]
struct ArgSpec {
    name: String,
    ty: Ty,
    role: Role,
    /// Sampled in [0.5, 1.5] instead of [-1, 1].
    positive: bool,
}

/// Which family of rules a test draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    /// One state block; extra arguments of any kind.
    Single,
    /// State `(x, z)` of two dimensions.
    TwoBlock,
    /// One state block and at least one matrix parameter.
    MatrixParam,
}

/// A generated rule: its attribute, function source and argument specs.
#[derive(Clone)]
struct Spec {
    dims: [usize; 2],
    args: Vec<ArgSpec>,
    blocks: Vec<usize>,
    attr: String,
    func: String,
    /// Choices consumed.
    used: usize,
}

impl Spec {
    fn len(&self, ty: Ty) -> usize {
        match ty {
            Ty::S => 1,
            Ty::V(d) => self.dims[d],
            Ty::M(a, b) => self.dims[a] * self.dims[b],
        }
    }
    fn source(&self) -> String {
        format!("#[fold({})]\n{}", self.attr, self.func)
    }
}

const LITS: [f64; 7] = [0.5, 1.0, 2.0, 0.3, 1.5, 0.7, 3.0];

fn lit_src(v: f64) -> String {
    let s = format!("{v:?}");
    if v < 0.0 {
        format!("({s})")
    } else {
        s
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// Draws rules from a choice sequence; past its end every choice is 0, the simplest.
struct Gen<'a> {
    ch: &'a [u32],
    at: usize,
    dims: [usize; 2],
    ndims: usize,
    /// Named values: arguments and `let` bindings.
    scope: Vec<E>,
    /// Inside `.map(|e| …)`: the element (taken out while generating an operand that
    /// must not depend on it).
    elem: Option<E>,
    /// Inside `.map(|e| …)`: only scalar methods, no calls or reductions.
    in_map: bool,
    /// Matrix arguments usable as the `A` of `proj_affine` (fewer rows than columns).
    affine: Vec<E>,
    /// Roles of the arguments, by name.
    roles: HashMap<String, Role>,
}

impl<'a> Gen<'a> {
    fn pick(&mut self, n: usize) -> usize {
        let c = self.ch.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        c as usize % n
    }

    fn dim(&mut self) -> usize {
        self.pick(self.ndims)
    }

    fn array_ty(&mut self) -> Ty {
        let a = self.dim();
        if self.pick(3) < 2 {
            Ty::V(a)
        } else {
            let b = self.dim();
            Ty::M(a, b)
        }
    }

    fn any_ty(&mut self) -> Ty {
        if self.pick(3) == 0 {
            Ty::S
        } else {
            self.array_ty()
        }
    }

    fn len(&self, ty: Ty) -> f64 {
        match ty {
            Ty::S => 1.0,
            Ty::V(d) => self.dims[d] as f64,
            Ty::M(a, b) => (self.dims[a] * self.dims[b]) as f64,
        }
    }

    fn literal(&mut self) -> E {
        let v = LITS[self.pick(LITS.len())];
        let v = if self.pick(4) == 3 { -v } else { v };
        E::new(lit_src(v), Ty::S, v.abs(), (v > 0.0).then_some(v))
    }

    fn pos_literal(&mut self) -> E {
        let v = LITS[self.pick(LITS.len())];
        E::new(lit_src(v), Ty::S, v, Some(v))
    }

    /// A name or a literal of type `ty`; matrices without a variable are built from one.
    fn leaf(&mut self, ty: Ty) -> E {
        // State and parameters are drawn more often than constants (weights 3, 2, 1);
        // inside `.map` the element is drawn about half of the time.
        let mut cands: Vec<E> = Vec::new();
        for v in self.scope.iter().filter(|v| v.ty == ty) {
            let w = match self.roles.get(&v.src) {
                Some(Role::State) => 3,
                Some(Role::Param) => 2,
                _ => 1,
            };
            cands.extend(std::iter::repeat_n(v.clone(), w));
        }
        if let Some(e) = &self.elem {
            if ty == Ty::S {
                let k = cands.len() + 1;
                cands.splice(0..0, std::iter::repeat_n(e.clone(), k));
            }
        }
        let lit_slot = ty == Ty::S;
        let n = cands.len() + usize::from(lit_slot);
        if n == 0 {
            return match ty {
                Ty::M(a, b) => {
                    let t: Vec<E> = self
                        .scope
                        .iter()
                        .filter(|v| v.ty == Ty::M(b, a))
                        .cloned()
                        .collect();
                    if !t.is_empty() && self.pick(2) == 0 {
                        let m = t[self.pick(t.len())].clone();
                        E::new(format!("{}.transpose()", m.src), ty, m.hi, None)
                    } else {
                        let (u, w) = (self.leaf(Ty::V(a)), self.leaf(Ty::V(b)));
                        outer(&u, &w)
                    }
                }
                _ => unreachable!("every vector type has a variable"),
            };
        }
        let k = self.pick(n);
        if k < cands.len() {
            cands[k].clone()
        } else {
            self.literal()
        }
    }

    /// Whether this node is a leaf: forced at the depth budget, and allowed (with
    /// probability 3/10, choice 0 first) once the required depth is reached.
    fn is_leaf(&mut self, need: usize, budget: usize) -> bool {
        budget <= 1 || (need <= 1 && self.pick(10) < 3)
    }

    fn gen(&mut self, ty: Ty, need: usize, budget: usize) -> E {
        if self.is_leaf(need, budget) {
            return self.leaf(ty);
        }
        let (n1, b1) = (need.saturating_sub(1), budget - 1);
        let e = match ty {
            Ty::S => self.gen_s(n1, b1),
            Ty::V(d) => self.gen_v(d, n1, b1),
            Ty::M(a, b) => self.gen_m(a, b, n1, b1),
        };
        tame(e)
    }

    /// `e` scaled (or squashed) so that its entries stay within `limit`: arguments of
    /// `exp` and friends, thresholds and radii.
    fn bounded(&mut self, e: E, limit: f64) -> E {
        if e.hi <= limit {
            return e;
        }
        for c in [0.5, 0.25, 0.1, 0.01, 0.001, 1e-4, 1e-5, 1e-6] {
            if e.hi * c <= limit {
                return E::new(
                    format!("({} * {})", e.src, lit_src(c)),
                    e.ty,
                    e.hi * c,
                    e.lo.map(|l| l * c),
                );
            }
        }
        self.unary_fn(&e, "tanh", 1.0, None)
    }

    /// An elementwise function: a method inside `.map` or on scalars, else a primitive.
    fn unary_fn(&mut self, a: &E, f: &str, hi: f64, lo: Option<f64>) -> E {
        let src = if self.in_map || (a.ty == Ty::S && self.pick(2) == 0) {
            match f {
                // These have no scalar method in Rust.
                "sigmoid" | "softplus" | "relu" => format!("{f}({})", a.src),
                _ => format!("{}.{f}()", a.src),
            }
        } else if a.ty == Ty::S {
            format!("{f}({})", a.src)
        } else {
            format!("{f}({})", a.r())
        };
        E::new(src, a.ty, hi, lo)
    }

    fn has_calls(&self) -> bool {
        !self.in_map
    }

    fn gen_s(&mut self, need: usize, budget: usize) -> E {
        let in_map = self.in_map;
        let nopt = if in_map { 5 } else { 9 };
        match self.pick(nopt) {
            0 => {
                let a = self.gen(Ty::S, need, budget);
                let b = self.gen(Ty::S, 0, budget);
                match self.pick(3) {
                    0 => add(&a, &b),
                    1 => sub(&a, &b),
                    _ => E::new(
                        format!("({} * {})", a.src, b.src),
                        Ty::S,
                        a.hi * b.hi,
                        a.lo.zip(b.lo).map(|(x, y)| x * y),
                    ),
                }
            }
            1 => {
                let a = self.gen(Ty::S, need, budget);
                let b = self.pos(Ty::S, 0, budget);
                let (bl, bh) = (b.lo.unwrap_or(1.0), b.hi);
                E::new(
                    format!("({} / {})", a.src, b.src),
                    Ty::S,
                    a.hi / bl,
                    a.lo.map(|l| l / bh),
                )
            }
            2 => {
                let a = self.gen(Ty::S, need, budget);
                neg(&a)
            }
            3 => {
                let a = self.gen(Ty::S, need, budget);
                self.smooth_method(a)
            }
            4 => {
                let a = self.pos(Ty::S, need, budget);
                self.pos_method(a)
            }
            5 => {
                let t = self.array_ty();
                let a = self.gen(t, need, budget);
                let l = self.len(t);
                match self.pick(4) {
                    0 => {
                        let b = self.gen(t, 0, budget);
                        E::new(
                            format!("{}.dot({})", a.src, b.r()),
                            Ty::S,
                            l * a.hi * b.hi,
                            None,
                        )
                    }
                    1 => E::new(format!("{}.norm()", a.src), Ty::S, l.sqrt() * a.hi, None),
                    2 => E::new(
                        format!("{}.norm_squared()", a.src),
                        Ty::S,
                        l * a.hi * a.hi,
                        None,
                    ),
                    _ => E::new(
                        format!("{}.sum()", a.src),
                        Ty::S,
                        l * a.hi,
                        a.lo.map(|x| l * x),
                    ),
                }
            }
            6 => {
                let d = self.dim();
                let a = self.gen(Ty::V(d), need, budget);
                let hi = a.hi + (self.dims[d] as f64).ln();
                E::new(format!("log_sum_exp({})", a.r()), Ty::S, hi, None)
            }
            7 => {
                let a = self.gen(Ty::S, need, budget);
                match self.pick(3) {
                    0 => {
                        let hi = a.hi;
                        E::new(format!("relu({})", a.src), Ty::S, hi, None)
                    }
                    1 => {
                        let (hi, lo) = (sigmoid(a.hi), sigmoid(-a.hi));
                        E::new(format!("sigmoid({})", a.src), Ty::S, hi, Some(lo))
                    }
                    _ => {
                        let a = self.bounded(a, 20.0);
                        let (hi, lo) = (softplus(a.hi), softplus(-a.hi));
                        E::new(format!("softplus({})", a.src), Ty::S, hi, Some(lo))
                    }
                }
            }
            _ => {
                // A scalar of an array: the entry sum of a mapped or elementwise term.
                let t = self.array_ty();
                let a = self.gen(t, need, budget);
                let l = self.len(t);
                let a = self.bounded(a, 3.0);
                E::new(
                    format!("exp({}).sum()", a.r()),
                    Ty::S,
                    l * a.hi.exp(),
                    Some(l * (-a.hi).exp()),
                )
            }
        }
    }

    /// `sin cos tanh exp abs powi max min` of any scalar (or element).
    fn smooth_method(&mut self, a: E) -> E {
        match self.pick(9) {
            0 => self.unary_fn(&a, "sin", 1.0, None),
            1 => self.unary_fn(&a, "cos", 1.0, None),
            2 => self.unary_fn(&a, "tanh", a.hi.min(1.0), None),
            3 => {
                let a = self.bounded(a, 3.0);
                self.unary_fn(&a, "exp", a.hi.exp(), Some((-a.hi).exp()))
            }
            4 => self.unary_fn(&a, "abs", a.hi, None),
            5 => E::new(
                format!("{}.powi(2)", a.src),
                a.ty,
                a.hi * a.hi,
                a.lo.map(|l| l * l),
            ),
            6 => E::new(
                format!("{}.powi(3)", a.src),
                a.ty,
                a.hi.powi(3),
                a.lo.map(|l| l.powi(3)),
            ),
            k => {
                // The bound of `.max`/`.min` is a scalar, never the mapped element.
                let saved = self.elem.take();
                let c = self.leaf(Ty::S);
                let c = self.bounded(c, 3.0);
                self.elem = saved;
                let (m, lo) = if k == 7 {
                    ("max", c.lo.or(a.lo).map(|l| l.max(a.lo.unwrap_or(0.0))))
                } else {
                    ("min", a.lo.zip(c.lo).map(|(x, y)| x.min(y)))
                };
                E::new(
                    format!("{}.{m}({})", a.src, c.src),
                    a.ty,
                    a.hi.max(c.hi),
                    lo,
                )
            }
        }
    }

    /// `ln sqrt powf powi(-1)` of a positive scalar (or element).
    fn pos_method(&mut self, a: E) -> E {
        let (lo, hi) = (a.lo.unwrap_or(1.0), a.hi);
        match self.pick(5) {
            0 => {
                let b = lo.ln().abs().max(hi.ln().abs());
                self.unary_fn(&a, "ln", b, None)
            }
            1 => self.unary_fn(&a, "sqrt", hi.sqrt(), Some(lo.sqrt())),
            2 => {
                let c = [0.5, 1.5, -0.5, 2.5][self.pick(4)];
                let (x, y) = (lo.powf(c), hi.powf(c));
                E::new(
                    format!("{}.powf({})", a.src, lit_src(c)),
                    a.ty,
                    x.max(y),
                    Some(x.min(y)),
                )
            }
            3 => {
                // An exponent that may depend on the state or a parameter (a scalar, never
                // the mapped element).
                let saved = self.elem.take();
                let c = self.gen(Ty::S, 0, 2);
                let c = self.bounded(c, 2.0);
                self.elem = saved;
                let b = lo.powf(-c.hi).max(hi.powf(c.hi)).max(hi.powf(-c.hi));
                let l = lo.powf(c.hi).min(lo.powf(-c.hi)).min(hi.powf(-c.hi));
                E::new(format!("{}.powf({})", a.src, c.src), a.ty, b, Some(l))
            }
            _ => E::new(
                format!("{}.powi(-1)", a.src),
                a.ty,
                1.0 / lo,
                Some(1.0 / hi),
            ),
        }
    }

    /// An expression of type `ty` positive by construction, entries ≥ 0.05.
    fn pos(&mut self, ty: Ty, need: usize, budget: usize) -> E {
        if self.is_leaf(need, budget) {
            let cands: Vec<E> = self
                .scope
                .iter()
                .chain(self.elem.iter())
                .filter(|v| v.ty == ty && v.lo.is_some())
                .cloned()
                .collect();
            if ty == Ty::S && (cands.is_empty() || self.pick(2) == 0) {
                return self.pos_literal();
            }
            if !cands.is_empty() {
                return cands[self.pick(cands.len())].clone();
            }
            // No positive variable: the exponential of a leaf.
            let a = self.leaf(ty);
            let a = self.bounded(a, 3.0);
            return self.unary_fn(&a, "exp", a.hi.exp(), Some((-a.hi).exp()));
        }
        let (n1, b1) = (need.saturating_sub(1), budget - 1);
        let arr = ty != Ty::S;
        let e = match self.pick(9) {
            0 => {
                let a = self.gen(ty, n1, b1);
                let a = self.bounded(a, 3.0);
                self.unary_fn(&a, "exp", a.hi.exp(), Some((-a.hi).exp()))
            }
            1 if self.has_calls() => {
                let a = self.gen(ty, n1, b1);
                let a = self.bounded(a, 3.0);
                let f = if self.pick(2) == 0 {
                    "sigmoid"
                } else {
                    "softplus"
                };
                let (hi, lo) = if f == "sigmoid" {
                    (sigmoid(a.hi), sigmoid(-a.hi))
                } else {
                    (softplus(a.hi), softplus(-a.hi))
                };
                self.unary_fn(&a, f, hi, Some(lo))
            }
            2 => {
                // Square plus a constant.
                let a = self.gen(ty, n1, b1);
                let c = self.pos_literal();
                let hi = a.hi * a.hi + c.hi;
                let src = if !arr {
                    format!("({}.powi(2) + {})", a.src, c.src)
                } else if self.pick(2) == 0 {
                    format!("{}.component_mul({}).add_scalar({})", a.src, a.r(), c.src)
                } else {
                    format!("{}.map(|e| e * e + {})", a.src, c.src)
                };
                E::new(src, ty, hi, c.lo)
            }
            3 => {
                let a = self.pos(ty, n1, b1);
                let b = self.pos(ty, 0, b1);
                let (al, bl) = (a.lo.unwrap_or(1.0), b.lo.unwrap_or(1.0));
                if self.pick(2) == 0 {
                    E::new(
                        format!("({} + {})", a.src, b.src),
                        ty,
                        a.hi + b.hi,
                        Some(al + bl),
                    )
                } else if !arr {
                    E::new(
                        format!("({} * {})", a.src, b.src),
                        ty,
                        a.hi * b.hi,
                        Some(al * bl),
                    )
                } else {
                    E::new(
                        format!("{}.component_mul({})", a.src, b.r()),
                        ty,
                        a.hi * b.hi,
                        Some(al * bl),
                    )
                }
            }
            4 => {
                let a = self.pos(ty, n1, b1);
                let b = self.pos(ty, 0, b1);
                let (al, bl) = (a.lo.unwrap_or(1.0), b.lo.unwrap_or(1.0));
                let src = if arr {
                    format!("{}.component_div({})", a.src, b.r())
                } else {
                    format!("({} / {})", a.src, b.src)
                };
                E::new(src, ty, a.hi / bl, Some(al / b.hi))
            }
            5 => {
                let a = self.pos(ty, n1, b1);
                if arr && self.pick(2) == 0 {
                    let (lo, hi) = (a.lo.unwrap_or(1.0), a.hi);
                    E::new(format!("sqrt({})", a.r()), ty, hi.sqrt(), Some(lo.sqrt()))
                } else if arr {
                    let (lo, hi) = (a.lo.unwrap_or(1.0), a.hi);
                    E::new(
                        format!("{}.map(|e| e.powf(1.5))", a.src),
                        ty,
                        hi.powf(1.5),
                        Some(lo.powf(1.5)),
                    )
                } else {
                    let m = self.pos_method(a);
                    if m.lo.is_some() {
                        m
                    } else {
                        E::new(format!("{}.exp()", m.src), ty, m.hi.exp(), Some(0.5))
                    }
                }
            }
            6 => {
                let a = self.gen(ty, n1, b1);
                let c = self.pos_literal();
                let src = if arr && self.has_calls() {
                    format!("max({}, {})", a.r(), c.src)
                } else if arr {
                    format!("{}.map(|e| e.max({}))", a.src, c.src)
                } else {
                    format!("{}.max({})", a.src, c.src)
                };
                E::new(src, ty, a.hi.max(c.hi), c.lo)
            }
            7 => {
                let a = self.gen(ty, n1, b1);
                let c = self.pos_literal();
                let src = if arr {
                    format!("{}.abs().add_scalar({})", a.src, c.src)
                } else {
                    format!("({}.abs() + {})", a.src, c.src)
                };
                E::new(src, ty, a.hi + c.hi, c.lo)
            }
            _ => {
                let a = self.gen(ty, n1, b1);
                let src = if arr && self.has_calls() {
                    format!("cos({}).add_scalar(2.0)", a.r())
                } else if arr {
                    format!("{}.map(|e| e.cos() + 2.0)", a.src)
                } else {
                    format!("({}.cos() + 2.0)", a.src)
                };
                E::new(src, ty, 3.0, Some(1.0))
            }
        };
        let e = tame(e);
        if e.lo.unwrap_or(0.0) < 0.05 {
            let src = if arr {
                format!("{}.add_scalar(0.5)", e.src)
            } else {
                format!("({} + 0.5)", e.src)
            };
            E::new(src, ty, e.hi + 0.5, Some(0.5))
        } else {
            e
        }
    }

    /// A positive scalar bounded by `limit`: radii, thresholds.
    fn pos_scalar(&mut self, budget: usize, limit: f64) -> E {
        let p = self.pos(Ty::S, 0, budget);
        self.bounded(p, limit)
    }

    fn gen_v(&mut self, d: usize, need: usize, budget: usize) -> E {
        let ty = Ty::V(d);
        match self.pick(12) {
            0 => {
                let a = self.gen(ty, need, budget);
                let b = self.gen(ty, 0, budget);
                if self.pick(2) == 0 {
                    add(&a, &b)
                } else {
                    sub(&a, &b)
                }
            }
            1 => {
                let a = self.gen(ty, need, budget);
                self.scale(a, budget)
            }
            2 => {
                let a = self.gen(ty, need, budget);
                neg(&a)
            }
            3 => {
                let e = self.dim();
                let x = self.gen(Ty::V(e), need, budget);
                let k = self.dims[e] as f64;
                if self.pick(2) == 0 {
                    let m = self.gen(Ty::M(d, e), 0, budget);
                    E::new(
                        format!("({} * {})", m.src, x.src),
                        ty,
                        k * m.hi * x.hi,
                        None,
                    )
                } else {
                    let m = self.gen(Ty::M(e, d), 0, budget);
                    E::new(
                        format!("({}.transpose() * {})", m.src, x.src),
                        ty,
                        k * m.hi * x.hi,
                        None,
                    )
                }
            }
            4 => {
                let a = self.gen(ty, need, budget);
                self.componentwise(a, budget)
            }
            5 => {
                let a = self.gen(ty, need, budget);
                self.map(a, budget)
            }
            6 => {
                let a = self.gen(ty, need, budget);
                let s = self.gen(Ty::S, 0, budget);
                E::new(
                    format!("{}.add_scalar({})", a.src, s.src),
                    ty,
                    a.hi + s.hi,
                    a.lo.zip(s.lo).map(|(x, y)| x + y),
                )
            }
            7 => self.elementwise(ty, need, budget),
            8 => {
                let a = self.gen(ty, need, budget);
                self.mask(a, budget)
            }
            9 => {
                let a = self.gen(ty, need, budget);
                let a = self.bounded(a, 10.0);
                let lo = (-2.0 * a.hi).exp() / self.dims[d] as f64;
                E::new(format!("softmax({})", a.r()), ty, 1.0, Some(lo))
            }
            _ => {
                let a = self.gen(ty, need, budget);
                self.projection(a, d, budget)
            }
        }
    }

    fn gen_m(&mut self, a: usize, b: usize, need: usize, budget: usize) -> E {
        let ty = Ty::M(a, b);
        match self.pick(11) {
            0 => {
                let x = self.gen(ty, need, budget);
                let y = self.gen(ty, 0, budget);
                if self.pick(2) == 0 {
                    add(&x, &y)
                } else {
                    sub(&x, &y)
                }
            }
            1 => {
                let x = self.gen(ty, need, budget);
                self.scale(x, budget)
            }
            2 => {
                let x = self.gen(ty, need, budget);
                neg(&x)
            }
            3 => {
                let c = self.dim();
                let x = self.gen(Ty::M(a, c), need, budget);
                let y = self.gen(Ty::M(c, b), 0, budget);
                let k = self.dims[c] as f64;
                E::new(
                    format!("({} * {})", x.src, y.src),
                    ty,
                    k * x.hi * y.hi,
                    None,
                )
            }
            4 => {
                let x = self.gen(Ty::M(b, a), need, budget);
                E::new(format!("{}.transpose()", x.src), ty, x.hi, x.lo)
            }
            5 => {
                let u = self.gen(Ty::V(a), need, budget);
                let w = self.gen(Ty::V(b), 0, budget);
                outer(&u, &w)
            }
            6 => {
                let x = self.gen(ty, need, budget);
                self.componentwise(x, budget)
            }
            7 => {
                let x = self.gen(ty, need, budget);
                self.map(x, budget)
            }
            8 => {
                let x = self.gen(ty, need, budget);
                let s = self.gen(Ty::S, 0, budget);
                E::new(
                    format!("{}.add_scalar({})", x.src, s.src),
                    ty,
                    x.hi + s.hi,
                    None,
                )
            }
            9 => self.elementwise(ty, need, budget),
            _ => {
                let x = self.gen(ty, need, budget);
                self.mask(x, budget)
            }
        }
    }

    /// `s * a`, `a * s` or `a / s`.
    fn scale(&mut self, a: E, budget: usize) -> E {
        match self.pick(3) {
            0 => {
                let s = self.gen(Ty::S, 0, budget);
                let lo = a.lo.zip(s.lo).map(|(x, y)| x * y);
                E::new(format!("({} * {})", s.src, a.src), a.ty, s.hi * a.hi, lo)
            }
            1 => {
                let s = self.gen(Ty::S, 0, budget);
                let lo = a.lo.zip(s.lo).map(|(x, y)| x * y);
                E::new(format!("({} * {})", a.src, s.src), a.ty, s.hi * a.hi, lo)
            }
            _ => {
                let s = self.pos(Ty::S, 0, budget);
                let (sl, sh) = (s.lo.unwrap_or(1.0), s.hi);
                let lo = a.lo.map(|x| x / sh);
                E::new(format!("({} / {})", a.src, s.src), a.ty, a.hi / sl, lo)
            }
        }
    }

    /// `a.component_mul(&b)` or `a.component_div(&positive)`.
    fn componentwise(&mut self, a: E, budget: usize) -> E {
        if self.pick(2) == 0 {
            let b = self.gen(a.ty, 0, budget);
            let lo = a.lo.zip(b.lo).map(|(x, y)| x * y);
            E::new(
                format!("{}.component_mul({})", a.src, b.r()),
                a.ty,
                a.hi * b.hi,
                lo,
            )
        } else {
            let b = self.pos(a.ty, 0, budget);
            let (bl, bh) = (b.lo.unwrap_or(1.0), b.hi);
            let lo = a.lo.map(|x| x / bh);
            E::new(
                format!("{}.component_div({})", a.src, b.r()),
                a.ty,
                a.hi / bl,
                lo,
            )
        }
    }

    /// `a.map(|e| <scalar expression of e and captured scalars>)`.
    fn map(&mut self, a: E, budget: usize) -> E {
        let elem = E::new("e".into(), Ty::S, a.hi, a.lo);
        self.elem = Some(elem);
        self.in_map = true;
        let mut body = self.gen(Ty::S, 2, budget.clamp(2, 4));
        (self.elem, self.in_map) = (None, false);
        if !idents(&body.src).contains(&"e") {
            // A body that ignores its element is legal but tests little.
            let lo = a.lo.zip(body.lo).map(|(x, y)| x + y);
            body = E::new(format!("(e + {})", body.src), Ty::S, a.hi + body.hi, lo);
        }
        E::new(
            format!("{}.map(|e| {})", a.src, body.src),
            a.ty,
            body.hi,
            body.lo,
        )
    }

    /// Elementwise primitives (and `.abs()`).
    fn elementwise(&mut self, ty: Ty, need: usize, budget: usize) -> E {
        match self.pick(10) {
            0 => {
                let a = self.gen(ty, need, budget);
                let a = self.bounded(a, 3.0);
                let (hi, lo) = (a.hi.exp(), (-a.hi).exp());
                E::new(format!("exp({})", a.r()), ty, hi, Some(lo))
            }
            1 => {
                let a = self.gen(ty, need, budget);
                E::new(format!("tanh({})", a.r()), ty, a.hi.min(1.0), None)
            }
            2 => {
                let a = self.gen(ty, need, budget);
                let (hi, lo) = (sigmoid(a.hi), sigmoid(-a.hi));
                E::new(format!("sigmoid({})", a.r()), ty, hi, Some(lo))
            }
            3 => {
                let a = self.gen(ty, need, budget);
                let a = self.bounded(a, 20.0);
                let (hi, lo) = (softplus(a.hi), softplus(-a.hi));
                E::new(format!("softplus({})", a.r()), ty, hi, Some(lo))
            }
            4 => {
                let a = self.gen(ty, need, budget);
                E::new(format!("sin({})", a.r()), ty, 1.0, None)
            }
            5 => {
                let a = self.gen(ty, need, budget);
                E::new(format!("cos({})", a.r()), ty, 1.0, None)
            }
            6 => {
                let a = self.gen(ty, need, budget);
                E::new(format!("abs({})", a.r()), ty, a.hi, a.lo)
            }
            7 => {
                let a = self.gen(ty, need, budget);
                E::new(format!("{}.abs()", a.src), ty, a.hi, a.lo)
            }
            8 => {
                let a = self.pos(ty, need, budget);
                let (lo, hi) = (a.lo.unwrap_or(1.0), a.hi);
                let b = lo.ln().abs().max(hi.ln().abs());
                E::new(format!("ln({})", a.r()), ty, b, None)
            }
            _ => {
                let a = self.pos(ty, need, budget);
                let (lo, hi) = (a.lo.unwrap_or(1.0), a.hi);
                E::new(format!("sqrt({})", a.r()), ty, hi.sqrt(), Some(lo.sqrt()))
            }
        }
    }

    /// The kinked primitives: `relu`, `proj_nonneg`, `max`, `min`, `clamp`, `proj_box`,
    /// `soft_threshold`; thresholds are scalar expressions that may depend on parameters.
    fn mask(&mut self, a: E, budget: usize) -> E {
        let ty = a.ty;
        match self.pick(7) {
            0 => E::new(format!("relu({})", a.r()), ty, a.hi, None),
            1 => E::new(format!("proj_nonneg({})", a.r()), ty, a.hi, None),
            k @ (2 | 3) => {
                let s = self.gen(Ty::S, 0, budget.min(3));
                let s = self.bounded(s, a.hi.max(1.0));
                let f = if k == 2 { "max" } else { "min" };
                let lo = if k == 2 {
                    s.lo
                } else {
                    a.lo.zip(s.lo).map(|(x, y)| x.min(y))
                };
                E::new(format!("{f}({}, {})", a.r(), s.src), ty, a.hi.max(s.hi), lo)
            }
            k @ (4 | 5) => {
                let lo = self.pos_scalar(budget.min(3), 2.0);
                let hi = self.pos_scalar(budget.min(3), 2.0);
                let f = if k == 4 { "clamp" } else { "proj_box" };
                E::new(
                    format!("{f}({}, (-{}), {})", a.r(), lo.src, hi.src),
                    ty,
                    a.hi.min(lo.hi.max(hi.hi)),
                    None,
                )
            }
            _ => {
                let t = self.pos_scalar(budget.min(3), 1.0);
                E::new(
                    format!("soft_threshold({}, {})", a.r(), t.src),
                    ty,
                    a.hi,
                    None,
                )
            }
        }
    }

    /// Projections onto the simplex, the capped simplex, a ball, a hyperplane and an
    /// affine set.
    fn projection(&mut self, a: E, d: usize, budget: usize) -> E {
        let ty = Ty::V(d);
        let n = self.dims[d] as f64;
        let b = budget.min(3);
        match self.pick(5) {
            0 => {
                let r = self.pos_scalar(b, 3.0);
                E::new(
                    format!("proj_simplex({}, {})", a.r(), r.src),
                    ty,
                    r.hi,
                    None,
                )
            }
            1 => {
                // 0 < k < n: a literal, or a parameter-dependent value in (0.5, 1.5).
                let k = if self.pick(2) == 0 {
                    lit_src([1.0, 0.5, 1.5][self.pick(3)])
                } else {
                    let s = self.gen(Ty::S, 0, b);
                    format!("(sigmoid({}) + 0.5)", s.src)
                };
                E::new(
                    format!("proj_capped_simplex({}, {k})", a.r()),
                    ty,
                    1.0,
                    None,
                )
            }
            2 => {
                let r = self.pos_scalar(b, 2.0);
                let hi = a.hi.min(r.hi);
                E::new(format!("proj_l2_ball({}, {})", a.r(), r.src), ty, hi, None)
            }
            k => {
                let affine: Vec<E> = self
                    .affine
                    .iter()
                    .filter(|m| matches!(m.ty, Ty::M(_, c) if c == d))
                    .cloned()
                    .collect();
                if (k == 4 || self.pick(2) == 0) && !affine.is_empty() {
                    let m = affine[self.pick(affine.len())].clone();
                    let Ty::M(r, _) = m.ty else { unreachable!() };
                    let rhs = self.gen(Ty::V(r), 0, b);
                    // Badly conditioned A Aᵀ is rejected at run time by the magnitude check.
                    let hi = 10.0 * (a.hi + rhs.hi);
                    return E::new(
                        format!("proj_affine({}, {}, {})", a.r(), m.r(), rhs.r()),
                        ty,
                        hi,
                        None,
                    );
                }
                let w = self.pos(ty, 0, b);
                let c = self.gen(Ty::S, 0, b);
                let wl = w.lo.unwrap_or(1.0);
                let hi = a.hi + w.hi * (n * w.hi * a.hi + c.hi) / (n * wl * wl);
                E::new(
                    format!("proj_hyperplane({}, {}, {})", a.r(), w.r(), c.src),
                    ty,
                    hi,
                    None,
                )
            }
        }
    }
}

fn add(a: &E, b: &E) -> E {
    let lo = a.lo.zip(b.lo).map(|(x, y)| x + y);
    E::new(format!("({} + {})", a.src, b.src), a.ty, a.hi + b.hi, lo)
}

fn sub(a: &E, b: &E) -> E {
    E::new(format!("({} - {})", a.src, b.src), a.ty, a.hi + b.hi, None)
}

fn neg(a: &E) -> E {
    E::new(format!("(-{})", a.src), a.ty, a.hi, None)
}

fn outer(u: &E, w: &E) -> E {
    let ty = match (u.ty, w.ty) {
        (Ty::V(a), Ty::V(b)) => Ty::M(a, b),
        _ => unreachable!(),
    };
    E::new(
        format!("({} * {}.transpose())", u.src, w.src),
        ty,
        u.hi * w.hi,
        None,
    )
}

/// Keeps magnitudes moderate: a term that may exceed 1e3 is scaled down, so that deep
/// products stay finite and finite differences stay accurate.
fn tame(e: E) -> E {
    if e.hi <= 1e3 {
        return e;
    }
    let c = 10f64.powi(-(e.hi / 10.0).log10().ceil() as i32);
    E::new(
        format!("({} * {})", e.src, lit_src(c)),
        e.ty,
        e.hi * c,
        e.lo.map(|l| l * c),
    )
}

/// The identifiers of a source text.
fn idents(src: &str) -> Vec<&str> {
    src.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| w.chars().next().is_some_and(|c| c.is_alphabetic()))
        .collect()
}

/// The names a source text depends on, through the `let`s seen so far.
fn dependencies(src: &str, lets: &HashMap<String, HashSet<String>>) -> HashSet<String> {
    let mut out = HashSet::new();
    for w in idents(src) {
        match lets.get(w) {
            Some(d) => out.extend(d.iter().cloned()),
            None => {
                out.insert(w.to_string());
            }
        }
    }
    out
}

fn ty_src(ty: Ty) -> &'static str {
    match ty {
        Ty::S => "f64",
        Ty::V(_) => "&DVector<f64>",
        Ty::M(..) => "&DMatrix<f64>",
    }
}

/// The choice streams of a rule: one for the signature, one per `let`, one per output,
/// so that shrinking one part (dropping a `let`) leaves the others' meaning intact.
#[derive(Clone, Debug)]
struct Choices {
    header: Vec<u32>,
    lets: Vec<Vec<u32>>,
    outs: [Vec<u32>; 2],
}

/// Builds a rule of `family` from the choice streams `ch`.
fn generate(ch: &Choices, family: Family) -> Spec {
    let mut g = Gen {
        ch: &ch.header,
        at: 0,
        dims: [2, 2],
        ndims: 1,
        scope: Vec::new(),
        elem: None,
        in_map: false,
        affine: Vec::new(),
        roles: HashMap::new(),
    };
    g.dims = [2 + g.pick(3), 2 + g.pick(3)];
    let two_block = family == Family::TwoBlock;
    g.ndims = if two_block || g.pick(3) > 0 { 2 } else { 1 };
    let mut args = vec![ArgSpec {
        name: "x".into(),
        ty: Ty::V(0),
        role: Role::State,
        positive: false,
    }];
    let mut blocks = vec![0];
    if two_block {
        args.push(ArgSpec {
            name: "z".into(),
            ty: Ty::V(1),
            role: Role::State,
            positive: false,
        });
        blocks.push(1);
    }
    let (mut np, mut nc) = (0, 0);
    let mut push = |args: &mut Vec<ArgSpec>, ty: Ty, role: Role, positive: bool| {
        let name = if role == Role::Param {
            np += 1;
            format!("p{}", np - 1)
        } else {
            nc += 1;
            format!("c{}", nc - 1)
        };
        args.push(ArgSpec {
            name,
            ty,
            role,
            positive,
        });
    };
    if family == Family::MatrixParam {
        let (a, b) = (g.dim(), g.dim());
        push(&mut args, Ty::M(a, b), Role::Param, false);
    }
    if g.ndims == 2 && !two_block {
        // The second dimension needs a vector of its own.
        let role = if g.pick(2) == 0 {
            Role::Param
        } else {
            Role::Const
        };
        let positive = g.pick(2) == 1;
        push(&mut args, Ty::V(1), role, positive);
    }
    for _ in 0..g.pick(5) {
        let ty = g.any_ty();
        let role = if g.pick(3) < 2 {
            Role::Param
        } else {
            Role::Const
        };
        let positive = !matches!(ty, Ty::M(..)) && g.pick(2) == 1;
        push(&mut args, ty, role, positive);
    }
    for a in &args {
        g.roles.insert(a.name.clone(), a.role);
        let (hi, lo) = if a.positive {
            (1.5, Some(0.5))
        } else {
            (1.0, None)
        };
        let e = E::new(a.name.clone(), a.ty, hi, lo);
        if let Ty::M(r, c) = a.ty {
            if g.dims[r] < g.dims[c] {
                g.affine.push(e.clone());
            }
        }
        g.scope.push(e);
    }
    let mut used = 0;
    let mut body = String::new();
    let mut lets: HashMap<String, HashSet<String>> = HashMap::new();
    for (i, stream) in ch.lets.iter().enumerate() {
        used += g.at;
        (g.ch, g.at) = (stream, 0);
        let ty = g.any_ty();
        let e = g.gen(ty, 2, 4);
        body.push_str(&format!("    let h{i} = {};\n", e.src));
        let deps = dependencies(&e.src, &lets);
        lets.insert(format!("h{i}"), deps);
        g.scope.push(E::new(format!("h{i}"), ty, e.hi, e.lo));
    }
    let mut outs: Vec<String> = Vec::new();
    for (k, stream) in ch.outs.iter().take(blocks.len()).enumerate() {
        used += g.at;
        (g.ch, g.at) = (stream, 0);
        // The second block is sometimes the identity (`z`: seeds pass straight through,
        // `Φ` has an identity block) or the first output again (a node shared by two
        // outputs, whose cotangents add up).
        let out = match (k, g.pick(8)) {
            (1, 0) => "z".to_string(),
            (1, 1) if g.dims[0] == g.dims[1] => outs[0].clone(),
            _ => g.gen(Ty::V(k), 4, 5).src,
        };
        outs.push(out);
    }
    used += g.at;
    for (k, out) in outs.iter_mut().enumerate() {
        // Each output depends on the state (directly or through `let`s), else Φ = 0.
        let deps = dependencies(out, &lets);
        if !deps.contains("x") && !deps.contains("z") {
            *out = format!("({out} + {})", ["x", "z"][k]);
        }
    }
    let tail = if two_block {
        format!("({}, {})", outs[0], outs[1])
    } else {
        outs[0].clone()
    };
    body.push_str(&format!("    {tail}\n"));
    let params: Vec<&str> = args
        .iter()
        .filter(|a| a.role == Role::Param)
        .map(|a| a.name.as_str())
        .collect();
    let state = if two_block { "(x, z)" } else { "x" };
    let attr = if params.is_empty() {
        format!("state = {state}")
    } else {
        format!("state = {state}, params({})", params.join(", "))
    };
    let sig: Vec<String> = args
        .iter()
        .map(|a| format!("{}: {}", a.name, ty_src(a.ty)))
        .collect();
    let ret = if two_block {
        "(DVector<f64>, DVector<f64>)"
    } else {
        "DVector<f64>"
    };
    let func = format!("fn rule({}) -> {ret} {{\n{body}}}\n", sig.join(", "));
    Spec {
        dims: g.dims,
        args,
        blocks,
        attr,
        func,
        used,
    }
}

// ---------------------------------------------------------------------------------------
// Evaluation helpers.
// ---------------------------------------------------------------------------------------

/// A small deterministic generator for the inputs (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
    fn signed(&mut self) -> f64 {
        2.0 * self.next() - 1.0
    }
    fn value(&mut self, spec: &Spec, ty: Ty, positive: bool, snap: bool) -> Value {
        let mut draw = || {
            if snap && self.next() < 0.3 {
                let grid: &[f64] = if positive {
                    &[0.5, 1.0]
                } else {
                    &[0.0, 0.5, -0.5, 1.0]
                };
                return grid[(self.next() * grid.len() as f64) as usize % grid.len()];
            }
            if positive {
                0.5 + self.next()
            } else {
                self.signed()
            }
        };
        match ty {
            Ty::S => Value::Scalar(draw()),
            Ty::V(d) => Value::Vector(DVector::from_fn(spec.dims[d], |_, _| draw())),
            Ty::M(a, b) => {
                Value::Matrix(DMatrix::from_fn(spec.dims[a], spec.dims[b], |_, _| draw()))
            }
        }
    }
}

fn zeros(spec: &Spec, ty: Ty) -> Value {
    match ty {
        Ty::S => Value::Scalar(0.0),
        Ty::V(d) => Value::Vector(DVector::zeros(spec.dims[d])),
        Ty::M(a, b) => Value::Matrix(DMatrix::zeros(spec.dims[a], spec.dims[b])),
    }
}

/// The basis direction `k` (column-major for matrices) of shape `ty`.
fn basis(spec: &Spec, ty: Ty, k: usize) -> Value {
    let z = zeros(spec, ty);
    let mut e = z.entries();
    e[k] = 1.0;
    z.with_entries(&e)
}

fn symbol_of(g: &Graph, id: Id) -> Symbol {
    match g.node(id) {
        Node::Var(s) => *s,
        other => panic!("a seed is a variable, found {other:?}"),
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn inf_norm(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// Evaluates `ids` (a `None` is a structural zero of the length in `lens`) and
/// concatenates the entries.
fn eval_concat(
    g: &Graph,
    env: &HashMap<Symbol, Value>,
    ids: &[Option<Id>],
    lens: &[usize],
) -> Result<Vec<f64>, String> {
    let mut it = Interpreter::new(g, env);
    let mut out = Vec::new();
    for (id, &n) in ids.iter().zip(lens) {
        match id {
            Some(id) => {
                let e = it.eval(*id)?.entries();
                if e.len() != n {
                    return Err(format!("a term has {} entries, expected {n}", e.len()));
                }
                out.extend(e);
            }
            None => out.extend(std::iter::repeat_n(0.0, n)),
        }
    }
    Ok(out)
}

/// How far the point is from the nearest kink of a primal term: the distance of every
/// mask argument to its threshold, of every norm to zero, of the projections' inputs to
/// the boundary of their support.
fn kink_margin(g: &Graph, outputs: &[Id], env: &HashMap<Symbol, Value>) -> Result<f64, String> {
    let reach = g.reachable(outputs);
    let active = g.depends_on(|r| matches!(r, IrRole::State { .. } | IrRole::Param));
    let mut it = Interpreter::new(g, env);
    let mut margin = f64::INFINITY;
    let mut upd = |m: f64| margin = margin.min(m);
    for (i, _) in reach.iter().enumerate().filter(|(_, r)| **r) {
        let id = Id::from(i);
        let node = g.node(id).clone();
        let mut ev = |c: Id| it.eval(c).map(|v| v.entries());
        let sc = |v: Vec<f64>| v[0];
        match node {
            Node::Relu(x) | Node::Abs(x) | Node::Sign(x) => {
                ev(x)?.iter().for_each(|v| upd(v.abs()));
            }
            Node::Max([x, s]) | Node::Min([x, s]) => {
                let s = sc(ev(s)?);
                ev(x)?.iter().for_each(|v| upd((v - s).abs()));
            }
            Node::Clamp([x, lo, hi]) => {
                let (lo, hi) = (sc(ev(lo)?), sc(ev(hi)?));
                ev(x)?
                    .iter()
                    .for_each(|v| upd((v - lo).abs().min((v - hi).abs())));
            }
            Node::SoftThreshold([x, t]) => {
                let t = sc(ev(t)?);
                ev(x)?.iter().for_each(|v| upd((v.abs() - t).abs()));
            }
            Node::Norm(x) => upd(inf_norm(&ev(x)?)),
            Node::ProjL2Ball([z, r]) => {
                let (z, r) = (ev(z)?, sc(ev(r)?));
                let n = dot(&z, &z).sqrt();
                upd((n - r).abs());
                upd(n);
            }
            Node::ProjSimplex([v, _]) | Node::ProjCappedSimplex([v, _]) => {
                let capped = matches!(node, Node::ProjCappedSimplex(_));
                let (v, y) = (ev(v)?, ev(id)?);
                let free = |yi: f64| yi > 0.0 && (!capped || yi < 1.0);
                match (0..v.len()).find(|&j| free(y[j])) {
                    Some(j) => {
                        let tau = v[j] - y[j];
                        for vi in &v {
                            upd((vi - tau).abs());
                            if capped {
                                upd((vi - tau - 1.0).abs());
                            }
                        }
                    }
                    None => {
                        // A vertex of the capped simplex: the shift lies in an interval.
                        let lo = (0..v.len())
                            .filter(|&i| y[i] <= 0.0)
                            .map(|i| v[i])
                            .fold(f64::NEG_INFINITY, f64::max);
                        let hi = (0..v.len())
                            .filter(|&i| y[i] >= 1.0)
                            .map(|i| v[i] - 1.0)
                            .fold(f64::INFINITY, f64::min);
                        upd(hi - lo);
                        // There `∂y/∂k` is 0 by the primitive's documented convention, not
                        // a one-sided derivative (the sum must follow k): a kink in k.
                        if let Node::ProjCappedSimplex([_, k]) = node {
                            if active[usize::from(k)] {
                                upd(0.0);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(margin)
}

/// The worst condition number of the matrices the rule solves with (`proj_affine`'s
/// `AAᵀ`): near-singular solves amplify rounding beyond any fixed tolerance.
fn solve_condition(g: &Graph, outputs: &[Id], env: &HashMap<Symbol, Value>) -> Result<f64, String> {
    let reach = g.reachable(outputs);
    let mut it = Interpreter::new(g, env);
    let mut worst: f64 = 1.0;
    for (i, _) in reach.iter().enumerate().filter(|(_, r)| **r) {
        if let Node::Solve([m, _]) = g.node(Id::from(i)) {
            let sv = it.eval(*m)?.matrix()?.singular_values();
            worst = worst.max(sv.max() / sv.min());
        }
    }
    Ok(worst)
}

// ---------------------------------------------------------------------------------------
// The checks.
// ---------------------------------------------------------------------------------------

/// Finite-difference step (inputs are O(1)); Richardson extrapolation of the central
/// differences with `H` and `H/2` cancels the O(H²) term.
const H: f64 = 1e-4;
/// Points closer than this to a kink are resampled.
const KINK_MARGIN: f64 = 1e-3;
/// Columns whose differences with `H` and `H/2` disagree by more than this (relative)
/// straddle a kink or are too curved to check; they are skipped and counted.
const FD_CONSISTENCY: f64 = 1e-5;
/// Symbolic vs extrapolated finite differences, relative to the column's magnitude.
const FD_TOL: f64 = 1e-7;
/// The outputs' share of the finite-difference scale: an allowance of
/// `FD_TOL · FD_ROUNDING · ‖U‖∞` = 1e-9 ‖U‖∞ for rounding (outputs ~600 with O(0.1)
/// derivatives, from an affine projection far from its set, need it).
const FD_ROUNDING: f64 = 1e-2;
/// Adjoint identities, relative to `Σ |vᵢ| |Φᵢⱼ| |uⱼ|`.
const ADJOINT_TOL: f64 = 1e-10;
/// The seeds' share of the adjoint scale (an absolute 1e-13 · ‖v‖₁‖u‖₁).
const ADJOINT_FLOOR: f64 = 1e-3;
/// Structured Jacobian vs JVP columns, relative to the column's magnitude.
const JACOBIAN_TOL: f64 = 1e-12;
/// Points where a solved matrix is worse conditioned are resampled.
const MAX_CONDITION: f64 = 1e4;
/// Input samples per rule.
const SAMPLES: usize = 2;

#[derive(Default, Debug)]
struct Stats {
    rules: usize,
    samples: usize,
    resampled: usize,
    kink_samples: usize,
    ill_conditioned: usize,
    unusable: usize,
    columns: usize,
    skipped_columns: usize,
    jacobians_ok: usize,
    jacobians_unstructured: usize,
    max_fd: f64,
    max_adjoint: f64,
    max_jacobian: f64,
}

/// One differentiated coordinate: entry `k` of argument `arg`, which is state block
/// `block` or parameter `param`.
#[derive(Clone, Copy)]
struct Coord {
    arg: usize,
    k: usize,
    block: Option<usize>,
    param: Option<usize>,
}

struct Checker<'a> {
    spec: &'a Spec,
    rule: Rule,
    syms: Vec<Symbol>,
    out_lens: Vec<usize>,
    coords: Vec<Coord>,
    state_args: Vec<usize>,
    param_args: Vec<usize>,
}

fn fail(spec: &Spec, what: String) -> String {
    format!("{what}\n--- rule ---\n{}", spec.source())
}

impl<'a> Checker<'a> {
    fn new(spec: &'a Spec) -> Result<Checker<'a>, String> {
        let attr: proc_macro2::TokenStream = spec
            .attr
            .parse()
            .map_err(|e| format!("attribute does not tokenize: {e}"))?;
        let item: syn::ItemFn =
            syn::parse_str(&spec.func).map_err(|e| format!("rule does not parse: {e}"))?;
        let rule = rule::analyze(attr, &item).map_err(|e| format!("analyze failed: {e}"))?;
        let syms = spec
            .args
            .iter()
            .map(|a| Symbol::from(a.name.as_str()))
            .collect();
        let out_lens = spec
            .blocks
            .iter()
            .map(|&b| spec.len(spec.args[b].ty))
            .collect();
        let state_args = spec.blocks.clone();
        let param_args: Vec<usize> = (0..spec.args.len())
            .filter(|&i| spec.args[i].role == Role::Param)
            .collect();
        let mut coords = Vec::new();
        for (b, &a) in state_args.iter().enumerate() {
            for k in 0..spec.len(spec.args[a].ty) {
                coords.push(Coord {
                    arg: a,
                    k,
                    block: Some(b),
                    param: None,
                });
            }
        }
        for (p, &a) in param_args.iter().enumerate() {
            for k in 0..spec.len(spec.args[a].ty) {
                coords.push(Coord {
                    arg: a,
                    k,
                    block: None,
                    param: Some(p),
                });
            }
        }
        Ok(Checker {
            spec,
            rule,
            syms,
            out_lens,
            coords,
            state_args,
            param_args,
        })
    }

    /// The environment: arguments, and every seed set to zero unless given.
    fn env(&self, args: &[Value]) -> HashMap<Symbol, Value> {
        let g = &self.rule.graph;
        let mut env: HashMap<Symbol, Value> = self
            .syms
            .iter()
            .copied()
            .zip(args.iter().cloned())
            .collect();
        for (b, &id) in self.rule.seeds.cotangent.iter().enumerate() {
            env.insert(
                symbol_of(g, id),
                Value::Vector(DVector::zeros(self.out_lens[b])),
            );
        }
        for (b, &id) in self.rule.seeds.tangent.iter().enumerate() {
            let ty = self.spec.args[self.state_args[b]].ty;
            env.insert(symbol_of(g, id), zeros(self.spec, ty));
        }
        for (p, &id) in self.rule.seeds.param_tangent.iter().enumerate() {
            let ty = self.spec.args[self.param_args[p]].ty;
            env.insert(symbol_of(g, id), zeros(self.spec, ty));
        }
        env
    }

    fn outputs(&self, args: &[Value]) -> Result<Vec<f64>, String> {
        let ids: Vec<Option<Id>> = self.rule.outputs.iter().map(|&o| Some(o)).collect();
        eval_concat(&self.rule.graph, &self.env(args), &ids, &self.out_lens)
    }

    /// The rule at `args` with coordinate `c` moved by `delta`.
    fn shifted(&self, args: &[Value], c: Coord, delta: f64) -> Result<Vec<f64>, String> {
        let mut a = args.to_vec();
        let mut e = a[c.arg].entries();
        e[c.k] += delta;
        a[c.arg] = a[c.arg].with_entries(&e);
        self.outputs(&a)
    }

    /// Central differences with `h` and `h/2`.
    fn fd(&self, args: &[Value], c: Coord) -> Result<(Vec<f64>, Vec<f64>), String> {
        let central = |h: f64| -> Result<Vec<f64>, String> {
            let (p, m) = (self.shifted(args, c, h)?, self.shifted(args, c, -h)?);
            Ok(p.iter().zip(&m).map(|(p, m)| (p - m) / (2.0 * h)).collect())
        };
        Ok((central(H)?, central(H / 2.0)?))
    }

    /// `Φ e` or `Ψ e` for the basis direction of coordinate `c`.
    fn jvp_column(&self, args: &[Value], c: Coord) -> Result<Vec<f64>, String> {
        let g = &self.rule.graph;
        let mut env = self.env(args);
        let ty = self.spec.args[c.arg].ty;
        let terms = if let Some(b) = c.block {
            env.insert(
                symbol_of(g, self.rule.seeds.tangent[b]),
                basis(self.spec, ty, c.k),
            );
            &self.rule.jvp_state
        } else {
            let p = c.param.unwrap_or(0);
            env.insert(
                symbol_of(g, self.rule.seeds.param_tangent[p]),
                basis(self.spec, ty, c.k),
            );
            &self.rule.jvp_params
        };
        eval_concat(g, &env, terms, &self.out_lens)
    }

    /// `(Φᵀv, Ψᵀv)` flattened in coordinate order.
    fn vjp(&self, args: &[Value], v: &[f64]) -> Result<Vec<f64>, String> {
        let g = &self.rule.graph;
        let mut env = self.env(args);
        let mut at = 0;
        for (b, &id) in self.rule.seeds.cotangent.iter().enumerate() {
            let n = self.out_lens[b];
            env.insert(
                symbol_of(g, id),
                Value::Vector(DVector::from_column_slice(&v[at..at + n])),
            );
            at += n;
        }
        let mut terms = self.rule.vjp_state.clone();
        terms.extend(&self.rule.vjp_params);
        let lens: Vec<usize> = self
            .state_args
            .iter()
            .chain(&self.param_args)
            .map(|&a| self.spec.len(self.spec.args[a].ty))
            .collect();
        eval_concat(g, &env, &terms, &lens)
    }

    /// `Φu + Ψδθ` split in its two parts, for `dir` flattened in coordinate order.
    fn jvp_dir(&self, args: &[Value], dir: &[f64]) -> Result<(Vec<f64>, Vec<f64>), String> {
        let g = &self.rule.graph;
        let mut env = self.env(args);
        let mut at = 0;
        let seeds: Vec<(Id, usize)> = self
            .rule
            .seeds
            .tangent
            .iter()
            .copied()
            .zip(self.state_args.iter().copied())
            .chain(
                self.rule
                    .seeds
                    .param_tangent
                    .iter()
                    .copied()
                    .zip(self.param_args.iter().copied()),
            )
            .collect();
        for (id, a) in seeds {
            let ty = self.spec.args[a].ty;
            let n = self.spec.len(ty);
            env.insert(
                symbol_of(g, id),
                zeros(self.spec, ty).with_entries(&dir[at..at + n]),
            );
            at += n;
        }
        let s = eval_concat(g, &env, &self.rule.jvp_state, &self.out_lens)?;
        let p = eval_concat(g, &env, &self.rule.jvp_params, &self.out_lens)?;
        Ok((s, p))
    }

    /// All checks at one input point.
    /// All checks at one input point; the finite-difference checks (a) only when `fd`
    /// (the point is away from kinks), the identities (b) and (c) everywhere, kinks
    /// included, where they hold exactly with the one-sided masks.
    fn check_point(
        &self,
        args: &[Value],
        fd: bool,
        rng: &mut Rng,
        st: &mut Stats,
    ) -> Result<(), String> {
        let spec = self.spec;
        let u0 = self.outputs(args)?;
        let nout = u0.len();
        let ncoord = self.coords.len();
        // (a) finite differences, column by column.
        let mut cols: Vec<Vec<f64>> = Vec::with_capacity(ncoord);
        let mut fds: Vec<Option<Vec<f64>>> = Vec::with_capacity(ncoord);
        for &c in &self.coords {
            let col = self.jvp_column(args, c)?;
            if !fd {
                cols.push(col);
                fds.push(None);
                continue;
            }
            let (d1, d2) = self.fd(args, c)?;
            let r: Vec<f64> = d1
                .iter()
                .zip(&d2)
                .map(|(a, b)| (4.0 * b - a) / 3.0)
                .collect();
            let diff: Vec<f64> = d1.iter().zip(&d2).map(|(a, b)| a - b).collect();
            // Rounding in the differences grows with the outputs' size (ε‖U‖/H, more
            // where terms cancel): part of the scale.
            let scale = 1.0 + inf_norm(&r) + FD_ROUNDING * inf_norm(&u0);
            st.columns += 1;
            if inf_norm(&diff) > FD_CONSISTENCY * scale {
                st.skipped_columns += 1;
                cols.push(col);
                fds.push(None);
                continue;
            }
            let err: Vec<f64> = col.iter().zip(&r).map(|(a, b)| a - b).collect();
            let rel = inf_norm(&err) / (scale + inf_norm(&col));
            st.max_fd = st.max_fd.max(rel);
            if rel > FD_TOL {
                let what = match (c.block, c.param) {
                    (Some(_), _) => "Φ (JVP of the state)",
                    _ => "Ψ (JVP of a parameter)",
                };
                return Err(format!(
                    "{what}: column for `{}`[{}] disagrees with finite differences (rel. error {rel:.2e})\n  symbolic: {col:?}\n  fd:       {r:?}",
                    spec.args[c.arg].name, c.k
                ));
            }
            cols.push(col);
            fds.push(Some(r));
        }
        let v: Vec<f64> = (0..nout).map(|_| rng.signed()).collect();
        let g = self.vjp(args, &v)?;
        for (j, c) in self.coords.iter().enumerate() {
            let Some(r) = &fds[j] else { continue };
            let expect = dot(&v, r);
            let vn: f64 = v.iter().map(|x| x.abs()).sum();
            let scale = 1.0
                + v.iter().zip(r).map(|(a, b)| (a * b).abs()).sum::<f64>()
                + FD_ROUNDING * vn * inf_norm(&u0);
            let rel = (g[j] - expect).abs() / scale;
            st.max_fd = st.max_fd.max(rel);
            if rel > FD_TOL {
                return Err(format!(
                    "VJP: entry `{}`[{}] of Φᵀv/Ψᵀv is {} but finite differences give {expect} (rel. error {rel:.2e})\n  v = {v:?}",
                    spec.args[c.arg].name, c.k, g[j]
                ));
            }
        }
        // (b) adjoint identities, on a random direction of the state and of the params.
        let dir: Vec<f64> = (0..ncoord).map(|_| rng.signed()).collect();
        let (phi_u, psi_d) = self.jvp_dir(args, &dir)?;
        for part in [true, false] {
            let in_part = |c: &Coord| c.block.is_some() == part;
            let lhs = dot(&v, if part { &phi_u } else { &psi_d });
            let rhs: f64 = (0..ncoord)
                .filter(|&j| in_part(&self.coords[j]))
                .map(|j| g[j] * dir[j])
                .sum();
            let mag: f64 = (0..ncoord)
                .filter(|&j| in_part(&self.coords[j]))
                .map(|j| {
                    let col: f64 = cols[j].iter().zip(&v).map(|(a, b)| (a * b).abs()).sum();
                    col * dir[j].abs()
                })
                .sum();
            // Rounding of cancelling intermediate terms (`exp(z) ⊘ exp(z)`) leaves ~1e-17
            // where the exact product is 0: an absolute floor scaled by the seeds.
            let vn: f64 = v.iter().map(|x| x.abs()).sum();
            let un: f64 = (0..ncoord)
                .filter(|&j| in_part(&self.coords[j]))
                .map(|j| dir[j].abs())
                .sum();
            let mag = mag + ADJOINT_FLOOR * vn * un;
            let err = (lhs - rhs).abs();
            let rel = err / mag.max(f64::MIN_POSITIVE);
            st.max_adjoint = st.max_adjoint.max(rel);
            if err > ADJOINT_TOL * mag {
                let name = if part { "Φ" } else { "Ψ" };
                return Err(format!(
                    "adjoint identity for {name}: ⟨v, {name}u⟩ = {lhs} but ⟨{name}ᵀv, u⟩ = {rhs} (rel. error {rel:.2e})"
                ));
            }
        }
        // (c) structured Jacobians against the JVP columns.
        let mut vars: Vec<usize> = self.state_args.clone();
        vars.extend(
            self.param_args
                .iter()
                .filter(|&&a| matches!(spec.args[a].ty, Ty::V(_))),
        );
        for a in vars {
            let mut gj = self.rule.graph.clone();
            let var = self.rule.args[a];
            let Ok(jac) = diff::jacobian(&mut gj, &self.rule.outputs, var) else {
                st.jacobians_unstructured += 1;
                continue;
            };
            st.jacobians_ok += 1;
            let env = self.env(args);
            let mut it = Interpreter::new(&gj, &env);
            let n = spec.len(spec.args[a].ty);
            let mut row0 = 0;
            for (blk, j) in jac.iter().enumerate() {
                let rows = self.out_lens[blk];
                let m = match j {
                    Some(j) => match it.eval(*j)? {
                        Value::Matrix(m) => m,
                        other => return Err(format!("a Jacobian evaluated to {other:?}")),
                    },
                    None => DMatrix::zeros(rows, n),
                };
                if m.shape() != (rows, n) {
                    return Err(fail(
                        spec,
                        format!(
                            "Jacobian of block {blk} w.r.t. `{}` is {:?}, expected {:?}",
                            spec.args[a].name,
                            m.shape(),
                            (rows, n)
                        ),
                    ));
                }
                for (j, c) in self.coords.iter().enumerate().filter(|(_, c)| c.arg == a) {
                    let col = &cols[j][row0..row0 + rows];
                    let err = (0..rows)
                        .map(|i| (m[(i, c.k)] - col[i]).abs())
                        .fold(0.0, f64::max);
                    let rel = err / (1.0 + inf_norm(col));
                    st.max_jacobian = st.max_jacobian.max(rel);
                    if rel > JACOBIAN_TOL {
                        return Err(format!(
                            "structured Jacobian of block {blk} w.r.t. `{}`: column {} is {:?} but the JVP gives {col:?}",
                            spec.args[a].name,
                            c.k,
                            m.column(c.k).as_slice()
                        ));
                    }
                }
                row0 += rows;
            }
        }
        Ok(())
    }
}

/// Runs every check on one generated rule.
fn check_rule(spec: &Spec, seed: u64, st: &mut Stats) -> Result<(), String> {
    let checker = Checker::new(spec).map_err(|e| fail(spec, e))?;
    st.rules += 1;
    let mut rng = Rng(seed);
    let mut done = 0;
    for attempt in 0..4 * SAMPLES {
        if done == SAMPLES {
            break;
        }
        // Every other attempt snaps some entries to the literals that serve as thresholds
        // (0, ±0.5, 1): points exactly on kinks, where only (b) and (c) apply.
        let snap = attempt % 2 == 1;
        let args: Vec<Value> = spec
            .args
            .iter()
            .map(|a| rng.value(spec, a.ty, a.positive, snap))
            .collect();
        let usable = match checker.outputs(&args) {
            Ok(u) => u.iter().all(|x| x.is_finite() && x.abs() < 1e6),
            Err(e) => return Err(fail(spec, format!("interpreter error: {e}"))),
        };
        if !usable {
            st.resampled += 1;
            continue;
        }
        let env = checker.env(&args);
        let cond = solve_condition(&checker.rule.graph, &checker.rule.outputs, &env)
            .map_err(|e| fail(spec, e))?;
        if cond.is_nan() || cond >= MAX_CONDITION {
            st.ill_conditioned += 1;
            continue;
        }
        let margin = kink_margin(&checker.rule.graph, &checker.rule.outputs, &env)
            .map_err(|e| fail(spec, e))?;
        let smooth = margin >= KINK_MARGIN;
        checker
            .check_point(&args, smooth, &mut rng, st)
            .map_err(|e| fail(spec, format!("{e}\n  inputs: {args:?}")))?;
        if smooth {
            done += 1;
            st.samples += 1;
        } else {
            st.kink_samples += 1;
        }
    }
    if done == 0 {
        st.unusable += 1;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Simplification never changes a value.
// ---------------------------------------------------------------------------------------

/// Every term a rule refers to (outputs, products, Jacobians, reduced-backward terms), in
/// a fixed order, so that the original and the simplified rule can be compared entry by
/// entry.
fn all_terms(r: &Rule) -> Vec<Option<Id>> {
    let mut ids: Vec<Option<Id>> = r.outputs.iter().map(|o| Some(*o)).collect();
    ids.extend(
        r.vjp_state
            .iter()
            .chain(&r.vjp_params)
            .chain(&r.jvp_state)
            .chain(&r.jvp_params),
    );
    for row in r.jac_state.iter().flatten() {
        ids.extend(row);
    }
    for p in r.jac_params.iter().flatten() {
        ids.extend(p);
    }
    if let Some(red) = &r.reduction {
        ids.push(Some(red.mask));
        ids.push(Some(red.support));
        ids.push(red.inner_state);
        ids.extend(&red.inner_params);
        if let Some(h) = &red.head_params {
            ids.extend(h);
        }
        ids.push(red.matrix);
    }
    ids
}

/// Evaluates the original and the e-graph-simplified rule at random points with random
/// seeds; every term must agree to rounding.
fn check_simplified(spec: &Spec, seed: u64) -> Result<(), String> {
    let checker = Checker::new(spec).map_err(|e| fail(spec, e))?;
    let (simple, _) = fold_codegen::egraph::simplify(&checker.rule);
    let (before, after) = (all_terms(&checker.rule), all_terms(&simple));
    if before.len() != after.len()
        || before
            .iter()
            .zip(&after)
            .any(|(a, b)| a.is_some() != b.is_some())
    {
        return Err(fail(
            spec,
            "simplification changed which terms exist".into(),
        ));
    }
    let mut rng = Rng(seed);
    let mut compared = 0;
    for _ in 0..12 {
        if compared == 3 {
            break;
        }
        let args: Vec<Value> = spec
            .args
            .iter()
            .map(|a| rng.value(spec, a.ty, a.positive, false))
            .collect();
        match checker.outputs(&args) {
            Ok(u) if u.iter().all(|x| x.is_finite() && x.abs() < 1e6) => {}
            Ok(_) => continue,
            Err(e) => return Err(fail(spec, format!("interpreter error: {e}"))),
        }
        let mut env = checker.env(&args);
        // Random seeds: the products are then nonzero.
        let g = &checker.rule.graph;
        let mut seeds: Vec<Id> = checker.rule.seeds.cotangent.clone();
        seeds.extend(&checker.rule.seeds.tangent);
        seeds.extend(&checker.rule.seeds.param_tangent);
        seeds.extend(checker.rule.reduction.as_ref().map(|r| r.seed));
        for id in seeds {
            let sym = symbol_of(g, id);
            let like = env
                .get(&sym)
                .cloned()
                .unwrap_or_else(|| Value::Vector(DVector::zeros(checker.out_lens[0])));
            let e: Vec<f64> = like.entries().iter().map(|_| rng.signed()).collect();
            env.insert(sym, like.with_entries(&e));
        }
        let mut old = Interpreter::new(&checker.rule.graph, &env);
        let mut new = Interpreter::new(&simple.graph, &env);
        for (k, (a, b)) in before.iter().zip(&after).enumerate() {
            let (Some(a), Some(b)) = (a, b) else { continue };
            let (va, vb) = (old.eval(*a), new.eval(*b));
            let (va, vb) = match (va, vb) {
                (Ok(x), Ok(y)) => (x, y),
                (Err(e), _) | (_, Err(e)) => return Err(fail(spec, format!("term {k}: {e}"))),
            };
            if let (Value::Index(x), Value::Index(y)) = (&va, &vb) {
                if x != y {
                    return Err(fail(
                        spec,
                        format!("term {k}: supports differ {x:?} vs {y:?}"),
                    ));
                }
                continue;
            }
            let (ea, eb) = (va.entries(), vb.entries());
            let scale = inf_norm(&ea).max(1.0);
            if ea.len() != eb.len()
                || ea.iter().zip(&eb).any(|(x, y)| {
                    !((x - y).abs() <= 1e-9 * scale || (x.is_nan() && y.is_nan()) || x == y)
                })
            {
                return Err(fail(spec, format!("term {k} changed by simplification:\n  before {ea:?}\n  after  {eb:?}\n  inputs: {args:?}")));
            }
        }
        compared += 1;
    }
    Ok(())
}

fn run_simplification(family: Family, n: u32, seed: u64) {
    let config = Config {
        cases: n,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&cases(family), |case| {
        check_simplified(&case.spec, case.seed).map_err(TestCaseError::fail)
    }) {
        panic!("{e}");
    }
}

#[test]
fn simplification_preserves_single_block_rules() {
    run_simplification(Family::Single, 300, 0x51AB);
}

#[test]
fn simplification_preserves_two_block_rules() {
    run_simplification(Family::TwoBlock, 150, 0x51AC);
}

#[test]
fn simplification_preserves_matrix_parameter_rules() {
    run_simplification(Family::MatrixParam, 150, 0x51AD);
}

// ---------------------------------------------------------------------------------------
// The proptest harness.
// ---------------------------------------------------------------------------------------

/// A drawn case: the choice sequence, the input seed, and the rule they make (shown by
/// `Debug`, so that proptest's "minimal failing input" is the rule's source).
#[derive(Clone)]
struct Case {
    spec: Spec,
    seed: u64,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "input seed {:#x}, dims {:?}\n{}",
            self.seed,
            self.spec.dims,
            self.spec.source()
        )
    }
}

fn cases(family: Family) -> impl Strategy<Value = Case> {
    // Choices are small numbers (each picks among ≤ 12 options) so that shrinking an
    // entry to 0 takes few steps.
    let stream = |n: std::ops::Range<usize>| prop::collection::vec(0u32..64, n);
    (
        stream(32..33),
        prop::collection::vec(stream(20..120), 0..4),
        stream(40..200),
        stream(40..200),
        any::<u64>(),
    )
        .prop_map(move |(header, lets, out0, out1, seed)| {
            let ch = Choices {
                header,
                lets,
                outs: [out0, out1],
            };
            Case {
                spec: generate(&ch, family),
                seed,
            }
        })
}

/// Runs `n` cases of `family` from a fixed seed, then checks that the run was not
/// vacuous (few unusable points, few skipped columns).
fn run(family: Family, n: u32, seed: u64) {
    // `FOLD_PROPTEST_SCALE=k` runs k times the cases (and a seed of its own) for a
    // longer local hunt; CI runs the fixed default.
    let scale: u32 = std::env::var("FOLD_PROPTEST_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let n = n * scale.max(1);
    let seed = seed + u64::from(scale.max(1) - 1);
    let config = Config {
        cases: n,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        max_shrink_iters: 4000,
        ..Config::default()
    };
    let stats = Mutex::new(Stats::default());
    let mut runner = TestRunner::new(config);
    let result = runner.run(&cases(family), |case| {
        let mut local = Stats::default();
        let r = check_rule(&case.spec, case.seed, &mut local);
        let mut st = stats.lock().unwrap_or_else(|e| e.into_inner());
        merge(&mut st, &local);
        r.map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let st = stats.into_inner().unwrap_or_else(|e| e.into_inner());
    eprintln!("{family:?}: {st:?}");
    assert!(st.rules >= n as usize, "{st:?}");
    assert!(
        st.unusable * 10 <= st.rules,
        "too many rules without a usable input point: {st:?}"
    );
    assert!(
        st.skipped_columns * 10 <= st.columns,
        "too many finite-difference columns skipped as kinked: {st:?}"
    );
    assert!(st.jacobians_ok > 0, "{st:?}");
}

fn merge(st: &mut Stats, l: &Stats) {
    st.rules += l.rules;
    st.samples += l.samples;
    st.resampled += l.resampled;
    st.kink_samples += l.kink_samples;
    st.ill_conditioned += l.ill_conditioned;
    st.unusable += l.unusable;
    st.columns += l.columns;
    st.skipped_columns += l.skipped_columns;
    st.jacobians_ok += l.jacobians_ok;
    st.jacobians_unstructured += l.jacobians_unstructured;
    st.max_fd = st.max_fd.max(l.max_fd);
    st.max_adjoint = st.max_adjoint.max(l.max_adjoint);
    st.max_jacobian = st.max_jacobian.max(l.max_jacobian);
}

#[test]
fn random_single_block_rules() {
    run(Family::Single, 2000, 0x5eed_0001);
}

#[test]
fn random_two_block_rules() {
    run(Family::TwoBlock, 1500, 0x5eed_0002);
}

#[test]
fn random_matrix_parameter_rules() {
    run(Family::MatrixParam, 1500, 0x5eed_0003);
}

/// The longest path from an output to a leaf of the IR DAG (deepest output).
fn dag_depth(g: &Graph, outputs: &[Id]) -> usize {
    let mut depth = vec![0usize; g.len()];
    for (i, node) in g.nodes().iter().enumerate() {
        depth[i] = 1 + node
            .children()
            .iter()
            .map(|c| depth[usize::from(*c)])
            .max()
            .unwrap_or(0);
    }
    outputs
        .iter()
        .map(|o| depth[usize::from(*o)])
        .max()
        .unwrap_or(0)
}

/// The generator reaches the depth it promises and the constructs the language has.
#[test]
fn generator_coverage() {
    let mut runner = TestRunner::new(Config {
        rng_seed: RngSeed::Fixed(7),
        ..Config::default()
    });
    let mut all = String::new();
    let (mut shallow, mut deepest, mut total) = (0, 0, 0);
    for family in [Family::Single, Family::TwoBlock, Family::MatrixParam] {
        let strategy = cases(family);
        for _ in 0..300 {
            let case = strategy.new_tree(&mut runner).expect("a case").current();
            all.push_str(&case.spec.func);
            let checker = Checker::new(&case.spec).expect("generated rules analyze");
            let r = &checker.rule;
            let depth = dag_depth(&r.graph, &r.outputs);
            shallow += usize::from(depth < 4);
            deepest = deepest.max(depth);
            total += 1;
        }
    }
    // Literal folding in the smart constructors may shorten a few rules.
    assert!(
        shallow * 20 <= total,
        "{shallow} of {total} rules have depth < 4"
    );
    eprintln!("IR depth up to {deepest}; {shallow} of {total} below 4");
    for construct in [
        ".transpose()",
        ".dot(",
        ".component_mul(",
        ".component_div(",
        ".norm()",
        ".norm_squared()",
        ".sum()",
        ".map(|e|",
        ".add_scalar(",
        ".exp()",
        ".ln()",
        ".sin()",
        ".cos()",
        ".tanh()",
        ".sqrt()",
        ".abs()",
        ".powi(",
        ".powf(",
        ".max(",
        ".min(",
        "exp(&",
        "tanh(&",
        "sigmoid(",
        "softplus(",
        "relu(",
        "max(&",
        "min(&",
        "clamp(",
        "proj_box(",
        "soft_threshold(",
        "proj_nonneg(",
        "softmax(",
        "log_sum_exp(",
        "proj_simplex(",
        "proj_capped_simplex(",
        "proj_l2_ball(",
        "proj_hyperplane(",
        "proj_affine(",
        "let h",
        " / ",
        "(-",
        "DMatrix<f64>",
        "f64,",
    ] {
        assert!(
            all.contains(construct),
            "the generator never wrote `{construct}`"
        );
    }
}

#[test]
#[ignore = "prints sample rules to read the generator's output"]
fn print_samples() {
    let mut runner = TestRunner::new(Config {
        rng_seed: RngSeed::Fixed(11),
        ..Config::default()
    });
    for family in [Family::Single, Family::TwoBlock, Family::MatrixParam] {
        let strategy = cases(family);
        for _ in 0..6 {
            let case = strategy.new_tree(&mut runner).expect("a case").current();
            println!("// {} choices\n{}", case.spec.used, case.spec.source());
        }
    }
}
