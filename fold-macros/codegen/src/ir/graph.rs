//! A hash-consed DAG of IR terms with their kinds, and smart constructors that keep
//! derivative terms small (literal folding, identities) before the e-graph sees them.

use crate::ir::{Kind, Lit, Node, Role};
use egg::{Id, Language, RecExpr, Symbol};
use std::collections::HashMap;

/// What a named variable is.
#[derive(Clone, Debug)]
pub struct VarInfo {
    /// Its kind.
    pub kind: Kind,
    /// Its role in the rule.
    pub role: Role,
}

/// Kinds of the outputs of an opaque call named `name`.
pub fn call_output_kinds(name: &str, arg_kinds: &[Kind]) -> Vec<Kind> {
    match crate::ir::builtins::Opaque::from_name(name) {
        Some(o) => vec![Kind::Vector; o.outputs()],
        None => vec![arg_kinds.first().copied().unwrap_or(Kind::Vector)],
    }
}

/// What kind inference needs to know about an operand.
pub struct ChildInfo {
    /// Its kind.
    pub kind: Kind,
    /// Output kinds, for tuples.
    pub tuple: Vec<Kind>,
    /// Argument kinds, for opaque calls (the outputs of their VJP).
    pub call_args: Vec<Kind>,
    /// Its literal value, for scalars that are literals.
    pub lit: Option<f64>,
}

/// The kind of `node` (and its output kinds when it is a tuple) from its operands'.
pub fn infer_kind(
    node: &Node,
    vars: &HashMap<Symbol, VarInfo>,
    child: &dyn Fn(Id) -> ChildInfo,
) -> (Kind, Vec<Kind>) {
    let k = |id: &Id| child(*id).kind;
    let kind = match node {
        Node::Add([a, _])
        | Node::Div([a, _])
        | Node::CMul([a, _])
        | Node::CDiv([a, _])
        | Node::AddS([a, _])
        | Node::Powi([a, _])
        | Node::Powf([a, _])
        | Node::Max([a, _])
        | Node::Min([a, _])
        | Node::Clamp([a, _, _])
        | Node::SoftThreshold([a, _])
        | Node::MaskIn([a, _, _])
        | Node::Gt([a, _])
        | Node::Lt([a, _])
        | Node::Ge([a, _])
        | Node::Le([a, _])
        | Node::Outside([a, _]) => k(a),
        Node::Neg(a)
        | Node::Recip(a)
        | Node::SafeRecip(a)
        | Node::Exp(a)
        | Node::Ln(a)
        | Node::Sin(a)
        | Node::Cos(a)
        | Node::Tanh(a)
        | Node::Sqrt(a)
        | Node::Abs(a)
        | Node::Sigmoid(a)
        | Node::Softplus(a)
        | Node::Relu(a)
        | Node::Sign(a)
        | Node::Ones(a)
        | Node::ArgMax(a)
        | Node::ArgMin(a) => k(a),
        Node::Mul([_, b])
        | Node::Solve([_, b])
        | Node::SolveT([_, b])
        | Node::Select([_, b, _]) => k(b),
        Node::Transpose(a) => {
            if k(a) == Kind::Sparse {
                Kind::Sparse
            } else {
                Kind::Matrix
            }
        }
        Node::MatVec(_)
        | Node::Diagonal(_)
        | Node::ColumnSum(_)
        | Node::Softmax(_)
        | Node::ProjSimplex(_)
        | Node::ProjCappedSimplex(_)
        | Node::ProjL2Ball(_)
        | Node::GatherV(_)
        | Node::Scatter(_) => Kind::Vector,
        Node::MatMul(_)
        | Node::Outer(_)
        | Node::Eye(_)
        | Node::Diag(_)
        | Node::GatherM(_)
        | Node::GatherRows(_)
        | Node::GatherCols(_) => Kind::Matrix,
        Node::Dot(_)
        | Node::MaxEntry(_)
        | Node::MinEntry(_)
        | Node::Sum(_)
        | Node::Norm(_)
        | Node::NormSq(_)
        | Node::LogSumExp(_)
        | Node::Card(_)
        | Node::Num(_) => Kind::Scalar,
        Node::Support(_) => Kind::Index,
        Node::Zero => Kind::Zero,
        Node::Var(s) => vars.get(s).map_or(Kind::Scalar, |v| v.kind),
        Node::Call(name, args) => {
            let arg_kinds: Vec<Kind> = args.iter().map(k).collect();
            return (Kind::Tuple, call_output_kinds(name.as_str(), &arg_kinds));
        }
        Node::CallVjp(ch) => return (Kind::Tuple, child(ch[0]).call_args),
        Node::CallJvp(ch) => return (Kind::Tuple, child(ch[0]).tuple),
        Node::Get([t, i]) => {
            let index = child(*i).lit.unwrap_or(0.0) as usize;
            child(*t).tuple.get(index).copied().unwrap_or(Kind::Vector)
        }
    };
    (kind, Vec::new())
}

