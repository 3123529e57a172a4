//! An update rule analyzed end to end: signature, IR, symbolic derivatives, shape checks.

use crate::diff;
use crate::errors::Errors;
use crate::front::attr;
use crate::front::lower;
use crate::front::signature::{self, Signature};
use crate::ir::graph::Graph;
use crate::ir::graph::VarInfo;
use crate::ir::shape::{self, Source};
use crate::ir::{seed_symbol, Kind, Role};
use egg::{Id, Symbol};
use proc_macro2::TokenStream;
use syn::ItemFn;

/// The seeds of the per-call products.
#[derive(Clone, Debug)]
pub struct Seeds {
    /// Cotangent of each output block (`v`).
    pub cotangent: Vec<Id>,
    /// Tangent of each state block (`u`).
    pub tangent: Vec<Id>,
    /// Tangent of each parameter (`δθ`).
    pub param_tangent: Vec<Id>,
}

/// The rule and its derivatives as terms of one graph.
#[derive(Clone, Debug)]
pub struct Rule {
    /// The validated signature.
    pub sig: Signature,
    /// Primal and derivative terms.
    pub graph: Graph,
    /// Output term per state block.
    pub outputs: Vec<Id>,
    /// The `Var` term of each argument.
    pub args: Vec<Id>,
    /// The seeds.
    pub seeds: Seeds,
    /// `Φᵀv`, per state block (`None`: zero).
    pub vjp_state: Vec<Option<Id>>,
    /// `Ψ_θᵀv`, per parameter.
    pub vjp_params: Vec<Option<Id>>,
    /// `Φu`, per output block.
    pub jvp_state: Vec<Option<Id>>,
    /// `Ψδθ`, per output block.
    pub jvp_params: Vec<Option<Id>>,
    /// Equalities between argument dimensions checked at run time.
    pub dim_checks: Vec<(Source, Source)>,
    /// The reduced backward, when the rule ends in a projection with a support.
    pub reduction: Option<crate::diff::restrict::Reduction>,
    /// Structured `Φ` blocks `[output block][state block]` (`None` without a structured form).
    pub jac_state: Option<Vec<Vec<Option<Id>>>>,
    /// Structured `Ψ` per parameter, one column block per output block (vector parameters:
    /// matrices; scalar parameters: vectors; matrix parameters: `None`).
    pub jac_params: Vec<Option<Vec<Option<Id>>>>,
}

impl Rule {
    /// The roots of every product with `Φ` and `Ψ` (VJPs, then JVPs), skipping zeros.
    pub fn product_roots(&self) -> impl Iterator<Item = Id> + '_ {
        self.vjp_state
            .iter()
            .chain(&self.vjp_params)
            .chain(&self.jvp_state)
            .chain(&self.jvp_params)
            .flatten()
            .copied()
    }

    /// Names of the state blocks.
    pub fn block_names(&self) -> Vec<String> {
        self.sig
            .blocks
            .iter()
            .map(|&i| self.sig.args[i].name.to_string())
            .collect()
    }

    /// Names of the parameters.
    pub fn param_names(&self) -> Vec<String> {
        self.sig
            .params
            .iter()
            .map(|&i| self.sig.args[i].name.to_string())
            .collect()
    }
}

/// Parses and analyzes `#[fold(attr)] item`, collecting every error with its span.
pub fn analyze(attr_tokens: TokenStream, item: &ItemFn) -> syn::Result<Rule> {
    let attr = attr::parse(attr_tokens)?;
    let mut errors = Errors::default();
    let sig = signature::analyze(&attr, item, &mut errors);
    errors.finish()?;
    let sig = sig.ok_or_else(|| syn::Error::new(attr.span, "invalid signature"))?;
    let mut errors = Errors::default();
    let lowered = lower::lower(&sig, item, &mut errors);
    errors.finish()?;
    let lowered = lowered.ok_or_else(|| syn::Error::new(attr.span, "invalid body"))?;
    Ok(differentiate(sig, lowered))
}

/// `base`, or `base_`, `base__`, … until it names nothing in the rule.
fn unique(base: String, taken: &std::collections::HashSet<String>) -> String {
    let mut s = base;
    while taken.contains(&s) {
        s.push('_');
    }
    s
}

fn seed_names(
    sig: &Signature,
    prefix: &str,
    taken: &std::collections::HashSet<String>,
) -> Vec<String> {
    if sig.block_state {
        sig.blocks
            .iter()
            .map(|&i| unique(format!("{prefix}_{}", sig.args[i].name), taken))
            .collect()
    } else {
        vec![unique(prefix.to_string(), taken)]
    }
}

