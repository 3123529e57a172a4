//! The Rust expression of each IR operation (`Scope::expr`): products through views,
//! fused kernels, masks, projections and opaque calls.

use super::{lit, product, Scope};
use crate::ir::{Kind, Node};
use crate::stage::peel;
use egg::{Id, Language};
use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::quote;

impl Scope<'_> {
    /// An operand of a product: its view's coefficient tokens, base access, transposition.
    pub(super) fn view_tokens(&self, x: Id) -> (TokenStream, Id, bool) {
        let v = peel(self.g, x, &|y| self.preset(y));
        let cs: Vec<TokenStream> = v.coef.iter().map(|c| self.access(*c)).collect();
        let coef = match cs.len() {
            0 => quote!(1.0),
            1 => cs[0].clone(),
            _ => product(&cs),
        };
        let coef = if v.negated { quote!(-#coef) } else { coef };
        (coef, v.base, v.transposed)
    }

    /// The expression computing term `id` from available operands.
    pub fn expr(&self, id: Id) -> TokenStream {
        let g = self.g;
        let node = g.node(id).clone();
        let ch = node.children().to_vec();
        let a = |k: usize| self.access(ch[k]);
        let r = |k: usize| self.recv(ch[k]);
        let scalar = self.is_scalar(id);
        let ops = quote!(ops);
        // An array operand read for the last time is mapped in its own buffer.
        let arr = |k: usize| self.take(ch[k]).unwrap_or_else(|| self.access(ch[k]));
        let unary = |f: &str| {
            let fi = Ident::new(f, Span::call_site());
            if scalar {
                let x = r(0);
                quote!(#x.#fi())
            } else {
                let x = arr(0);
                quote!(#ops::#fi(#x))
            }
        };
        let mask = |f: &str, rest: &[TokenStream]| {
            let fi = Ident::new(f, Span::call_site());
            let x = if scalar {
                let x = a(0);
                quote!(&#x)
            } else {
                arr(0)
            };
            quote!(#ops::mask::#fi(#x #(, #rest)*))
        };
        let q = if self.fallible {
            quote!(?)
        } else {
            TokenStream::new()
        };
        // Masks of primitives with a domain (clamp's `lo ≤ hi`, soft_threshold's `t ≥ 0`):
        // checked wherever they are staged, so `backward` refuses what `solve` refuses.
        let checked_mask = |f: &str, rest: &[TokenStream]| {
            if self.fallible {
                let fi = Ident::new(f, Span::call_site());
                let x = if scalar {
                    let x = a(0);
                    quote!(&#x)
                } else {
                    arr(0)
                };
                quote!(#ops::domain::#fi(#x #(, #rest)*)?)
            } else {
                mask(f, rest)
            }
        };
        if let Some(set) = self.fused_support(id) {
            return self.fused_expr(id, set);
        }
        if let Some((v, base, set)) = self.gather_view(id) {
            let cs: Vec<TokenStream> = v.coef.iter().map(|c| self.access(*c)).collect();
            let coef = match cs.len() {
                0 => quote!(1.0),
                1 => cs[0].clone(),
                _ => product(&cs),
            };
            let coef = if v.negated { quote!(-#coef) } else { coef };
            let (b, st, tr) = (self.access(base), self.access(set), v.transposed);
            return quote!(kernels::gather_sub_view(#coef, #b, #st, #tr));
        }
        if let Some((other, diag)) = self.plus_diagonal(id) {
            let m = self.owned(other);
            return match diag {
                Some(d) => {
                    let d = self.access(d);
                    quote!(kernels::plus_diag(#m, #d))
                }
                None => quote!(kernels::plus_identity(#m, 1.0)),
            };
        }
        if let Some((y, x, z)) = self.product_added(id) {
            let (y, x, z) = (self.owned(y), self.access(x), self.access(z));
            return quote!(kernels::add_product(#y, #x, #z));
        }
        if let Some((s, y)) = self.negated_product(id) {
            // −(s y) = y (−s) exactly.
            let minus_s = match g.lit(s) {
                Some(v) => lit(-v),
                None => {
                    let s = self.access(s);
                    quote!(-#s)
                }
            };
            return match self.take(y) {
                Some(y) => quote!(#y * #minus_s),
                None if scalar => {
                    let y = self.access(y);
                    quote!(#y * #minus_s)
                }
                None => {
                    let y = self.access(y);
                    quote!(kernels::scaled(#y, #minus_s))
                }
            };
        }
        match node {
            Node::Num(l) => lit(l.get()),
            Node::Var(_) | Node::Zero => quote!(()),
            Node::Add([l, rr]) => match self.negated(rr) {
                Some(inner) => {
                    if self.takeable(l) && self.takeable(inner) {
                        let (x, y) = (self.take(l), self.take(inner));
                        return quote!(kernels::subtract(#x, #y));
                    }
                    let y = self.access(inner);
                    match self.take(l) {
                        Some(x) => quote!(#x - #y),
                        None if scalar => {
                            let x = self.access(l);
                            quote!(#x - #y)
                        }
                        None => {
                            let x = self.access(l);
                            quote!(kernels::difference(#x, #y))
                        }
                    }
                }
                None if scalar => {
                    let (x, y) = (a(0), a(1));
                    quote!(#x + #y)
                }
                None => {
                    if self.takeable(l) && self.takeable(rr) {
                        // Both read for the last time: one buffer for the sum, one kept.
                        let (x, y) = (self.take(l), self.take(rr));
                        quote!(kernels::add(#x, #y))
                    } else if let Some(x) = self.take(l) {
                        let y = a(1);
                        quote!(#x + #y)
                    } else if let Some(y) = self.take(rr) {
                        let x = a(0);
                        quote!(#y + #x)
                    } else {
                        let (x, y) = (a(0), a(1));
                        quote!(kernels::sum(#x, #y))
                    }
                }
            },
            // Borrowed array operands: the result goes into a kept buffer (`kernels::negated`).
            Node::Neg(_) => match self.take(ch[0]) {
                Some(x) => quote!(-#x),
                None if scalar => {
                    let x = a(0);
                    quote!(-#x)
                }
                None => {
                    let x = a(0);
                    quote!(kernels::negated(#x))
                }
            },
            Node::Mul(_) => {
                let s = a(0);
                if scalar {
                    let x = a(1);
                    quote!(#s * #x)
                } else if let Some(x) = self.take(ch[1]) {
                    quote!(#x * #s)
                } else {
                    let x = a(1);
                    quote!(kernels::scaled(#x, #s))
                }
            }
            Node::Div(_) => {
                let s = a(1);
                match self.take(ch[0]) {
                    Some(x) => quote!(#x / #s),
                    None if scalar => {
                        let x = a(0);
                        quote!(#x / #s)
                    }
                    None => {
                        let x = a(0);
                        quote!(kernels::divided(#x, #s))
                    }
                }
            }
            Node::MatVec([m, x]) => {
                let (coef, base, tr) = self.view_tokens(m);
                let b = self.access(base);
                let xv = self.access(x);
                let f = match (g.kind(base) == Kind::Sparse, tr) {
                    (false, false) => quote!(mv),
                    (false, true) => quote!(mtv),
                    (true, false) => quote!(sparse_mv),
                    (true, true) => quote!(sparse_mtv),
                };
                quote!(kernels::#f(#coef, #b, #xv))
            }
            Node::MatMul([l, r]) => {
                let (cl, bl, tl) = self.view_tokens(l);
                let (cr, br, tr) = self.view_tokens(r);
                let trivial = |c: &TokenStream| c.to_string() == "1.0";
                let coef = match (trivial(&cl), trivial(&cr)) {
                    (true, true) => quote!(1.0),
                    (true, false) => cr.clone(),
                    (false, true) => cl.clone(),
                    (false, false) => quote!(#cl * #cr),
                };
                let scaled = |e: TokenStream| {
                    if trivial(&coef) {
                        e
                    } else {
                        quote!(#e * (#coef))
                    }
                };
                // A diagonal factor scales rows or columns of the other (read transposed
                // when its view is).
                let dense = |base: Id, transposed: bool| {
                    if transposed {
                        let m = self.access(base);
                        quote!(&(#m).transpose())
                    } else {
                        self.take(base).unwrap_or_else(|| self.access(base))
                    }
                };
                match (g.node(bl), g.node(br)) {
                    (Node::Diag(d), Node::Diag(e)) if !self.preset(bl) && !self.preset(br) => {
                        let (d, e) = (self.access(*d), self.access(*e));
                        scaled(quote!(DMatrix::from_diagonal(&(#d).component_mul(#e))))
                    }
                    (Node::Diag(d), _) if !self.preset(bl) => {
                        let (d, m) = (self.access(*d), dense(br, tr));
                        scaled(quote!(kernels::scale_rows(#d, #m)))
                    }
                    (_, Node::Diag(d)) if !self.preset(br) => {
                        let (d, m) = (self.access(*d), dense(bl, tl));
                        scaled(quote!(kernels::scale_cols(#m, #d)))
                    }
                    _ => {
                        let (x, y) = (self.access(bl), self.access(br));
                        quote!(kernels::mm(#coef, #x, #tl, #y, #tr))
                    }
                }
            }
            Node::Transpose(_) if g.kind(ch[0]) == Kind::Matrix => {
                let x = a(0);
                quote!(kernels::transposed(#x))
            }
            Node::Transpose(_) => {
                let x = r(0);
                quote!(#x.transpose())
            }
            Node::Outer(_) => {
                let (x, y) = (a(0), a(1));
                quote!(kernels::outer(#x, #y))
            }
            Node::Dot(_) => {
                if scalar && self.is_scalar(ch[0]) {
                    let (x, y) = (a(0), a(1));
                    quote!(#x * #y)
                } else {
                    let (x, y) = (r(0), a(1));
                    quote!(#x.dot(#y))
                }
            }
            Node::Sum(_) | Node::Norm(_) | Node::NormSq(_) => {
                let x = r(0);
                let f = match node {
                    Node::Sum(_) => quote!(sum),
                    Node::Norm(_) => quote!(norm),
                    _ => quote!(norm_squared),
                };
                quote!(#x.#f())
            }
            Node::CMul(_) | Node::CDiv(_) if !self.is_scalar(ch[0]) => {
                // An operand read for the last time lends its buffer.
                let div = matches!(node, Node::CDiv(_));
                let f = if div {
                    quote!(hadamard_div)
                } else {
                    quote!(hadamard)
                };
                if let Some(x) = self.take(ch[0]) {
                    let y = a(1);
                    quote!(kernels::#f(#x, #y))
                } else if !div && self.takeable(ch[1]) {
                    let (y, x) = (self.take(ch[1]), a(0));
                    quote!(kernels::hadamard(#y, #x))
                } else {
                    // Both borrowed: a kept buffer.
                    let (x, y) = (a(0), a(1));
                    quote!(kernels::#f(#x, #y))
                }
            }
            Node::CMul(_) | Node::CDiv(_) => {
                let (x, y) = if self.is_scalar(ch[0]) {
                    (a(0), a(1))
                } else {
                    (r(0), a(1))
                };
                let div = matches!(node, Node::CDiv(_));
                match (self.is_scalar(ch[0]), div) {
                    (true, false) => quote!(#x * #y),
                    (true, true) => quote!(#x / #y),
                    (false, false) => quote!(#x.component_mul(#y)),
                    (false, true) => quote!(#x.component_div(#y)),
                }
            }
            Node::AddS(_) => {
                let s = a(1);
                if scalar {
                    let x = a(0);
                    quote!(#x + #s)
                } else {
                    let x = arr(0);
                    quote!(kernels::shifted(#x, #s))
                }
            }
            Node::Recip(_) => {
                if scalar {
                    let x = r(0);
                    quote!(1.0 / #x)
                } else {
                    let x = arr(0);
                    quote!(kernels::map(#x, |e| 1.0 / e))
                }
            }
            Node::Exp(_) => unary("exp"),
            Node::Ln(_) => unary("ln"),
            Node::Sin(_) => unary("sin"),
            Node::Cos(_) => unary("cos"),
            Node::Tanh(_) => unary("tanh"),
            Node::Sqrt(_) => unary("sqrt"),
            Node::Abs(_) => unary("abs"),
            Node::Sigmoid(_) | Node::Softplus(_) | Node::Relu(_) | Node::SafeRecip(_) => {
                let x = if scalar { a(0) } else { arr(0) };
                let f = match node {
                    Node::Sigmoid(_) => "sigmoid",
                    Node::Softplus(_) => "softplus",
                    Node::SafeRecip(_) => "recip0",
                    _ => "relu",
                };
                let fi = Ident::new(f, Span::call_site());
                if scalar {
                    quote!(#ops::#fi(&#x))
                } else {
                    quote!(#ops::#fi(#x))
                }
            }
            Node::Sign(_) => mask("sign", &[]),
            Node::Powi(_) => {
                let k = Literal::i32_unsuffixed(g.lit(ch[1]).unwrap_or(1.0) as i32);
                if scalar {
                    let x = r(0);
                    quote!(#x.powi(#k))
                } else {
                    let x = arr(0);
                    quote!(kernels::map(#x, |e| e.powi(#k)))
                }
            }
            Node::Powf(_) => {
                let c = a(1);
                if scalar {
                    let x = r(0);
                    quote!(#x.powf(#c))
                } else {
                    let x = arr(0);
                    quote!(kernels::powered(#x, #c))
                }
            }
            Node::Max(_) | Node::Min(_) => {
                let s = a(1);
                let x = if scalar { a(0) } else { arr(0) };
                let f = if matches!(node, Node::Max(_)) {
                    quote!(max)
                } else {
                    quote!(min)
                };
                if scalar {
                    let x = r(0);
                    quote!(#x.#f(#s))
                } else {
                    quote!(#ops::#f(#x, #s))
                }
            }
            Node::Clamp(_) => {
                let (lo, hi) = (a(1), a(2));
                let x = if scalar { a(0) } else { arr(0) };
                if self.fallible {
                    let x = if scalar { quote!(&#x) } else { x };
                    quote!(#ops::domain::clamp(#x, #lo, #hi)?)
                } else if scalar {
                    let x = r(0);
                    quote!(#x.max(#lo).min(#hi))
                } else {
                    quote!(#ops::clamp(#x, #lo, #hi))
                }
            }
            Node::SoftThreshold(_) => {
                let t = a(1);
                let x = if scalar {
                    let x = a(0);
                    quote!(&#x)
                } else {
                    arr(0)
                };
                if self.fallible {
                    quote!(#ops::domain::soft_threshold(#x, #t)?)
                } else {
                    quote!(#ops::soft_threshold(#x, #t))
                }
            }
            Node::Softmax(_) => {
                let x = a(0);
                quote!(#ops::softmax(#x))
            }
            Node::LogSumExp(_) => {
                let x = a(0);
                quote!(#ops::log_sum_exp(#x))
            }
            Node::ProjSimplex(_) | Node::ProjCappedSimplex(_) | Node::ProjL2Ball(_) => {
                let (v, r) = (a(0), a(1));
                let f = match node {
                    Node::ProjSimplex(_) => quote!(try_proj_simplex),
                    Node::ProjCappedSimplex(_) => quote!(try_proj_capped_simplex),
                    _ => quote!(try_proj_l2_ball),
                };
                quote!(#ops::#f(#v, #r) #q)
            }
            Node::Solve([m, r]) | Node::SolveT([m, r]) => {
                let v = peel(g, m, &|_| false);
                let f = self.factor_access(v.base);
                let rhs = self.access(r);
                let transposed = v.transposed != matches!(g.node(id), Node::SolveT(_));
                let solve = match (transposed, self.is_scalar(r) || g.kind(r) == Kind::Vector) {
                    (false, true) => quote!(#f.solve(#rhs)),
                    (true, true) => quote!(#f.solve_transpose(#rhs)),
                    (false, false) => {
                        quote!(kernels::lu_solve_columns(&#f, #rhs, false))
                    }
                    (true, false) => {
                        quote!(kernels::lu_solve_columns(&#f, #rhs, true))
                    }
                };
                if v.coef.is_empty() && !v.negated {
                    solve
                } else {
                    // (c M)⁻¹ r = M⁻¹ r / c.
                    let mut c: Vec<TokenStream> = v.coef.iter().map(|c| self.access(*c)).collect();
                    if v.negated {
                        c.push(quote!(-1.0));
                    }
                    let p = product(&c);
                    quote!(#solve / #p)
                }
            }
            Node::MaskIn(_) => checked_mask("between", &[a(1), a(2)]),
            Node::Gt(_) => mask("greater", &[a(1)]),
            Node::Lt(_) => mask("less", &[a(1)]),
            Node::Ge(_) => mask("at_least", &[a(1)]),
            Node::Le(_) => mask("at_most", &[a(1)]),
            Node::Outside(_) => checked_mask("outside", &[a(1)]),
            Node::Ones(_) => {
                if scalar {
                    quote!(1.0)
                } else {
                    let x = a(0);
                    quote!(kernels::map(#x, |_| 1.0))
                }
            }
            Node::Eye(_) => {
                let x = a(0);
                quote!(kernels::eye_like(#x))
            }
            Node::Diag(_) => {
                let x = a(0);
                quote!(DMatrix::from_diagonal(#x))
            }
            Node::Diagonal(_) => {
                let x = r(0);
                quote!(#x.diagonal())
            }
            Node::ColumnSum(m) => match self.transposed_view(m) {
                // Column totals read the matrix itself, never a transposed copy.
                Some(b) => {
                    let x = self.recv(b);
                    quote!(#x.row_sum_tr())
                }
                None => {
                    let x = r(0);
                    quote!(#x.column_sum())
                }
            },
            Node::MaxEntry(_) | Node::MinEntry(_) | Node::ArgMax(_) | Node::ArgMin(_) => {
                let x = a(0);
                let f = match node {
                    Node::MaxEntry(_) => quote!(max_entry),
                    Node::MinEntry(_) => quote!(min_entry),
                    Node::ArgMax(_) => quote!(argmax_indicator),
                    _ => quote!(argmin_indicator),
                };
                quote!(#ops::#f(#x))
            }
            Node::Select(_) => {
                let (c, x, y) = (a(0), a(1), a(2));
                if scalar {
                    quote!(if #c != 0.0 { #x } else { #y })
                } else {
                    quote!(if #c != 0.0 { (#x).clone() } else { (#y).clone() })
                }
            }
            Node::Support(_) => {
                let x = a(0);
                quote!(#ops::mask::support(#x))
            }
            Node::Card(_) => {
                let s = r(0);
                quote!(#s.len() as f64)
            }
            Node::GatherV(_) | Node::GatherM(_) | Node::GatherRows(_) | Node::GatherCols(_) => {
                let (x, s) = (a(0), a(1));
                let f = match node {
                    Node::GatherV(_) => quote!(gather),
                    Node::GatherM(_) => quote!(gather_sub),
                    Node::GatherRows(_) => quote!(gather_rows),
                    _ => quote!(gather_cols),
                };
                quote!(kernels::#f(#x, #s))
            }
            Node::Scatter(_) => {
                let (x, s, like) = (a(0), a(1), r(2));
                quote!(kernels::scatter(#x, #s, #like.len()))
            }
            Node::Call(..) | Node::CallVjp(_) | Node::CallJvp(_) | Node::Get(_) => {
                self.call_expr(id)
            }
        }
    }
}
