//! What every part of the generated module reads: the staging plan, the names of terms,
//! and how arguments are spelled in each kind of function.

use crate::emit::pretty::Printer;
use crate::emit::{Item, Scope};
use crate::front::signature::Signature;
use crate::ir::graph::Graph;
use crate::ir::{display_name, Kind, Node};
use crate::rule::Rule;
use crate::stage;
use egg::Id;
use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;
use std::collections::{HashMap, HashSet};

use super::kind_ty;

/// The module's model, built once and read by every part.
pub struct Ctx<'a> {
    pub rule: &'a Rule,
    pub sig: &'a Signature,
    pub g: Graph,
    /// Identifiers of computed terms (the printer's names, shared with DERIVATIVES).
    pub names: HashMap<Id, Ident>,
    /// Runtime types of opaque primitives, by name.
    pub prims: HashMap<String, TokenStream>,
    /// Terms and factorizations stored in `Staged`.
    pub fields: Vec<Id>,
    /// The fields computed on first use (in `OnceLock`s): those only the full system's
    /// products read, which the reduced backward under `Auto` never calls.
    pub lazy: Vec<Id>,
    pub factors: Vec<Id>,
    pub arg_names: Vec<Ident>,
    pub block_state: bool,
    /// The `Args` parameter of the `Generated` methods.
    pub args_id: Ident,
}

const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
    "self", "Self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where",
    "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];

/// Identifiers for computed terms: the printer's names where valid Rust, `t<id>` otherwise.
fn emission_names(
    printer_names: &HashMap<Id, String>,
    reserved: &HashSet<String>,
) -> HashMap<Id, Ident> {
    let mut taken: HashSet<String> = reserved.clone();
    let mut out = HashMap::new();
    let mut ids: Vec<&Id> = printer_names.keys().collect();
    ids.sort();
    for id in ids {
        let raw = printer_names[id].to_lowercase();
        let valid = raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && raw
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && !KEYWORDS.contains(&raw.as_str());
        let mut name = if valid {
            raw
        } else {
            format!("t{}", usize::from(*id))
        };
        // A user name `t12` must not be mistaken for the anonymous name of term 12.
        if name.starts_with('t')
            && name[1..].chars().all(|c| c.is_ascii_digit())
            && name != format!("t{}", usize::from(*id))
        {
            name = format!("{name}_");
        }
        while !taken.insert(name.clone()) {
            name.push('_');
        }
        out.insert(*id, Ident::new(&name, Span::call_site()));
    }
    out
}

/// Whether computing `item` can fail (so it must be staged in a fallible scope).
fn fallible(g: &Graph, item: &Item) -> bool {
    match item {
        Item::Factor(_) => true,
        Item::Node(id) => {
            matches!(
                g.node(*id),
                Node::ProjSimplex(_)
                    | Node::ProjCappedSimplex(_)
                    | Node::ProjL2Ball(_)
                    | Node::Call(..)
                    | Node::Solve(_)
                    | Node::SolveT(_)
            ) || matches!(g.node(*id), Node::Get([t, _]) if matches!(g.node(*t), Node::Call(..)))
        }
    }
}