/// Adds seeds and derivative terms to a lowered rule.
pub fn differentiate(sig: Signature, lowered: lower::Lowered) -> Rule {
    let lower::Lowered {
        mut graph,
        outputs,
        arg_symbols,
    } = lowered;
    let mut shapes = shape::infer(&graph, &outputs, &sig, &arg_symbols);
    let dim_checks = shapes.checks();
    let args: Vec<Id> = arg_symbols.iter().map(|s| graph.var(*s)).collect();
    // Seed names must not shadow the rule's own names in DERIVATIVES or generated code.
    let mut taken: std::collections::HashSet<String> =
        sig.args.iter().map(|a| a.name.to_string()).collect();
    taken.extend(graph.names.values().cloned());
    let seed = |graph: &mut Graph, name: &str, kind: Kind, role: Role| -> Id {
        let sym: Symbol = seed_symbol(name);
        graph.vars.insert(sym, VarInfo { kind, role });
        graph.var(sym)
    };
    // A matrix state block has matrix seeds: products reshape the flat (co)tangent.
    let block_kinds: Vec<Kind> = sig.blocks.iter().map(|&i| sig.args[i].kind).collect();
    let matrix_state = block_kinds.contains(&Kind::Matrix);
    let cotangent: Vec<Id> = seed_names(&sig, "v", &taken)
        .iter()
        .enumerate()
        .map(|(b, n)| seed(&mut graph, n, block_kinds[b], Role::Cotangent { block: b }))
        .collect();
    let tangent: Vec<Id> = seed_names(&sig, "u", &taken)
        .iter()
        .enumerate()
        .map(|(b, n)| seed(&mut graph, n, block_kinds[b], Role::Tangent { block: b }))
        .collect();
    let param_tangent: Vec<Id> = sig
        .params
        .iter()
        .enumerate()
        .map(|(p, &i)| {
            let a = &sig.args[i];
            seed(
                &mut graph,
                &format!("d{}", a.name),
                a.kind,
                Role::ParamTangent { param: p },
            )
        })
        .collect();
    let state_vars: Vec<Id> = sig.blocks.iter().map(|&i| args[i]).collect();
    let param_vars: Vec<Id> = sig.params.iter().map(|&i| args[i]).collect();
    let mut wrt = state_vars.clone();
    wrt.extend(&param_vars);
    let adjoints = diff::vjp(&mut graph, &outputs, &cotangent, &wrt);
    let (vjp_state, vjp_params) = adjoints.split_at(state_vars.len());
    let jvp_state = diff::jvp(&mut graph, &outputs, &state_vars, &tangent);
    let jvp_params = diff::jvp(&mut graph, &outputs, &param_vars, &param_tangent);
    // Structured Jacobians are built for vector state only; with a matrix block, `Φ` and
    // `Ψ` are assembled from products (columns of the JVP, rows of the VJP).
    let jac_state = if matrix_state {
        None
    } else {
        let mut rows: Vec<Vec<Option<Id>>> = vec![Vec::new(); outputs.len()];
        let mut ok = true;
        for &b in &state_vars {
            match diff::jacobian(&mut graph, &outputs, b) {
                Ok(cols) => {
                    for (o, c) in cols.into_iter().enumerate() {
                        rows[o].push(c);
                    }
                }
                Err(_) => ok = false,
            }
        }
        ok.then_some(rows)
    };
    let jac_params = sig
        .params
        .iter()
        .map(|&p| match sig.args[p].kind {
            _ if matrix_state => None,
            Kind::Vector => diff::jacobian(&mut graph, &outputs, args[p]).ok(),
            Kind::Scalar => {
                let one = graph.num(1.0);
                Some(diff::jvp(&mut graph, &outputs, &[args[p]], &[one]))
            }
            _ => None,
        })
        .collect();
    let reduction = if sig.block_state || matrix_state {
        None
    } else {
        let name = unique("w".to_string(), &taken);
        crate::diff::restrict::reduction(&mut graph, outputs[0], state_vars[0], &param_vars, &name)
    };
    Rule {
        sig,
        graph,
        outputs,
        args,
        seeds: Seeds {
            cotangent,
            tangent,
            param_tangent,
        },
        vjp_state: vjp_state.to_vec(),
        vjp_params: vjp_params.to_vec(),
        jvp_state,
        jvp_params,
        dim_checks,
        reduction,
        jac_state,
        jac_params,
    }
}
