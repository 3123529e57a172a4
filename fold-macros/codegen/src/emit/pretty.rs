//! Terms as readable math: `Φᵀv = m ⊙ v − α Qᵀ(m ⊙ v)` with named intermediates.

use crate::ir::graph::Graph;
use crate::ir::{display_name, Kind, Node};
use egg::{Id, Language};
use std::collections::{HashMap, HashSet};

const SUM: u8 = 1;
const PROD: u8 = 2;
const UNARY: u8 = 3;
const ATOM: u8 = 4;

/// Prints terms of one graph, naming intermediates consistently across them.
pub struct Printer<'a> {
    g: &'a Graph,
    names: HashMap<Id, String>,
}

fn num(v: f64) -> String {
    // Twelve significant digits: a product of literals (`0.1 · 0.4`) reads `0.04`, not its
    // rounding noise (the generated code keeps the exact value).
    let rounded: f64 = format!("{:.11e}", v.abs()).parse().unwrap_or(v.abs());
    let s = if rounded.fract() == 0.0 && rounded < 1e15 {
        format!("{}", rounded as i64)
    } else {
        format!("{rounded}")
    };
    if v < 0.0 {
        format!("−{s}")
    } else {
        s
    }
}

fn is_mask(n: &Node) -> bool {
    matches!(
        n,
        Node::MaskIn(_) | Node::Gt(_) | Node::Lt(_) | Node::Ge(_) | Node::Le(_) | Node::Outside(_)
    )
}

impl<'a> Printer<'a> {
    /// A printer for `roots` of `g`: let-bound intermediates keep their names; masks and
    /// subterms used more than once get short names.
    pub fn new(g: &'a Graph, roots: &[Id]) -> Self {
        let reach = g.reachable(roots);
        let mut uses = vec![0usize; g.len()];
        // Terms only used for their size (`I`, `𝟙` of their length) print as nothing.
        let mut size_only = vec![true; g.len()];
        for (i, node) in g.nodes().iter().enumerate() {
            if reach[i] {
                for c in node.children() {
                    uses[usize::from(*c)] += 1;
                    if !matches!(node, Node::Eye(_) | Node::Ones(_)) {
                        size_only[usize::from(*c)] = false;
                    }
                }
            }
        }
        // Terms that are the first operand of a reachable mask (`z` in `1[0 < z < 1]`).
        let mut mask_args = vec![false; g.len()];
        for (j, n) in g.nodes().iter().enumerate() {
            if reach[j] && is_mask(n) {
                if let Some(first) = n.children().first() {
                    mask_args[usize::from(*first)] = true;
                }
            }
        }
        let roots: HashSet<Id> = roots.iter().copied().collect();
        let mut names = HashMap::new();
        let mut taken: HashSet<String> = g.vars.keys().map(|s| display_name(*s)).collect();
        // The next suffix to try per base name, so that naming n terms costs O(n).
        let mut next: HashMap<String, usize> = HashMap::new();
        let mut fresh = |base: &str, taken: &mut HashSet<String>| {
            let k = next.entry(base.to_string()).or_insert(1);
            loop {
                let cand = if *k == 1 && base != "w" {
                    base.to_string()
                } else {
                    format!("{base}{k}")
                };
                *k += 1;
                if taken.insert(cand.clone()) {
                    return cand;
                }
            }
        };
        for (i, node) in g.nodes().iter().enumerate() {
            if !reach[i] || matches!(node, Node::Var(_) | Node::Num(_)) {
                continue;
            }
            let id = Id::from(i);
            if roots.contains(&id)
                && !g.names.contains_key(&id)
                && !matches!(node, Node::Support(_))
            {
                continue;
            }
            let mask_arg = mask_args[i];
            let name = if let Some(n) = g.names.get(&id) {
                Some(fresh(n, &mut taken))
            } else if is_mask(node) {
                Some(fresh("m", &mut taken))
            } else if matches!(node, Node::Support(_)) {
                Some(fresh("F", &mut taken))
            } else if mask_arg && !trivial(g, id) {
                Some(fresh("z", &mut taken))
            } else if uses[i] >= 2 && !trivial(g, id) && !size_only[i] {
                Some(fresh("w", &mut taken))
            } else {
                None
            };
            if let Some(n) = name {
                names.insert(id, n);
            }
        }
        Printer { g, names }
    }