/// A DAG of terms: node `i` only refers to nodes `< i`.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    nodes: Vec<Node>,
    kinds: Vec<Kind>,
    tuples: HashMap<Id, Vec<Kind>>,
    memo: HashMap<Node, Id>,
    /// Every variable that may appear in a term.
    pub vars: HashMap<Symbol, VarInfo>,
    /// Readable names of intermediates (from `let` bindings).
    pub names: HashMap<Id, String>,
}

impl Graph {
    /// An empty graph knowing the given variables.
    pub fn new(vars: HashMap<Symbol, VarInfo>) -> Graph {
        Graph {
            vars,
            ..Graph::default()
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node with id `id`.
    pub fn node(&self, id: Id) -> &Node {
        &self.nodes[usize::from(id)]
    }

    /// The kind of term `id`.
    pub fn kind(&self, id: Id) -> Kind {
        self.kinds[usize::from(id)]
    }

    /// Output kinds of a tuple-valued term.
    pub fn tuple_kinds(&self, id: Id) -> &[Kind] {
        self.tuples.get(&id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// All nodes, in topological order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Adds a node verbatim (no simplification), sharing an identical existing node.
    pub fn add(&mut self, node: Node) -> Id {
        if let Some(&id) = self.memo.get(&node) {
            return id;
        }
        let (kind, tuple) = self.infer(&node);
        let id = Id::from(self.nodes.len());
        self.nodes.push(node.clone());
        self.kinds.push(kind);
        if let Some(t) = tuple {
            self.tuples.insert(id, t);
        }
        self.memo.insert(node, id);
        id
    }

    fn infer(&self, node: &Node) -> (Kind, Option<Vec<Kind>>) {
        let info = |id: Id| ChildInfo {
            kind: self.kind(id),
            tuple: self.tuple_kinds(id).to_vec(),
            call_args: match self.node(id) {
                Node::Call(_, args) => args.iter().map(|a| self.kind(*a)).collect(),
                _ => Vec::new(),
            },
            lit: self.lit(id),
        };
        let (kind, tuple) = infer_kind(node, &self.vars, &info);
        (kind, (kind == Kind::Tuple).then_some(tuple))
    }

    /// The literal value of `id`, if it is one.
    pub fn lit(&self, id: Id) -> Option<f64> {
        match self.node(id) {
            Node::Num(l) => Some(l.get()),
            _ => None,
        }
    }

    /// A scalar literal.
    pub fn num(&mut self, value: f64) -> Id {
        self.add(Node::Num(Lit::new(value)))
    }

    /// A variable (must be registered in `vars`).
    pub fn var(&mut self, name: Symbol) -> Id {
        self.add(Node::Var(name))
    }

    /// `a + b` (same kinds), folding literals.
    pub fn sum2(&mut self, a: Id, b: Id) -> Id {
        match (self.lit(a), self.lit(b)) {
            (Some(x), Some(y)) => return self.num(x + y),
            (Some(0.0), _) => return b,
            (_, Some(0.0)) => return a,
            _ => {}
        }
        self.add(Node::Add([a, b]))
    }

    /// `a + b` where either may be absent (a structural zero).
    pub fn sum_opt(&mut self, a: Option<Id>, b: Option<Id>) -> Option<Id> {
        match (a, b) {
            (Some(a), Some(b)) => Some(self.sum2(a, b)),
            (a, None) => a,
            (None, b) => b,
        }
    }

    /// `a − b`.
    pub fn sub(&mut self, a: Id, b: Id) -> Id {
        let nb = self.neg(b);
        self.sum2(a, nb)
    }

    /// `−a`, folding double negation and literals.
    pub fn neg(&mut self, a: Id) -> Id {
        match self.node(a).clone() {
            Node::Num(l) => self.num(-l.get()),
            Node::Neg(x) => x,
            Node::Mul([s, x]) if self.lit(s).is_some() => {
                let c = self.num(-self.lit(s).unwrap_or(1.0));
                self.mul(c, x)
            }
            _ => self.add(Node::Neg(a)),
        }
    }

    /// `s · x` with `s` a scalar, folding literal factors.
    pub fn mul(&mut self, s: Id, x: Id) -> Id {
        debug_assert_eq!(self.kind(s), Kind::Scalar);
        if self.kind(x) == Kind::Scalar && self.lit(x).is_some() && self.lit(s).is_none() {
            return self.mul(x, s);
        }
        match (self.lit(s), self.lit(x)) {
            (Some(a), Some(b)) => return self.num(a * b),
            (Some(1.0), _) => return x,
            (Some(-1.0), _) => return self.neg(x),
            _ => {}
        }
        if let (Some(a), Node::Mul([t, y])) = (self.lit(s), self.node(x).clone()) {
            if let Some(b) = self.lit(t) {
                let c = self.num(a * b);
                return self.mul(c, y);
            }
        }
        if let Node::Neg(y) = self.node(x).clone() {
            let m = self.mul(s, y);
            return self.neg(m);
        }
        self.add(Node::Mul([s, x]))
    }

    /// `c · x` for a literal `c`.
    pub fn scale(&mut self, c: f64, x: Id) -> Id {
        let s = self.num(c);
        self.mul(s, x)
    }

    /// `x / s` with `s` a scalar.
    pub fn div(&mut self, x: Id, s: Id) -> Id {
        match (self.lit(x), self.lit(s)) {
            (Some(a), Some(b)) if b != 0.0 => return self.num(a / b),
            (_, Some(1.0)) => return x,
            _ => {}
        }
        self.add(Node::Div([x, s]))
    }

    /// `Aᵀ`, folding double transposes and symmetric forms.
    pub fn transpose(&mut self, a: Id) -> Id {
        match self.node(a).clone() {
            Node::Transpose(x) => x,
            Node::Eye(_) | Node::Diag(_) => a,
            // A Aᵀ and Aᵀ A are symmetric.
            Node::MatMul([l, r])
                if self.node(r) == &Node::Transpose(l) || self.node(l) == &Node::Transpose(r) =>
            {
                a
            }
            _ => self.add(Node::Transpose(a)),
        }
    }

    /// `A x`, with scalar factors and signs of `A` or `x` pulled in front and identities
    /// dropped.
    pub fn matvec(&mut self, a: Id, x: Id) -> Id {
        match (self.node(a).clone(), self.node(x).clone()) {
            (Node::Eye(_), _) => x,
            (Node::Neg(b), _) => {
                let p = self.matvec(b, x);
                self.neg(p)
            }
            (_, Node::Neg(y)) => {
                let p = self.matvec(a, y);
                self.neg(p)
            }
            (Node::Mul([s, b]), _) => {
                let p = self.matvec(b, x);
                self.mul(s, p)
            }
            (_, Node::Mul([s, y])) => {
                let p = self.matvec(a, y);
                self.mul(s, p)
            }
            _ => self.add(Node::MatVec([a, x])),
        }
    }

    /// `A B`, dropping identities and pulling scalar factors and signs in front.
    pub fn matmul(&mut self, a: Id, b: Id) -> Id {
        match (self.node(a).clone(), self.node(b).clone()) {
            (Node::Eye(_), _) => b,
            (_, Node::Eye(_)) => a,
            (Node::Neg(x), _) => {
                let p = self.matmul(x, b);
                self.neg(p)
            }
            (_, Node::Neg(y)) => {
                let p = self.matmul(a, y);
                self.neg(p)
            }
            (Node::Mul([s, x]), _) => {
                let p = self.matmul(x, b);
                self.mul(s, p)
            }
            (_, Node::Mul([s, y])) => {
                let p = self.matmul(a, y);
                self.mul(s, p)
            }
            _ => self.add(Node::MatMul([a, b])),
        }
    }

    /// Elementwise product (scalars multiply), with scalar factors and signs pulled out.
    pub fn cmul(&mut self, a: Id, b: Id) -> Id {
        if self.kind(a) == Kind::Scalar && self.kind(b) == Kind::Scalar {
            return self.mul(a, b);
        }
        if self.kind(a) == Kind::Scalar {
            return self.mul(a, b);
        }
        if self.kind(b) == Kind::Scalar {
            return self.mul(b, a);
        }
        for (x, y, swap) in [(a, b, false), (b, a, true)] {
            match self.node(y).clone() {
                Node::Neg(z) => {
                    let p = if swap {
                        self.cmul(z, x)
                    } else {
                        self.cmul(x, z)
                    };
                    return self.neg(p);
                }
                Node::Mul([s, z]) => {
                    let p = if swap {
                        self.cmul(z, x)
                    } else {
                        self.cmul(x, z)
                    };
                    return self.mul(s, p);
                }
                _ => {}
            }
        }
        self.add(Node::CMul([a, b]))
    }

    /// The diagonal of a square matrix, pushed through the forms derivatives produce
    /// (`diagonal(a bᵀ) = a ⊙ b`, `diagonal(diag(d)) = d`, scalings and signs).
    pub fn diagonal(&mut self, m: Id) -> Id {
        match self.node(m).clone() {
            Node::Diag(d) => d,
            Node::Outer([a, b]) => self.cmul(a, b),
            Node::Neg(x) => {
                let d = self.diagonal(x);
                self.neg(d)
            }
            Node::Mul([s, x]) => {
                let d = self.diagonal(x);
                self.mul(s, d)
            }
            Node::Add([a, b]) => {
                let (da, db) = (self.diagonal(a), self.diagonal(b));
                self.sum2(da, db)
            }
            Node::Transpose(x) => self.diagonal(x),
            _ => self.add(Node::Diagonal(m)),
        }
    }

    /// `1 − x` elementwise.
    pub fn one_minus(&mut self, x: Id) -> Id {
        let n = self.neg(x);
        if self.kind(x) == Kind::Scalar {
            let one = self.num(1.0);
            return self.sum2(one, n);
        }
        let one = self.num(1.0);
        self.add(Node::AddS([n, one]))
    }

    /// Sum of all entries; a scalar is its own sum.
    pub fn total(&mut self, x: Id) -> Id {
        if self.kind(x) == Kind::Scalar {
            x
        } else {
            self.add(Node::Sum(x))
        }
    }

    /// Inner product; `a·b` for scalars.
    pub fn inner(&mut self, a: Id, b: Id) -> Id {
        if self.kind(a) == Kind::Scalar {
            self.mul(a, b)
        } else {
            self.add(Node::Dot([a, b]))
        }
    }

    /// Copies the term rooted at `id` of `other` into this graph.
    pub fn import(&mut self, other: &Graph, id: Id, memo: &mut HashMap<Id, Id>) -> Id {
        if let Some(&m) = memo.get(&id) {
            return m;
        }
        let node = other
            .node(id)
            .clone()
            .map_children(|c| self.import(other, c, memo));
        let new = self.add(node);
        if let Some(name) = other.names.get(&id) {
            self.names.entry(new).or_insert_with(|| name.clone());
        }
        memo.insert(id, new);
        new
    }

    /// The term rooted at `id` as a standalone expression.
    pub fn extract(&self, id: Id) -> RecExpr<Node> {
        let mut map = HashMap::new();
        let mut expr = RecExpr::default();
        self.extract_into(id, &mut expr, &mut map);
        expr
    }

    fn extract_into(&self, id: Id, expr: &mut RecExpr<Node>, map: &mut HashMap<Id, Id>) -> Id {
        if let Some(&m) = map.get(&id) {
            return m;
        }
        let node = self
            .node(id)
            .clone()
            .map_children(|c| self.extract_into(c, expr, map));
        let new = expr.add(node);
        map.insert(id, new);
        new
    }

    /// Whether the term `id` mentions a variable satisfying `pred`, for every node.
    pub fn depends_on(&self, pred: impl Fn(&Role) -> bool) -> Vec<bool> {
        let mut dep = vec![false; self.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            dep[i] = match node {
                Node::Var(s) => self.vars.get(s).is_some_and(|v| pred(&v.role)),
                _ => node.children().iter().any(|c| dep[usize::from(*c)]),
            };
        }
        dep
    }

    /// Nodes reachable from `roots`, as a mask.
    pub fn reachable(&self, roots: &[Id]) -> Vec<bool> {
        let mut seen = vec![false; self.len()];
        let mut stack: Vec<Id> = roots.to_vec();
        while let Some(id) = stack.pop() {
            let i = usize::from(id);
            if !seen[i] {
                seen[i] = true;
                stack.extend(self.node(id).children().iter().copied());
            }
        }
        seen
    }
}
