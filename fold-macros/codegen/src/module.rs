//! The generated module beside the user's function: `Grads`, `Linearization`,
//! `linearize`, `jacobians`, `backward`, `solve`, `pack`/`unpack`, `Params`/`Consts`/`Rule` (emit_rule.rs), `DERIVATIVES`,
//! `SOURCE` and `STATS` (DESIGN §3).

use crate::emit::{ident_of, Item, Scope};
use crate::graph::Graph;
use crate::ir::{display_name, Kind, Node};
use crate::pretty::Printer;
use crate::rule::Rule;
use crate::shape::Accessor;
use crate::stage::{self, Plan};
use egg::Id;
use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote};
use std::collections::{HashMap, HashSet};

/// Structured Jacobian terms: per (output block, state block), and per parameter.
struct JacobianTerms {
    state: Option<Vec<Vec<Option<Id>>>>,
    params: Vec<Option<Vec<Option<Id>>>>,
}

/// What `module` needs besides the rule.
pub struct ModuleInput<'a> {
    /// The analyzed (and simplified) rule.
    pub rule: &'a Rule,
    /// `DERIVATIVES` text.
    pub derivatives: String,
}

fn vec_ty() -> TokenStream {
    quote!(DVector<f64>)
}

fn mat_ty() -> TokenStream {
    quote!(DMatrix<f64>)
}

fn kind_ty(kind: Kind) -> TokenStream {
    match kind {
        Kind::Scalar => quote!(f64),
        Kind::Vector => vec_ty(),
        Kind::Matrix => mat_ty(),
        Kind::Sparse => quote!(CsrMatrix<f64>),
        Kind::Index => quote!(Vec<usize>),
        _ => quote!(()),
    }
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
    g: &Graph,
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
        if name.starts_with('t')
            && name[1..].chars().all(|c| c.is_ascii_digit())
            && valid_number_clash(&name, *id)
        {
            name = format!("{name}_");
        }
        while !taken.insert(name.clone()) {
            name.push('_');
        }
        out.insert(*id, Ident::new(&name, Span::call_site()));
    }
    let _ = g;
    out
}

/// A user name `t12` must not be mistaken for the anonymous name of term 12.
fn valid_number_clash(name: &str, id: Id) -> bool {
    name != format!("t{}", usize::from(id))
}

/// Whether computing `id` can fail (so it must be staged in a fallible scope).
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