impl<'a> Ctx<'a> {
    /// Plans staging and names every term of `rule`.
    pub fn new(rule: &'a Rule) -> Ctx<'a> {
        let g = rule.graph.clone();
        let sig = &rule.sig;
        let per_call = Self::per_call_roots(rule);
        let mut plan = stage::plan(&g, &per_call);
        if let Some(r) = &rule.reduction {
            plan.fields.push(r.support);
        }
        // Opaque calls are stored as their linearizations.
        plan.fields.extend(plan.calls.clone());
        plan.fields.sort();
        plan.fields.dedup();

        let jac_roots = Self::jacobian_roots(rule);
        let mut all_roots = per_call;
        all_roots.extend(&rule.outputs);
        all_roots.extend(&jac_roots);
        let printer = Printer::new(&g, &all_roots);
        let mut reserved: HashSet<String> = sig.args.iter().map(|a| a.name.to_string()).collect();
        for v in g.vars.keys() {
            reserved.insert(display_name(*v));
        }
        // Identifiers the generated bodies use besides computed terms.
        for r in [
            "v", "u", "tangent", "n", "jac", "blk", "e", "g", "i", "p", "k", "phi", "state",
            "packed", "lens", "start", "s", "args", "staged",
        ] {
            reserved.insert(r.to_string());
        }
        // Lazy fields are read through methods of their own name: none may shadow a
        // trait method the generated bodies call.
        for r in [
            "state_dim",
            "vjp_state",
            "jvp_state",
            "vjp_params",
            "jvp_params",
            "state_jacobian",
            "factored",
            "support",
            "kernel",
            "inner_vjp_state",
            "inner_vjp_params",
            "head_vjp_params",
            "head_has_params",
            "reduced_matrix",
            "reduced_matrix_transposed",
            "reduced_sparse",
            "cheap_products",
            "clone",
        ] {
            reserved.insert(r.to_string());
        }
        let mut names = emission_names(printer.names(), &reserved);
        // Seeds are parameters (or blocks of one) named as in DERIVATIVES.
        for seed in rule
            .seeds
            .cotangent
            .iter()
            .chain(&rule.seeds.tangent)
            .chain(&rule.seeds.param_tangent)
            .chain(rule.reduction.as_ref().map(|r| &r.seed))
        {
            names.insert(*seed, Ident::new(&seed_name(&g, *seed), Span::call_site()));
        }

        let mut prims = HashMap::new();
        for o in [
            crate::ir::builtins::Opaque::ProjPolyhedron,
            crate::ir::builtins::Opaque::QpSolve,
        ] {
            prims.insert(o.builtin().name().to_string(), o.runtime_type());
        }
        for pd in &sig.primitives {
            let ty = &pd.ty;
            prims.insert(pd.name.to_string(), quote!(#ty));
        }

        let mut ctx = Ctx {
            rule,
            sig,
            names,
            prims,
            fields: plan.fields,
            lazy: Vec::new(),
            factors: plan.factors,
            arg_names: sig.args.iter().map(|a| a.name.clone()).collect(),
            block_state: sig.block_state,
            args_id: fresh(sig, "args"),
            g,
        };
        ctx.stage_fallible_jacobian_terms(&jac_roots);
        ctx.lazy = ctx.lazy_fields();
        ctx
    }

    /// Fields nothing on the reduced backward's path reads (its support, matrix and
    /// parameter products, and `Mᵀ w` when it is matrix-free or has a head term), whose
    /// computation cannot fail: arrays, not opaque linearizations. Empty without a
    /// reduction, where every product is on the path.
    fn lazy_fields(&self) -> Vec<Id> {
        let Some(r) = &self.rule.reduction else {
            return Vec::new();
        };
        let mut hot = vec![r.mask, r.support];
        hot.extend(r.inner_params.iter().flatten());
        if let Some(h) = &r.head_params {
            hot.extend(h.iter().flatten());
        }
        hot.extend(r.matrix);
        if r.matrix.is_none() || r.head_params.is_some() {
            hot.extend(r.inner_state);
        }
        let reached = self.g.reachable(&hot);
        let candidates: Vec<Id> = self
            .fields
            .iter()
            .copied()
            .filter(|&f| {
                !reached[usize::from(f)]
                    && self.g.kind(f).is_array()
                    && !matches!(self.g.node(f), Node::Call(..))
            })
            .collect();
        let mut lazy: Vec<Id> = candidates
            .into_iter()
            .filter(|&f| {
                let sc = self.method_scope().without_field(f);
                sc.schedule(&[f]).iter().all(|it| !fallible(&self.g, it))
            })
            .collect();
        // What a field staged eagerly needs is computed by `stage` anyway.
        loop {
            let eager: Vec<Id> = self
                .fields
                .iter()
                .copied()
                .filter(|f| !lazy.contains(f))
                .collect();
            let needed = self.g.reachable(&eager);
            let before = lazy.len();
            lazy.retain(|f| !needed[usize::from(*f)]);
            if lazy.len() == before {
                return lazy;
            }
        }
    }

    /// Roots of every product method (the seed-dependent terms).
    fn per_call_roots(rule: &Rule) -> Vec<Id> {
        let mut per_call: Vec<Id> = rule.product_roots().collect();
        if let Some(r) = &rule.reduction {
            per_call.extend(r.inner_state);
            per_call.extend(r.inner_params.iter().flatten());
            if let Some(h) = &r.head_params {
                per_call.extend(h.iter().flatten());
            }
        }
        per_call
    }

    /// Roots of the structured Jacobians and the dense reduced matrix.
    pub fn jacobian_roots(rule: &Rule) -> Vec<Id> {
        let mut roots: Vec<Id> = Vec::new();
        if let Some(rows) = &rule.jac_state {
            roots.extend(rows.iter().flatten().flatten());
        }
        for p in rule.jac_params.iter().flatten() {
            roots.extend(p.iter().flatten());
        }
        if let Some(m) = rule.reduction.as_ref().and_then(|r| r.matrix) {
            roots.push(m);
        }
        roots
    }

    /// Fallible terms the Jacobians need become fields too (the infallible methods compute
    /// the rest).
    fn stage_fallible_jacobian_terms(&mut self, jac_roots: &[Id]) {
        loop {
            let items = self.method_scope().schedule(jac_roots);
            let extra: Vec<Item> = items.into_iter().filter(|i| fallible(&self.g, i)).collect();
            if extra.is_empty() {
                return;
            }
            for it in extra {
                match it {
                    Item::Node(id) => self.fields.push(id),
                    Item::Factor(id) => self.factors.push(id),
                }
            }
            self.fields.sort();
            self.fields.dedup();
            self.factors.sort();
            self.factors.dedup();
        }
    }

    pub fn nblocks(&self) -> usize {
        self.sig.blocks.len()
    }

    /// Whether state block `b` is a matrix.
    pub fn matrix_block(&self, b: usize) -> bool {
        self.sig.args[self.sig.blocks[b]].kind == Kind::Matrix
    }

    pub fn any_matrix_block(&self) -> bool {
        (0..self.nblocks()).any(|b| self.matrix_block(b))
    }

    /// Argument `i` read from the `Args` at `base` (`args`, `self.args`): scalars by
    /// value, arrays by reference.
    pub fn field_access(&self, base: &TokenStream, i: usize) -> TokenStream {
        let a = &self.sig.args[i];
        let n = &a.name;
        match (a.kind == Kind::Scalar, a.by_ref) {
            (true, false) | (false, true) => quote!(#base.#n),
            (true, true) => quote!((*#base.#n)),
            (false, false) => quote!(&#base.#n),
        }
    }

    /// Argument `i` in a `Generated` method.
    pub fn args_access(&self, i: usize) -> TokenStream {
        let args = &self.args_id;
        self.field_access(&quote!(#args), i)
    }

    /// Argument `i` read from `Staged`.
    pub fn self_access(&self, i: usize) -> TokenStream {
        self.field_access(&quote!(self.args), i)
    }

    /// Every argument's term with its spelling `f(i)`.
    pub fn args_map(&self, f: impl Fn(usize) -> TokenStream) -> HashMap<Id, TokenStream> {
        (0..self.sig.args.len())
            .map(|i| (self.rule.args[i], f(i)))
            .collect()
    }

    /// A scope over `Staged`'s fields (the product methods).
    pub fn method_scope(&self) -> Scope<'_> {
        self.staged_scope(&Ident::new("self", Span::call_site()))
    }

    /// A scope over the fields of the `Staged` that `recv` names (`self` in its methods).
    pub fn staged_scope(&self, recv: &Ident) -> Scope<'_> {
        let args = quote!(#recv.args);
        Scope::new(
            &self.g,
            &self.names,
            &self.prims,
            self.args_map(|i| self.field_access(&args, i)),
            false,
        )
        .with_fields(&self.fields, &self.factors)
        .with_lazy(&self.lazy)
        .with_receiver(recv)
    }

    /// A fallible scope over the arguments spelled `f(i)` (staging, the step).
    pub fn arg_scope(&self, f: impl Fn(usize) -> TokenStream) -> Scope<'_> {
        Scope::new(&self.g, &self.names, &self.prims, self.args_map(f), true)
    }

    /// Argument `i`'s type as the user declared it, `'a` on a reference.
    pub fn user_ty(&self, i: usize) -> TokenStream {
        let t = kind_ty(self.sig.args[i].kind);
        if self.sig.args[i].by_ref {
            quote!(&'a #t)
        } else {
            t
        }
    }

    /// An identifier `base` no argument has.
    pub fn fresh(&self, base: &str) -> Ident {
        fresh(self.sig, base)
    }

    /// The Rust identifier of seed `id`.
    pub fn seed_ident(&self, id: Id) -> Ident {
        Ident::new(&seed_name(&self.g, id), Span::call_site())
    }
}

/// The name of a seed variable as DERIVATIVES spells it.
fn seed_name(g: &Graph, id: Id) -> String {
    match g.node(id) {
        Node::Var(s) => display_name(*s),
        _ => format!("t{}", usize::from(id)),
    }
}

/// `base`, with `_` appended until no argument has that name.
fn fresh(sig: &Signature, base: &str) -> Ident {
    let mut s = base.to_string();
    while sig.args.iter().any(|a| a.name == s) {
        s.push('_');
    }
    Ident::new(&s, Span::call_site())
}