    /// The names given to intermediates.
    pub fn names(&self) -> &HashMap<Id, String> {
        &self.names
    }

    /// `name = definition` lines for every named intermediate `roots` use, in order.
    pub fn definitions(&self, roots: &[Id]) -> Vec<String> {
        let reach = self.g.reachable(roots);
        let mut out = Vec::new();
        for (i, &reached) in reach.iter().enumerate() {
            let id = Id::from(i);
            if reached {
                if let Some(n) = self.names.get(&id) {
                    out.push(format!("{n} = {}", self.body(id, 0)));
                }
            }
        }
        out
    }

    /// The term, referring to named intermediates by name.
    pub fn term(&self, id: Id) -> String {
        self.at(id, 0)
    }

    /// Terms printed as a comma-separated argument list.
    fn list(&self, ids: &[Id]) -> String {
        ids.iter()
            .map(|a| self.at(*a, 0))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn at(&self, id: Id, prec: u8) -> String {
        if let Some(n) = self.names.get(&id) {
            return n.clone();
        }
        self.body(id, prec)
    }

    /// A product as its sign and its factors: `−α (Qᵀ w)` reads `(true, "α Qᵀ w")`.
    fn factors(&self, id: Id) -> (bool, String) {
        if self.names.contains_key(&id) {
            return (false, self.at(id, UNARY));
        }
        self.factors_of_body(id)
    }

    /// [`Printer::factors`] of the node's own definition (even when it has a name).
    fn factors_of_body(&self, id: Id) -> (bool, String) {
        match self.g.node(id) {
            Node::Neg(x) => {
                let (n, t) = self.factors(*x);
                (!n, t)
            }
            Node::Num(l) if l.get() < 0.0 => (true, num(-l.get())),
            Node::Mul([a, b]) | Node::MatVec([a, b]) | Node::MatMul([a, b]) => {
                let (na, ta) = self.factors(*a);
                let (nb, tb) = self.factors(*b);
                (na != nb, format!("{ta} {tb}"))
            }
            _ => (false, self.body(id, UNARY)),
        }
    }

    fn body(&self, id: Id, prec: u8) -> String {
        let g = self.g;
        let node = g.node(id);
        let c = |k: usize, p: u8| self.at(node.children()[k], p);
        let wrap = |s: String, mine: u8| if mine < prec { format!("({s})") } else { s };
        let f1 = |name: &str| format!("{name}({})", c(0, 0));
        match node {
            Node::Num(l) => {
                let v = l.get();
                let s = num(v);
                if v < 0.0 {
                    wrap(s, UNARY)
                } else {
                    s
                }
            }
            Node::Var(s) => display_name(*s),
            Node::Add([a, b]) => {
                let rhs = match g.node(*b) {
                    Node::Num(l) if l.get() < 0.0 => format!(" − {}", num(-l.get())),
                    _ => match self.factors(*b) {
                        (true, t) => format!(" − {t}"),
                        (false, _) => format!(" + {}", self.at(*b, SUM)),
                    },
                };
                wrap(format!("{}{rhs}", self.at(*a, SUM)), SUM)
            }
            Node::Neg(_) | Node::Mul(_) => match self.factors_of_body(id) {
                (true, t) => wrap(format!("−{t}"), PROD),
                (false, t) => wrap(t, PROD),
            },
            Node::Div(_) => wrap(format!("{} / {}", c(0, PROD), c(1, UNARY)), PROD),
            Node::MatVec(_) | Node::MatMul(_) => match self.factors_of_body(id) {
                (true, t) => wrap(format!("−{t}"), PROD),
                (false, t) => wrap(t, PROD),
            },
            Node::Transpose(_) => format!("{}ᵀ", c(0, ATOM)),
            Node::Outer(_) => wrap(format!("{} {}ᵀ", c(0, UNARY), c(1, ATOM)), PROD),
            Node::Dot(_) => format!("⟨{}, {}⟩", c(0, 0), c(1, 0)),
            Node::Sum(_) => f1("sum"),
            Node::Norm(_) => format!("‖{}‖", c(0, 0)),
            Node::NormSq(_) => format!("‖{}‖²", c(0, 0)),
            Node::CMul(_) => wrap(format!("{} ⊙ {}", c(0, PROD), c(1, UNARY)), PROD),
            Node::CDiv(_) => wrap(format!("{} ⊘ {}", c(0, PROD), c(1, UNARY)), PROD),
            Node::AddS([a, b]) => match (g.lit(*b), self.factors(*a)) {
                (Some(v), _) if v < 0.0 => wrap(format!("{} − {}", c(0, SUM), num(-v)), SUM),
                // s + (−x) reads s − x.
                (_, (true, t)) => wrap(format!("{} − {t}", c(1, SUM)), SUM),
                _ => wrap(format!("{} + {}", c(0, SUM), c(1, PROD)), SUM),
            },
            Node::Recip(_) => wrap(format!("1 / {}", c(0, UNARY)), PROD),
            Node::SafeRecip(_) => f1("recip0"),
            Node::Exp(_) => f1("exp"),
            Node::Ln(_) => f1("ln"),
            Node::Sin(_) => f1("sin"),
            Node::Cos(_) => f1("cos"),
            Node::Tanh(_) => f1("tanh"),
            Node::Sqrt(_) => f1("sqrt"),
            Node::Abs(_) => format!("|{}|", c(0, 0)),
            Node::Sigmoid(_) => f1("sigmoid"),
            Node::Softplus(_) => f1("softplus"),
            Node::Relu(_) => f1("relu"),
            Node::Sign(_) => f1("sign"),
            Node::Powi(_) | Node::Powf(_) => format!("{}^{}", c(0, ATOM), c(1, ATOM)),
            Node::Max(_) => format!("max({}, {})", c(0, 0), c(1, 0)),
            Node::Min(_) => format!("min({}, {})", c(0, 0), c(1, 0)),
            Node::Clamp(_) => format!("clamp({}, {}, {})", c(0, 0), c(1, 0), c(2, 0)),
            Node::SoftThreshold(_) => format!("soft_threshold({}, {})", c(0, 0), c(1, 0)),
            Node::Softmax(_) => f1("softmax"),
            Node::LogSumExp(_) => f1("log_sum_exp"),
            Node::ProjSimplex(_) => format!("proj_simplex({}, {})", c(0, 0), c(1, 0)),
            Node::ProjCappedSimplex(_) => format!("proj_capped_simplex({}, {})", c(0, 0), c(1, 0)),
            Node::ProjL2Ball(_) => format!("proj_l2_ball({}, {})", c(0, 0), c(1, 0)),
            Node::Solve(_) => wrap(format!("{}⁻¹ {}", c(0, ATOM), c(1, UNARY)), PROD),
            Node::SolveT(_) => wrap(format!("{}⁻ᵀ {}", c(0, ATOM), c(1, UNARY)), PROD),
            Node::MaskIn(_) => format!("1[{} < {} < {}]", c(1, SUM), c(0, SUM), c(2, SUM)),
            Node::Gt(_) => format!("1[{} > {}]", c(0, SUM), c(1, SUM)),
            Node::Lt(_) => format!("1[{} < {}]", c(0, SUM), c(1, SUM)),
            Node::Ge(_) => format!("1[{} ≥ {}]", c(0, SUM), c(1, SUM)),
            Node::Le(_) => format!("1[{} ≤ {}]", c(0, SUM), c(1, SUM)),
            Node::Outside(_) => format!("1[|{}| > {}]", c(0, 0), c(1, SUM)),
            Node::Ones(_) => "𝟙".to_string(),
            Node::Eye(_) => "I".to_string(),
            Node::Diag(_) => f1("diag"),
            Node::Diagonal(_) => f1("diagonal"),
            Node::ColumnSum(_) => f1("column_sum"),
            Node::MaxEntry(_) => f1("max"),
            Node::MinEntry(_) => f1("min"),
            Node::ArgMax(_) => format!("1[argmax {}]", c(0, ATOM)),
            Node::ArgMin(_) => format!("1[argmin {}]", c(0, ATOM)),
            Node::Select(_) => format!("({} ? {} : {})", c(0, 0), c(1, 0), c(2, 0)),
            Node::Support(_) => format!("{{i : {}ᵢ ≠ 0}}", c(0, ATOM)),
            Node::Card(_) => format!("|{}|", c(0, 0)),
            Node::GatherV([v, s]) | Node::GatherM([v, s]) => {
                let sub = self.at(*s, ATOM);
                let base = self.at(*v, ATOM);
                if matches!(node, Node::GatherM(_)) {
                    format!("{base}[{sub},{sub}]")
                } else {
                    format!("{base}[{sub}]")
                }
            }
            Node::GatherRows(_) => format!("{}[{},:]", c(0, ATOM), c(1, ATOM)),
            Node::GatherCols(_) => format!("{}[:,{}]", c(0, ATOM), c(1, ATOM)),
            Node::Scatter(_) => format!("scatter({}, {})", c(0, 0), c(1, 0)),
            Node::Call(name, args) => format!("{name}({})", self.list(args)),
            Node::CallVjp(ch) => format!("∂{}ᵀ[{}]", self.at(ch[0], ATOM), self.list(&ch[1..])),
            Node::CallJvp(ch) => format!("∂{}[{}]", self.at(ch[0], ATOM), self.list(&ch[1..])),
            Node::Get([t, i]) => {
                let k = g.lit(*i).unwrap_or(0.0);
                if matches!(g.node(*t), Node::Call(..)) && g.tuple_kinds(*t).len() == 1 {
                    self.at(*t, prec)
                } else {
                    format!("{}.{}", self.at(*t, ATOM), num(k))
                }
            }
            Node::Zero => "0".to_string(),
        }
    }
}

/// Whether a term is too small to deserve a name of its own.
fn trivial(g: &Graph, id: Id) -> bool {
    match g.node(id) {
        Node::Var(_) | Node::Num(_) | Node::Ones(_) | Node::Eye(_) | Node::Zero => true,
        Node::Neg(x) | Node::Transpose(x) => trivial(g, *x),
        // A scaled matrix is a view the products read (`α A x`), printed where it is used.
        Node::Mul([s, x]) if matches!(g.kind(*x), Kind::Matrix | Kind::Sparse) => {
            trivial(g, *s) && trivial(g, *x)
        }
        _ => g.kind(id) == Kind::Scalar && g.node(id).children().iter().all(|c| trivial(g, *c)),
    }
}

/// The `DERIVATIVES` text of a rule: named intermediates, then `Φᵀv`, `Ψ_θᵀv`, `Φu`, `Ψδθ`.
pub fn derivatives(rule: &crate::rule::Rule) -> String {
    let mut roots = Vec::new();
    let mut lines: Vec<(String, Option<Id>)> = Vec::new();
    let blocks = rule.block_names();
    let block_label = |base: &str, b: usize| {
        if rule.sig.block_state {
            format!("{base}[{}]", blocks[b])
        } else {
            base.to_string()
        }
    };
    // The seeds as the terms spell them (`v_` when the state itself is called `v`); with
    // block state the headers name the concatenated seeds `v` and `u`.
    let seed = |ids: &[Id], fallback: &str| match ids {
        [id] if !rule.sig.block_state => match rule.graph.node(*id) {
            crate::ir::Node::Var(s) => crate::ir::display_name(*s),
            _ => fallback.to_string(),
        },
        _ => fallback.to_string(),
    };
    let v = seed(&rule.seeds.cotangent, "v");
    let u = seed(&rule.seeds.tangent, "u");
    for (b, r) in rule.vjp_state.iter().enumerate() {
        lines.push((block_label(&format!("Φᵀ{v}"), b), *r));
    }
    for (p, r) in rule.param_names().iter().zip(&rule.vjp_params) {
        lines.push((format!("Ψ_{p}ᵀ{v}"), *r));
    }
    for (b, r) in rule.jvp_state.iter().enumerate() {
        lines.push((block_label(&format!("Φ{u}"), b), *r));
    }
    for (b, r) in rule.jvp_params.iter().enumerate() {
        lines.push((block_label("Ψδθ", b), *r));
    }
    roots.extend(lines.iter().filter_map(|(_, r)| *r));
    let red = rule.reduction.as_ref();
    if let Some(r) = red {
        roots.push(r.support);
        roots.extend(r.matrix);
        roots.extend(r.inner_params.iter().flatten());
        if let Some(h) = &r.head_params {
            roots.extend(h.iter().flatten());
        }
    }
    let p = Printer::new(&rule.graph, &roots);
    let mut out = String::new();
    // Matrix state blocks: their (co)tangents are the flat seeds reshaped column-major.
    for (b, &i) in rule.sig.blocks.iter().enumerate() {
        if rule.sig.args[i].kind == crate::ir::Kind::Matrix {
            let name = |ids: &[Id]| match rule.graph.node(ids[b]) {
                crate::ir::Node::Var(s) => crate::ir::display_name(*s),
                _ => String::new(),
            };
            let (vb, ub) = (name(&rule.seeds.cotangent), name(&rule.seeds.tangent));
            out.push_str(&format!(
                "{vb}, {ub}: shaped like {} (the flat vectors, column-major)\n",
                rule.sig.args[i].name
            ));
        }
    }
    for d in p.definitions(&roots) {
        out.push_str(&d);
        out.push('\n');
    }
    for (label, r) in lines {
        let rhs = r.map_or_else(|| "0".to_string(), |id| p.term(id));
        out.push_str(&format!("{label} = {rhs}\n"));
    }
    if let Some(r) = red {
        let set = p.term(r.support);
        let w = crate::ir::display_name(match rule.graph.node(r.seed) {
            crate::ir::Node::Var(s) => *s,
            _ => egg::Symbol::from("w"),
        });
        let rhs = match r.kernel {
            crate::diff::restrict::Kernel::Identity => format!("g[{set}]"),
            crate::diff::restrict::Kernel::Centered => format!("(I − 𝟙𝟙ᵀ/|{set}|) g[{set}]"),
        };
        out.push_str(&format!("reduced backward (Method::Auto) on {set}:\n"));
        match r.matrix {
            Some(m) if r.sparse => out.push_str(&format!(
                "  solve ({}) ξ = {rhs}, assembled sparse\n",
                p.term(m)
            )),
            Some(m) if r.matrix_transposed => {
                out.push_str(&format!("  solve ({})ᵀ ξ = {rhs}\n", p.term(m)))
            }
            Some(m) => out.push_str(&format!("  solve ({}) ξ = {rhs}\n", p.term(m))),
            None => out.push_str(&format!(
                "  solve (I − Kᵀ M[{set},{set}]ᵀ) ξ = {rhs} matrix-free\n"
            )),
        }
        out.push_str(&format!("  {w} = scatter(ξ) on {set}\n"));
        for (name, t) in rule.param_names().iter().zip(&r.inner_params) {
            let rhs = t.map_or_else(|| "0".to_string(), |id| p.term(id));
            out.push_str(&format!("  Ψ_{name}ᵀ{w} = {rhs}\n"));
        }
        if r.head_params.is_some() {
            out.push_str(&format!(
                "  (+ the projection's own parameter terms at g + Mᵀ {w})\n"
            ));
        }
    }
    out
}