/// The generated module for `rule`.
pub fn module(input: &ModuleInput) -> syn::Result<Module> {
    let rule = input.rule;
    let g = rule.graph.clone();
    let sig = &rule.sig;
    let fn_name = &sig.name;
    let vis = &sig.vis;
    let nblocks = sig.blocks.len();
    let block_state = sig.block_state;

    for &p in &sig.params {
        if sig.args[p].name == "state" {
            return Err(syn::Error::new(
                sig.args[p].name.span(),
                "a parameter named `state` would clash with `Jacobians::state`; please rename it",
            ));
        }
    }

    let jac = JacobianTerms {
        state: rule.jac_state.clone(),
        params: rule.jac_params.clone(),
    };

    // Per-call roots and staging.
    let mut per_call: Vec<Id> = rule.product_roots().collect();
    let red = rule.reduction.clone();
    if let Some(r) = &red {
        per_call.extend(r.inner_state);
        per_call.extend(r.inner_params.iter().flatten());
        if let Some(h) = &r.head_params {
            per_call.extend(h.iter().flatten());
        }
    }
    let mut plan = stage::plan(&g, &per_call);
    if let Some(r) = &red {
        plan.fields.push(r.support);
    }
    // Opaque calls are stored as their linearizations.
    plan.fields.extend(plan.calls.clone());
    plan.fields.sort();
    plan.fields.dedup();

    // Names: the printer's, shared with DERIVATIVES.
    let mut all_roots = per_call.clone();
    all_roots.extend(&rule.outputs);
    let mut jac_roots: Vec<Id> = Vec::new();
    if let Some(rows) = &jac.state {
        jac_roots.extend(rows.iter().flatten().flatten());
    }
    for p in jac.params.iter().flatten() {
        jac_roots.extend(p.iter().flatten());
    }
    if let Some(m) = red.as_ref().and_then(|r| r.matrix) {
        jac_roots.push(m);
    }
    all_roots.extend(&jac_roots);
    let printer = Printer::new(&g, &all_roots);
    let mut reserved: HashSet<String> = sig.args.iter().map(|a| a.name.to_string()).collect();
    for v in g.vars.keys() {
        reserved.insert(display_name(*v));
    }
    // Identifiers the generated bodies use besides computed terms.
    for r in [
        "v", "u", "tangent", "n", "jac", "blk", "e", "g", "i", "p", "phi", "state", "packed",
        "lens", "start", "s",
    ] {
        reserved.insert(r.to_string());
    }
    let mut names = emission_names(&g, printer.names(), &reserved);
    // Seeds are parameters (or blocks of one) named as in DERIVATIVES.
    for seed in rule
        .seeds
        .cotangent
        .iter()
        .chain(&rule.seeds.tangent)
        .chain(&rule.seeds.param_tangent)
        .chain(red.as_ref().map(|r| &r.seed))
    {
        names.insert(
            *seed,
            Ident::new(&display_name_of(&g, *seed), Span::call_site()),
        );
    }

    let prims: HashMap<String, TokenStream> = {
        let mut m = HashMap::new();
        for o in [
            crate::builtins::Opaque::ProjPolyhedron,
            crate::builtins::Opaque::QpSolve,
        ] {
            m.insert(o.builtin().name().to_string(), o.runtime_type());
        }
        for pd in &sig.primitives {
            let ty = &pd.ty;
            m.insert(pd.name.to_string(), quote!(#ty));
        }
        m
    };

    // Argument access in each kind of scope.
    let arg_ident = |i: usize| sig.args[i].name.clone();
    let free_access = |i: usize| -> TokenStream {
        let a = &sig.args[i];
        let n = &a.name;
        match (a.kind, a.by_ref) {
            (Kind::Scalar, false) => quote!(#n),
            (Kind::Scalar, true) => quote!((*#n)),
            (_, true) => quote!(#n),
            (_, false) => quote!(&#n),
        }
    };
    let internal_access = |i: usize| -> TokenStream {
        let n = arg_ident(i);
        quote!(#n)
    };
    let self_access = |i: usize| -> TokenStream {
        let a = &sig.args[i];
        let n = &a.name;
        match (a.kind, a.by_ref) {
            (Kind::Scalar, _) => quote!(self.#n),
            (_, true) => quote!(self.#n),
            (_, false) => quote!(&self.#n),
        }
    };
    let args_map = |f: &dyn Fn(usize) -> TokenStream| -> HashMap<Id, TokenStream> {
        (0..sig.args.len()).map(|i| (rule.args[i], f(i))).collect()
    };

    // Fallible terms the Jacobians need become fields too.
    loop {
        let scope = Scope::new(&g, &names, &prims, args_map(&self_access), false)
            .with_fields(&plan.fields, &plan.factors);
        let items = scope.schedule(&jac_roots);
        let extra: Vec<Item> = items.into_iter().filter(|i| fallible(&g, i)).collect();
        if extra.is_empty() {
            break;
        }
        for it in extra {
            match it {
                Item::Node(id) => plan.fields.push(id),
                Item::Factor(id) => plan.factors.push(id),
            }
        }
        plan.fields.sort();
        plan.fields.dedup();
        plan.factors.sort();
        plan.factors.dedup();
    }
    let Plan {
        fields,
        factors,
        calls: _,
    } = plan.clone();

    // Types of arguments as the user declared them (with a lifetime for references).
    let user_ty = |i: usize, lt: bool| -> TokenStream {
        let a = &sig.args[i];
        let t = kind_ty(a.kind);
        match (a.by_ref, lt) {
            (true, true) => quote!(&'a #t),
            (true, false) => quote!(&#t),
            (false, _) => t,
        }
    };
    let internal_ty = |i: usize| -> TokenStream {
        let a = &sig.args[i];
        let t = kind_ty(a.kind);
        if a.kind == Kind::Scalar {
            t
        } else {
            quote!(&#t)
        }
    };
    let arg_names: Vec<Ident> = (0..sig.args.len()).map(arg_ident).collect();
    let user_params: Vec<TokenStream> = (0..sig.args.len())
        .map(|i| {
            let n = &arg_names[i];
            let t = user_ty(i, true);
            quote!(#n: #t)
        })
        .collect();
    let user_params_nolt: Vec<TokenStream> = (0..sig.args.len())
        .map(|i| {
            let n = &arg_names[i];
            let t = user_ty(i, false);
            quote!(#n: #t)
        })
        .collect();
    let internal_params: Vec<TokenStream> = (0..sig.args.len())
        .map(|i| {
            let n = &arg_names[i];
            let t = internal_ty(i);
            quote!(#n: #t)
        })
        .collect();
    // Converting user-typed arguments to the internal (reference) convention.
    let to_internal: Vec<TokenStream> = (0..sig.args.len()).map(free_access).collect();
    let fresh = |base: &str| -> Ident {
        let mut s = base.to_string();
        while sig.args.iter().any(|a| a.name == s) {
            s.push('_');
        }
        Ident::new(&s, Span::call_site())
    };
    let grad_id = fresh("grad");
    let opts_id = fresh("opts");

    // --- check_dims / check_finite ---------------------------------------------------
    let dim_checks: Vec<TokenStream> = rule
        .dim_checks
        .iter()
        .map(|(a, b)| {
            let acc = |s: &crate::shape::Source| {
                let n = &arg_names[s.arg];
                match s.accessor {
                    Accessor::Len => (quote!(#n.len()), format!("`{n}` length")),
                    Accessor::Rows => (quote!(#n.nrows()), format!("`{n}` rows")),
                    Accessor::Cols => (quote!(#n.ncols()), format!("`{n}` columns")),
                }
            };
            let ((ea, da), (eb, db)) = (acc(a), acc(b));
            let what = format!("{db} (must equal {da})");
            quote!(check::same_dim(#what, #ea, #eb)?;)
        })
        .collect();
    let finite_check = |i: usize| -> TokenStream {
        let n = &arg_names[i];
        let what = n.to_string();
        match sig.args[i].kind {
            Kind::Scalar => quote!(check::finite_scalar(#n, #what)?;),
            Kind::Vector => quote!(check::finite_vector(#n, #what)?;),
            Kind::Matrix => quote!(check::finite_matrix(#n, #what)?;),
            _ => quote!(check::finite(#n.values(), #what)?;),
        }
    };

    // --- stage -----------------------------------------------------------------------
    let stage_scope = Scope::new(&g, &names, &prims, args_map(&free_access), true);
    let stage_roots: Vec<Item> = {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        for f in &fields {
            for it in stage_scope.schedule(&[*f]) {
                if seen.insert(it) {
                    order.push(it);
                }
            }
        }
        for m in &factors {
            let items = stage_scope.schedule(&[*m]);
            for it in items {
                if seen.insert(it) {
                    order.push(it);
                }
            }
            let it = Item::Factor(*m);
            if seen.insert(it) {
                order.push(it);
            }
        }
        order
    };
    // A dense matrix argument whose first use in staging is a full product is checked for
    // non-finite entries by that product (`mv_checked`) instead of by a separate pass.
    let deferred: HashMap<Id, String> = {
        let mut first_use: HashMap<Id, bool> = HashMap::new();
        for it in &stage_roots {
            let Item::Node(id) = it else { continue };
            let product_base = match g.node(*id) {
                Node::MatVec([m, _]) => Some(stage::peel(&g, *m, &|_| false).base),
                _ => None,
            };
            for op in stage_scope.operands(*id) {
                let Item::Node(c) = op else { continue };
                if let Some(i) = rule.args.iter().position(|a| *a == c) {
                    if sig.args[i].kind == Kind::Matrix {
                        first_use.entry(c).or_insert(product_base == Some(c));
                    }
                }
            }
        }
        first_use
            .into_iter()
            .filter(|(_, by_product)| *by_product)
            .map(|(c, _)| {
                let i = rule.args.iter().position(|a| *a == c).unwrap_or(0);
                (c, sig.args[i].name.to_string())
            })
            .collect()
    };
    let deferred_args: HashSet<usize> = (0..sig.args.len())
        .filter(|i| deferred.contains_key(&rule.args[*i]))
        .collect();
    let mut stage_scope = stage_scope.with_deferred_checks(deferred);
    let eager_checks: Vec<TokenStream> = (0..sig.args.len())
        .filter(|i| !deferred_args.contains(i))
        .map(finite_check)
        .collect();
    let deferred_checks: Vec<TokenStream> = (0..sig.args.len())
        .filter(|i| deferred_args.contains(i))
        .map(finite_check)
        .collect();
    // Matrices that staging checks inside their first product are checked here only when
    // the caller does not stage (`solve`): one pass over them instead of two.
    let staged_id = fresh("staged");
    let (check_finite_fn, solve_check, backward_check) = if deferred_checks.is_empty() {
        (
            quote! {
                fn check_finite(#(#internal_params),*) -> Result<(), FoldError> {
                    #(#eager_checks)*
                    Ok(())
                }
            },
            quote!(check_finite(#(#to_internal),*)?;),
            quote!(check_finite(#(#to_internal),*)?;),
        )
    } else {
        (
            quote! {
                /// With `staged`, the matrices staging checks in its first product with them are
                /// left to it.
                fn check_finite(#(#internal_params,)* #staged_id: bool) -> Result<(), FoldError> {
                    #(#eager_checks)*
                    if !#staged_id {
                        #(#deferred_checks)*
                    }
                    Ok(())
                }
            },
            quote!(check_finite(#(#to_internal,)* false)?;),
            quote!(check_finite(#(#to_internal,)* true)?;),
        )
    };
    let stage_body = stage_scope.compute_returning(&stage_roots, &fields);
    let field_idents: Vec<Ident> = fields.iter().map(|f| ident_of(&names, *f)).collect();
    let field_tys: Vec<TokenStream> = fields
        .iter()
        .map(|f| match g.node(*f) {
            Node::Call(name, _) => {
                let ty = prims
                    .get(name.as_str())
                    .cloned()
                    .unwrap_or_else(|| quote!(()));
                quote!(<#ty as ::fold_runtime::Primitive>::Linearization)
            }
            _ => kind_ty(g.kind(*f)),
        })
        .collect();
    let factor_idents: Vec<Ident> = factors
        .iter()
        .map(|f| crate::emit::factor_ident(&names, *f))
        .collect();
    let arg_field_tys: Vec<TokenStream> = (0..sig.args.len())
        .map(|i| {
            let a = &sig.args[i];
            if a.kind == Kind::Scalar {
                quote!(f64)
            } else {
                user_ty(i, true)
            }
        })
        .collect();
    let arg_field_inits: Vec<TokenStream> = (0..sig.args.len())
        .map(|i| {
            let a = &sig.args[i];
            let n = &a.name;
            if a.kind == Kind::Scalar && a.by_ref {
                quote!(#n: *#n)
            } else {
                quote!(#n)
            }
        })
        .collect();
    let block_lens: Vec<TokenStream> = sig
        .blocks
        .iter()
        .map(|&b| {
            let n = &arg_names[b];
            quote!(#n.len())
        })
        .collect();
    let internal_args_in_free: Vec<TokenStream> = to_internal.clone();

    // --- per-call methods ---------------------------------------------------------------
    let method_scope = || {
        Scope::new(&g, &names, &prims, args_map(&self_access), false).with_fields(&fields, &factors)
    };
    let owned = |scope: &Scope, id: Id| -> TokenStream { scope.owned(id) };
    // Seeds of block `b` from a concatenated vector parameter.
    // A matrix state block's seed: the flat (co)tangent reshaped to the block's shape.
    let matrix_block = |b: usize| sig.args[sig.blocks[b]].kind == Kind::Matrix;
    let any_matrix_block = (0..nblocks).any(matrix_block);
    let block_shape = |b: usize| -> (TokenStream, TokenStream) {
        let a = self_access(sig.blocks[b]);
        (quote!((#a).nrows()), quote!((#a).ncols()))
    };
    let bind_blocks = |scope: &mut Scope, seeds: &[Id], param: &Ident| -> TokenStream {
        if !block_state {
            if matrix_block(0) {
                let (r, c) = block_shape(0);
                scope.bind_owned(seeds[0]);
                return quote!(let #param = kernels::block_matrix(#param, 0, #r, #c););
            }
            // The parameter itself is the seed.
            scope.bind_ref(seeds[0]);
            return TokenStream::new();
        }
        let mut out = TokenStream::new();
        let mut off = quote!(0);
        for (b, &sd) in seeds.iter().enumerate() {
            let s = Ident::new(&display_name_of(&g, sd), Span::call_site());
            if matrix_block(b) {
                let (r, c) = block_shape(b);
                out.extend(quote!(let #s = kernels::block_matrix(#param, #off, #r, #c);));
            } else {
                out.extend(quote!(let #s = kernels::block(#param, #off, self.blocks[#b]);));
            }
            off = quote!(#off + self.blocks[#b]);
            scope.bind_owned(sd);
        }
        out
    };
    let pack_blocks = |scope: &Scope, roots: &[Option<Id>]| -> TokenStream {
        let parts: Vec<TokenStream> = roots
            .iter()
            .enumerate()
            .map(|(b, r)| match r {
                Some(id) => {
                    let a = scope.access(*id);
                    quote!(#a)
                }
                None => quote!(&DVector::zeros(self.blocks[#b])),
            })
            .collect();
        if block_state && any_matrix_block {
            quote!(kernels::pack_entries(&[#(kernels::entries(#parts)),*]))
        } else if block_state {
            quote!(kernels::pack(&[#(#parts),*]))
        } else {
            match roots[0] {
                Some(id) if matrix_block(0) => {
                    let o = owned(scope, id);
                    quote!(kernels::flatten(#o))
                }
                Some(id) => owned(scope, id),
                None => quote!(DVector::zeros(self.state_dim())),
            }
        }
    };
    let seed_param = |block_name: &str, seed: Id| {
        let name = if block_state {
            block_name.to_string()
        } else {
            display_name_of(&g, seed)
        };
        Ident::new(&name, Span::call_site())
    };
    let v_param = seed_param("v", rule.seeds.cotangent[0]);
    let u_param = seed_param("u", rule.seeds.tangent[0]);

    // The body computing per-block roots and returning them packed into one vector.
    let packed_body = |sc: &mut Scope, roots: &[Option<Id>]| -> TokenStream {
        let ids: Vec<Id> = roots.iter().flatten().copied().collect();
        let items = sc.schedule(&ids);
        if let (false, [Some(id)]) = (block_state || matrix_block(0), roots) {
            let (body, value) = sc.compute_value(&items, *id);
            return quote!(#body #value);
        }
        let body = sc.compute_returning(&items, &ids);
        let out = pack_blocks(sc, roots);
        quote!(#body #out)
    };
    let vjp_state_body = {
        let mut sc = method_scope();
        let bind = bind_blocks(&mut sc, &rule.seeds.cotangent, &v_param);
        let body = packed_body(&mut sc, &rule.vjp_state);
        quote!(#bind #body)
    };
    let jvp_state_body = {
        let mut sc = method_scope();
        let bind = bind_blocks(&mut sc, &rule.seeds.tangent, &u_param);
        let body = packed_body(&mut sc, &rule.jvp_state);
        quote!(#bind #body)
    };
    let param_idents: Vec<Ident> = sig.params.iter().map(|&p| arg_names[p].clone()).collect();
    let param_tys: Vec<TokenStream> = sig
        .params
        .iter()
        .map(|&p| kind_ty(sig.args[p].kind))
        .collect();
    // A `Grads` value from per-parameter roots computed in `sc` (zeros where absent).
    let grads_of = |sc: &Scope, roots: &[Option<Id>]| -> TokenStream {
        let inits: Vec<TokenStream> = sig
            .params
            .iter()
            .enumerate()
            .map(|(k, &p)| {
                let n = &arg_names[p];
                match roots[k] {
                    Some(id) => {
                        let o = owned(sc, id);
                        quote!(#n: #o)
                    }
                    None => {
                        let a = self_access(p);
                        if sig.args[p].kind == Kind::Scalar {
                            quote!(#n: 0.0)
                        } else {
                            quote!(#n: Cotangent::zeros_like(#a))
                        }
                    }
                }
            })
            .collect();
        quote!(Grads { #(#inits),* })
    };
    let vjp_params_body = {
        let mut sc = method_scope();
        let bind = bind_blocks(&mut sc, &rule.seeds.cotangent, &v_param);
        let roots: Vec<Id> = rule.vjp_params.iter().flatten().copied().collect();
        let items = sc.schedule(&roots);
        let body = sc.compute_returning(&items, &roots);
        let grads = grads_of(&sc, &rule.vjp_params);
        quote!(#bind #body #grads)
    };
    let jvp_params_body = {
        let mut sc = method_scope();
        let mut bind = TokenStream::new();
        for (k, &p) in sig.params.iter().enumerate() {
            let sd = rule.seeds.param_tangent[k];
            let s = Ident::new(&display_name_of(&g, sd), Span::call_site());
            let n = &arg_names[p];
            if sig.args[p].kind == Kind::Scalar {
                bind.extend(quote!(let #s = tangent.#n;));
                sc.bind_owned(sd);
            } else {
                bind.extend(quote!(let #s = &tangent.#n;));
                sc.bind_ref(sd);
            }
        }
        let body = packed_body(&mut sc, &rule.jvp_params);
        quote!(#bind #body)
    };

    // --- structured Jacobians ---------------------------------------------------------
    // Statements and the value of a Jacobian assembled from its blocks.
    let jac_method = |terms: &[Vec<Option<Id>>], cols: TokenStream| -> (TokenStream, TokenStream) {
        // terms[o][k]: block of output o w.r.t. column group k (`cols`: the groups' widths).
        let mut sc = method_scope();
        let roots: Vec<Id> = terms.iter().flatten().flatten().copied().collect();
        let items = sc.schedule(&roots);
        // One block that is a matrix already (or a single column): it is the Jacobian.
        if let [row] = terms {
            if let [Some(id)] = row.as_slice() {
                match g.kind(*id) {
                    Kind::Matrix => return sc.compute_value(&items, *id),
                    Kind::Vector => {
                        let (body, value) = sc.compute_value(&items, *id);
                        return (body, quote!(kernels::column(#value)));
                    }
                    _ => {}
                }
            }
        }
        let body = sc.compute_returning(&items, &roots);
        let mut blocks = Vec::new();
        for (o, row) in terms.iter().enumerate() {
            for (k, t) in row.iter().enumerate() {
                let Some(id) = t else { continue };
                let v = owned(&sc, *id);
                let m = match g.kind(*id) {
                    Kind::Vector => quote!(kernels::column(#v)),
                    Kind::Scalar => quote!(DMatrix::from_element(1, 1, #v)),
                    _ => v,
                };
                let (o, k) = (Literal::usize_unsuffixed(o), Literal::usize_unsuffixed(k));
                blocks.push(quote!((#o, #k, #m)));
            }
        }
        let rows = if block_state {
            quote!(&self.blocks)
        } else {
            quote!(&[self.state_dim()])
        };
        (
            body,
            quote!(kernels::from_blocks(#rows, #cols, ::std::vec![#(#blocks),*])),
        )
    };
    let state_jacobian_method = match &jac.state {
        Some(terms) => {
            let cols = if block_state {
                quote!(&self.blocks)
            } else {
                quote!(&[self.state_dim()])
            };
            let (body, value) = jac_method(terms, cols);
            quote!(fn state_jacobian(&self) -> Option<DMatrix<f64>> { #body Some(#value) })
        }
        None => TokenStream::new(),
    };
    let param_jacobian_fields: Vec<TokenStream> = sig
        .params
        .iter()
        .enumerate()
        .map(|(k, &p)| {
            let n = &arg_names[p];
            let a = self_access(p);
            let width = match sig.args[p].kind {
                Kind::Scalar => quote!(1),
                Kind::Vector => quote!((#a).len()),
                _ => quote!((#a).len()),
            };
            match &jac.params[k] {
                Some(terms) => {
                    let per_output: Vec<Vec<Option<Id>>> = terms.iter().map(|t| vec![*t]).collect();
                    let (body, value) = jac_method(&per_output, quote!(&[#width]));
                    if body.is_empty() {
                        quote!(#n: #value)
                    } else {
                        quote!(#n: { #body #value })
                    }
                }
                None => {
                    // No structured formula (matrix parameter): one row per VJP.
                    quote!(#n: {
                        let n: usize = self.state_dim();
                        let mut jac = DMatrix::zeros(n, #width);
                        for i in 0..n {
                            let e = kernels::unit(n, i);
                            let g = self.vjp_params(&e);
                            kernels::set_row(&mut jac, i, kernels::entries(&g.#n));
                        }
                        jac
                    })
                }
            }
        })
        .collect();

    // --- the reduced backward (Factored) -------------------------------------------------
    let (factored_impl, factored_hook) = match &red {
        None => (TokenStream::new(), TokenStream::new()),
        Some(r) => {
            let w = ident_of(&names, r.seed);
            let inner_state = {
                let mut sc = method_scope();
                sc.bind_ref(r.seed);
                match r.inner_state {
                    Some(id) => {
                        let items = sc.schedule(&[id]);
                        let (body, value) = sc.compute_value(&items, id);
                        quote!(#body #value)
                    }
                    None => quote!(DVector::zeros(self.state_dim())),
                }
            };
            let inner_params = {
                let mut sc = method_scope();
                sc.bind_ref(r.seed);
                let roots: Vec<Id> = r.inner_params.iter().flatten().copied().collect();
                let items = sc.schedule(&roots);
                let body = sc.compute_returning(&items, &roots);
                let grads = grads_of(&sc, &r.inner_params);
                quote!(#body #grads)
            };
            let head_params = match &r.head_params {
                None => quote!(None),
                Some(hp) => {
                    let mut sc = method_scope();
                    sc.bind_ref(r.seed);
                    let roots: Vec<Id> = hp.iter().flatten().copied().collect();
                    let items = sc.schedule(&roots);
                    let body = sc.compute_returning(&items, &roots);
                    let grads = grads_of(&sc, hp);
                    quote!(#body Some(#grads))
                }
            };
            let has_head = r.head_params.is_some();
            // Products with Mᵀ are cheap when they touch no dense matrix (elementwise and
            // sparse work only).
            let cheap = r.inner_state.is_none_or(|root| {
                let dep = stage::per_call_mask(&g);
                let reach = g.reachable(&[root]);
                g.nodes().iter().enumerate().all(|(i, node)| {
                    !(reach[i] && dep[i])
                        || match node {
                            Node::MatVec([m, _]) => {
                                g.kind(stage::peel(&g, *m, &|_| false).base) == Kind::Sparse
                            }
                            Node::MatMul(_) | Node::Outer(_) | Node::Solve(_) | Node::SolveT(_) => {
                                false
                            }
                            Node::CallVjp(_) | Node::CallJvp(_) => false,
                            _ => true,
                        }
                })
            });
            // A sparse-closed reduced matrix is assembled sparse, never dense.
            let sparse = r
                .matrix
                .filter(|&m| r.sparse && crate::restrict::sparse_closed(&g, m));
            let sparse_staged = match sparse {
                None => TokenStream::new(),
                Some(m) => {
                    let mut sc = method_scope();
                    let leaves = crate::emit_sparse::operands(&g, m);
                    let items = sc.schedule(&leaves);
                    let body = sc.compute(&items);
                    let assembly = crate::emit_sparse::SparseEmitter::new(&sc, &g).assemble(m);
                    let csr = quote!(SparseReduced<'_>);
                    let err = quote!(FoldError);
                    quote! {
                        fn reduced_sparse(&self) -> Result<Option<#csr>, #err> {
                            #body
                            Ok(Some({ #assembly }))
                        }
                    }
                }
            };
            let matrix = match r.matrix.filter(|_| sparse.is_none() && !r.sparse) {
                None => quote!(None),
                Some(m) => {
                    let mut sc = method_scope();
                    let items = sc.schedule(&[m]);
                    let (body, value) = sc.compute_value(&items, m);
                    quote!(#body Some(#value))
                }
            };
            let support = ident_of(&names, r.support);
            let kernel = match r.kernel {
                crate::restrict::Kernel::Identity => {
                    quote!(SupportKernel::Identity)
                }
                crate::restrict::Kernel::Centered => {
                    quote!(SupportKernel::Centered)
                }
            };
            let defaults = {
                let mut d = TokenStream::new();
                if has_head {
                    d.extend(quote!(
                        fn head_vjp_params(&self, #w: &DVector<f64>) -> Option<Grads> {
                            #head_params
                        }
                        fn head_has_params(&self) -> bool {
                            true
                        }
                    ));
                }
                if cheap {
                    d.extend(quote!(
                        fn cheap_products(&self) -> bool {
                            true
                        }
                    ));
                }
                d
            };
            let impl_ = quote! {
                /// `Φ = J M` through the projection ending the rule: the backward pass solves
                /// the reduced system on the projection's support.
                impl Factored for Staged<'_> {
                    type Grads = Grads;
                    fn support(&self) -> &[usize] {
                        &self.#support
                    }
                    fn kernel(&self) -> SupportKernel {
                        #kernel
                    }
                    fn inner_vjp_state(&self, #w: &DVector<f64>) -> DVector<f64> {
                        #inner_state
                    }
                    fn inner_vjp_params(&self, #w: &DVector<f64>) -> Grads {
                        #inner_params
                    }
                    #defaults
                    fn reduced_matrix(&self) -> Option<DMatrix<f64>> {
                        #matrix
                    }
                    #sparse_staged
                }
            };
            let hook = quote! {
                fn factored(&self) -> Option<&dyn Factored<Grads = Grads>> {
                    Some(self)
                }
            };
            (impl_, hook)
        }
    };

    // --- the step (forward) -----------------------------------------------------------
    let step_body = {
        let mut sc = Scope::new(&g, &names, &prims, args_map(&internal_access), true);
        let items = sc.schedule(&rule.outputs);
        if block_state {
            let body = sc.compute_returning(&items, &rule.outputs);
            let outs = rule.outputs.iter().map(|o| owned(&sc, *o));
            quote!(#body Ok((#(#outs),*)))
        } else {
            let (body, value) = sc.compute_value(&items, rule.outputs[0]);
            match strip_question(&value) {
                Some(fallible) => quote!(#body #fallible),
                None => quote!(#body Ok(#value)),
            }
        }
    };
    let block_tys: Vec<TokenStream> = sig
        .blocks
        .iter()
        .map(|&b| kind_ty(sig.args[b].kind))
        .collect();
    let step_ret = if block_state {
        quote!((#(#block_tys),*))
    } else {
        block_tys[0].clone()
    };
    let block_idents: Vec<Ident> = sig.blocks.iter().map(|&b| arg_names[b].clone()).collect();
    let mut return_solve = None;
    let solve_fn = {
        let internal_args: Vec<TokenStream> = (0..sig.args.len())
            .map(|i| {
                if sig.blocks.contains(&i) {
                    let id = format_ident!("{}_k", arg_names[i]);
                    quote!(&#id)
                } else {
                    to_internal[i].clone()
                }
            })
            .collect();
        let starts: Vec<TokenStream> = sig.blocks.iter().map(|&b| free_access(b)).collect();
        let mut split = TokenStream::new();
        let mut off = quote!(0);
        for (k, &b) in sig.blocks.iter().enumerate() {
            let id = format_ident!("{}_k", arg_names[b]);
            if matrix_block(k) {
                let s = &starts[k];
                split.extend(quote!(let #id = kernels::block_matrix(packed, #off, (#s).nrows(), (#s).ncols());));
            } else {
                split.extend(quote!(let #id = kernels::block(packed, #off, lens[#k]);));
            }
            off = quote!(#off + lens[#k]);
        }
        let next_ids: Vec<Ident> = sig
            .blocks
            .iter()
            .map(|&b| format_ident!("{}_next", arg_names[b]))
            .collect();
        let lens: Vec<TokenStream> = starts.iter().map(|s| quote!((#s).len())).collect();
        let next_pat = if block_state {
            quote!((#(#next_ids),*))
        } else {
            quote!(#(#next_ids)*)
        };
        let (start_pack, next_pack) = if any_matrix_block {
            (
                quote!(kernels::pack_entries(&[#(kernels::entries(#starts)),*])),
                quote!(kernels::pack_entries(&[#(kernels::entries(&#next_ids)),*])),
            )
        } else {
            (
                quote!(kernels::pack(&[#(#starts),*])),
                quote!(kernels::pack(&[#(&#next_ids),*])),
            )
        };
        let doc = format!("Runs `{fn_name}` to a fixed point from the given start (every input is checked first).");
        if !block_state && !any_matrix_block {
            // One vector block is the packed state itself.
            let xk = format_ident!("{}_k", arg_names[sig.blocks[0]]);
            let args = (0..sig.args.len()).map(|i| {
                if sig.blocks.contains(&i) {
                    quote!(#xk)
                } else {
                    to_internal[i].clone()
                }
            });
            let start = &arg_names[sig.blocks[0]];
            return_solve = Some(quote! {
                #[doc = #doc]
                pub fn solve(#(#user_params_nolt,)* #opts_id: &ForwardOptions) -> Result<Solution, FoldError> {
                    #solve_check
                    check_dims(#(#internal_args_in_free),*)?;
                    ::fold_runtime::fixed_point(|#xk| step(#(#args),*), #start.clone(), #opts_id)
                }
            });
        }
        quote! {
            #[doc = #doc]
            pub fn solve(#(#user_params_nolt,)* #opts_id: &ForwardOptions) -> Result<Solution, FoldError> {
                #solve_check
                check_dims(#(#internal_args_in_free),*)?;
                let lens = [#(#lens),*];
                let start = #start_pack;
                ::fold_runtime::fixed_point(
                    |packed: &DVector<f64>| {
                        #split
                        let #next_pat = step(#(#internal_args),*)?;
                        Ok(#next_pack)
                    },
                    start,
                    #opts_id,
                )
            }
        }
    };

    let solve_fn = return_solve.unwrap_or(solve_fn);

    // --- pack / unpack for block state ------------------------------------------------------
    let pack_fns = if block_state && any_matrix_block {
        let vt = vec_ty();
        let shapes_ty = quote!([(usize, usize); #nblocks]);
        let outs: Vec<TokenStream> = (0..nblocks)
            .map(|k| {
                if matrix_block(k) {
                    quote!(kernels::block_matrix_or_nan(v, &shapes, #k))
                } else {
                    quote!(kernels::block_vector_or_nan(v, &shapes, #k))
                }
            })
            .collect();
        quote! {
            /// Concatenates the state blocks, in the declared order (matrix blocks
            /// flattened column-major).
            pub fn pack(#(#block_idents: &#block_tys),*) -> #vt {
                kernels::pack_entries(&[#(kernels::entries(#block_idents)),*])
            }
            /// Splits a concatenated state into its blocks of the given shapes `(rows, cols)`
            /// (`(len, 1)` for a vector block); entries beyond `v`'s length read as NaN
            /// (this never panics).
            pub fn unpack(v: &#vt, shapes: #shapes_ty) -> (#(#block_tys),*) {
                (#(#outs),*)
            }
        }
    } else if block_state {
        let vt = vec_ty();
        let lens_ty = quote!([usize; #nblocks]);
        let outs: Vec<TokenStream> = (0..nblocks)
            .map(|k| quote!(kernels::block_or_nan(v, &lens, #k)))
            .collect();
        let tys = (0..nblocks).map(|_| vec_ty());
        quote! {
            /// Concatenates the state blocks, in the declared order.
            pub fn pack(#(#block_idents: &#vt),*) -> #vt {
                kernels::pack(&[#(#block_idents),*])
            }
            /// Splits a concatenated state into its blocks of the given lengths (entries
            /// beyond `v`'s length read as NaN; this never panics).
            pub fn unpack(v: &#vt, lens: #lens_ty) -> (#(#tys),*) {
                (#(#outs),*)
            }
        }
    } else {
        TokenStream::new()
    };

    // --- assemble -----------------------------------------------------------------------
    let nan_grads: Vec<TokenStream> = sig
        .params
        .iter()
        .map(|&p| {
            let n = &arg_names[p];
            match sig.args[p].kind {
                Kind::Scalar => quote!(#n: f64::NAN),
                Kind::Vector => quote!(#n: kernels::nan_vector(#n.len())),
                _ => quote!(#n: kernels::nan_matrix(#n.nrows(), #n.ncols())),
            }
        })
        .collect();
    let state_dim = quote!(#(#block_lens)+*);
    let nan_jacobians: Vec<TokenStream> = sig
        .params
        .iter()
        .map(|&p| {
            let n = &arg_names[p];
            let width = match sig.args[p].kind {
                Kind::Scalar => quote!(1),
                _ => quote!(#n.len()),
            };
            quote!(#n: kernels::nan_matrix(#state_dim, #width))
        })
        .collect();
    let grads_doc = format!("Gradients of a loss with respect to the parameters of `{fn_name}`.");
    let grad_field_docs: Vec<String> = param_idents
        .iter()
        .map(|n| format!("`∂loss/∂{n}`."))
        .collect();
    let derivatives = &input.derivatives;
    let block_count = nblocks;
    let jacobian_doc = format!("`Φ = ∂{fn_name}/∂state` (n × n) and `Ψ` per parameter (n × len, matrices flattened column-major).");
    // `'a` needs a field of its own only when no argument is borrowed.
    let borrows = sig.args.iter().any(|a| a.by_ref && a.kind != Kind::Scalar);
    let (phantom, phantom_init) = if borrows {
        (TokenStream::new(), TokenStream::new())
    } else {
        (
            quote!(_lifetime: ::core::marker::PhantomData<&'a ()>,),
            quote!(_lifetime: ::core::marker::PhantomData,),
        )
    };
    // Block lengths are stored only for block state (one block is the state's length).
    let (blocks_field, blocks_init, self_state_dim) = if block_state {
        (
            quote!(blocks: [usize; #block_count],),
            quote!(blocks: [#(#block_lens),*],),
            quote!(self.blocks.iter().sum()),
        )
    } else {
        let x = &sig.args[sig.blocks[0]].name;
        (
            TokenStream::new(),
            TokenStream::new(),
            quote!(self.#x.len()),
        )
    };

    let rule_items = crate::emit_rule::rule_items(sig, &kind_ty);
    let module_body = quote! {
        use ::fold_runtime::{
            __private::{check, grads, kernels, sparse},
            ops, rule,
            nalgebra::{DMatrix, DVector},
            nalgebra_sparse::CsrMatrix,
            BackwardOptions, CodegenStats, Cotangent, Factored, FoldError, ForwardOptions,
            Linearized, OpCounts, Solution, SolveStats, SparseReduced, SupportKernel,
        };
        use ::std::{option::Option, result::Result, vec::Vec};
        use super::*;

        #[doc = #grads_doc]
        #[derive(Debug, Clone, PartialEq)]
        pub struct Grads {
            #(
                #[doc = #grad_field_docs]
                pub #param_idents: #param_tys,
            )*
        }
        grads!(Grads { #(#param_idents),* });

        #[doc = #jacobian_doc]
        #[derive(Debug, Clone)]
        pub struct Jacobians {
            /// `Φ`, n × n.
            pub state: DMatrix<f64>,
            #(
                #[allow(missing_docs)]
                pub #param_idents: DMatrix<f64>,
            )*
        }

        /// What products with `Φ` and `Ψ` read, computed once per linearization.
        #[allow(dead_code)]
        pub struct Staged<'a> {
            #( #arg_names: #arg_field_tys, )*
            #( #field_idents: #field_tys, )*
            #( #factor_idents: ::fold_runtime::__private::Factorization, )*
            #blocks_field
            #phantom
        }

        fn check_dims(#(#internal_params),*) -> Result<(), FoldError> {
            #(#dim_checks)*
            Ok(())
        }

        #check_finite_fn

        fn stage<'a>(#(#user_params),*) -> Result<Staged<'a>, FoldError> {
            check_dims(#(#internal_args_in_free),*)?;
            #stage_body
            Ok(Staged {
                #blocks_init
                #( #arg_field_inits, )*
                #( #field_idents, )*
                #( #factor_idents, )*
                #phantom_init
            })
        }

        fn step(#(#internal_params),*) -> Result<#step_ret, FoldError> {
            #step_body
        }

        #[allow(unused_variables)]
        impl Linearized for Staged<'_> {
            type Grads = Grads;
            fn state_dim(&self) -> usize {
                #self_state_dim
            }
            fn vjp_state(&self, #v_param: &DVector<f64>) -> DVector<f64> {
                #vjp_state_body
            }
            fn jvp_state(&self, #u_param: &DVector<f64>) -> DVector<f64> {
                #jvp_state_body
            }
            fn vjp_params(&self, #v_param: &DVector<f64>) -> Grads {
                #vjp_params_body
            }
            fn jvp_params(&self, tangent: &Grads) -> DVector<f64> {
                #jvp_params_body
            }
            #state_jacobian_method
            #factored_hook
        }

        #factored_impl

        impl Staged<'_> {
            fn jacobians(&self) -> Jacobians {
                let state = self
                    .state_jacobian()
                    .unwrap_or_else(|| kernels::columns(self.state_dim(), |e| self.jvp_state(e)));
                Jacobians {
                    state,
                    #(#param_jacobian_fields,)*
                }
            }
        }

        /// The update rule linearized at a point; see [`linearize`].
        pub type Linearization<'a> = ::fold_runtime::Linearization<Staged<'a>>;

        /// The rule linearized at a point, computed once for any number of products (a failure
        /// is reported by `Linearized::check`, and products then return NaN).
        pub fn linearize<'a>(#(#user_params),*) -> Linearization<'a> {
            ::fold_runtime::Linearization::new(stage(#(#arg_names),*), #state_dim, || Grads { #(#nan_grads),* })
        }

        /// Dense `Φ` and `Ψ` at the given point, from the structured formula where one exists
        /// (NaN-filled when the point cannot be linearized).
        pub fn jacobians<'a>(#(#user_params),*) -> Jacobians {
            match stage(#(#arg_names),*) {
                Ok(s) => s.jacobians(),
                Err(_) => Jacobians {
                    state: kernels::nan_matrix(#state_dim, #state_dim),
                    #(#nan_jacobians,)*
                },
            }
        }

        /// The folded backward pass at a fixed point: solves `(I − Φ)ᵀ w = grad` and returns
        /// `Ψᵀ w` for every parameter. Every input is checked for non-finite values first.
        pub fn backward(#(#user_params_nolt,)* #grad_id: &DVector<f64>, #opts_id: &BackwardOptions) -> Result<Grads, FoldError> {
            backward_with_stats(#(#arg_names,)* #grad_id, #opts_id).map(|(g, _)| g)
        }

        /// [`backward`], also reporting what the linear solver did.
        pub fn backward_with_stats(#(#user_params_nolt,)* #grad_id: &DVector<f64>, #opts_id: &BackwardOptions) -> Result<(Grads, SolveStats), FoldError> {
            #backward_check
            check::finite_vector(#grad_id, "grad")?;
            let lin = linearize(#(#arg_names),*);
            Linearized::check(&lin)?;
            ::fold_runtime::folded_backward(&lin, #grad_id, #opts_id)
        }

        #solve_fn

        #pack_fns

        #rule_items

        /// The simplified derivatives of the rule, as math.
        pub const DERIVATIVES: &str = #derivatives;
    };
    let head = quote! {
        // The original function is the forward step: referenced here so that a rule used
        // only through its module does not warn as dead code.
        const _: () = {
            let _ = #fn_name;
        };
        #[doc = concat!("Folded derivatives of [`", stringify!(#fn_name), "`], generated by `#[fold]`.")]
        // The generated functions take the rule's arguments, however many the user wrote.
        #[allow(non_snake_case, unused_imports, unused_parens, unused_variables, unused_mut, clippy::too_many_arguments)]
        #vis mod #fn_name
    };
    Ok(Module {
        head,
        body: module_body,
    })
}

/// The generated module, open at its end: `head { body … }` takes the items that are only
/// known once the module is built (`STATS`, `SOURCE`).
pub struct Module {
    /// Everything before the module's braces.
    pub head: TokenStream,
    /// The module's items.
    pub body: TokenStream,
}

impl Module {
    /// The module with `tail` appended to its items.
    pub fn with_tail(&self, tail: TokenStream) -> TokenStream {
        let (head, body) = (&self.head, &self.body);
        quote!(#head { #body #tail })
    }
}

/// The Rust identifier of a seed variable.
fn display_name_of(g: &Graph, id: Id) -> String {
    match g.node(id) {
        Node::Var(s) => display_name(*s),
        _ => format!("t{}", usize::from(id)),
    }
}

/// `e` for an expression `e?` (so that `Ok(e?)` is written `e`).
fn strip_question(expr: &TokenStream) -> Option<TokenStream> {
    let mut tokens: Vec<proc_macro2::TokenTree> = expr.clone().into_iter().collect();
    match tokens.pop() {
        Some(proc_macro2::TokenTree::Punct(p)) if p.as_char() == '?' => {
            Some(tokens.into_iter().collect())
        }
        _ => None,
    }
}
