//! The annotated function's signature: which argument is state, parameter or constant,
//! and of what kind.

use crate::attr::{FoldAttr, PrimitiveDecl};
use crate::errors::Errors;
use crate::ir::{Kind, Role};
use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments, ReturnType, Type};

/// One argument of the update rule.
#[derive(Clone, Debug)]
pub struct Arg {
    /// Its name.
    pub name: Ident,
    /// Its kind.
    pub kind: Kind,
    /// Whether it is taken by reference.
    pub by_ref: bool,
    /// State block, parameter or constant.
    pub role: Role,
    /// Span of its type, for errors.
    pub span: Span,
}

/// The validated signature.
#[derive(Clone, Debug)]
pub struct Signature {
    /// The function's name.
    pub name: Ident,
    /// Its visibility (the generated module gets the same).
    pub vis: syn::Visibility,
    /// Arguments in order.
    pub args: Vec<Arg>,
    /// Argument index of each state block.
    pub blocks: Vec<usize>,
    /// Argument index of each parameter, in attribute order.
    pub params: Vec<usize>,
    /// Whether the state was declared as a tuple (block state).
    pub block_state: bool,
    /// User primitives.
    pub primitives: Vec<PrimitiveDecl>,
}

impl Signature {
    /// The argument called `name`.
    pub fn arg(&self, name: &str) -> Option<&Arg> {
        self.args.iter().find(|a| a.name == name)
    }
}

const TYPES: &str =
    "supported argument types: f64, DVector<f64>, DMatrix<f64>, CsrMatrix<f64>, by value or by shared reference";

/// Checks the signature against the attribute; errors go to `errors`.
pub fn analyze(attr: &FoldAttr, item: &ItemFn, errors: &mut Errors) -> Option<Signature> {
    let sig = &item.sig;
    if !sig.generics.params.is_empty() {
        errors.push(
            sig.generics.span(),
            "#[fold] functions cannot be generic: the update rule is differentiated for f64 nalgebra types",
        );
    }
    if let Some(a) = &sig.asyncness {
        errors.push(a.span(), "#[fold] functions cannot be async");
    }
    let mut args = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => errors.push(
                r.span(),
                "#[fold] applies to free functions; `self` is not supported — pass the data as arguments",
            ),
            FnArg::Typed(pt) => {
                let name = match &*pt.pat {
                    Pat::Ident(p) if p.subpat.is_none() => p.ident.clone(),
                    other => {
                        errors.push(other.span(), "arguments of a #[fold] function must be plain names");
                        continue;
                    }
                };
                match arg_type(&pt.ty) {
                    Ok((kind, by_ref)) => args.push(Arg {
                        name,
                        kind,
                        by_ref,
                        role: Role::Const,
                        span: pt.ty.span(),
                    }),
                    Err((span, msg)) => errors.push(span, msg),
                }
            }
        }
    }
    let names: Vec<String> = args.iter().map(|a| a.name.to_string()).collect();
    let list = names.join(", ");
    let mut blocks = Vec::new();
    for (b, s) in attr.state.iter().enumerate() {
        match args.iter().position(|a| a.name == *s) {
            Some(i) => {
                if args[i].role != Role::Const {
                    errors.push(s.span(), format!("`{s}` is named twice in `state`"));
                    continue;
                }
                if args[i].kind != Kind::Vector {
                    errors.push(
                        args[i].span,
                        format!(
                            "the state `{s}` must be a DVector<f64> (found {})",
                            args[i].kind.describe()
                        ),
                    );
                }
                args[i].role = Role::State { block: b };
                blocks.push(i);
            }
            None => errors.push(
                s.span(),
                format!(
                    "`{s}` is not an argument of `{}`; the state must be one of: {list}",
                    sig.ident
                ),
            ),
        }
    }
    let mut params = Vec::new();
    for p in &attr.params {
        match args.iter().position(|a| a.name == *p) {
            Some(i) => match args[i].role {
                Role::State { .. } => errors.push(
                    p.span(),
                    format!("`{p}` is the state; a parameter must be another argument"),
                ),
                Role::Param => errors.push(p.span(), format!("`{p}` is listed twice in `params`")),
                _ if args[i].kind == Kind::Sparse => errors.push(
                    p.span(),
                    format!("`{p}` is a sparse matrix: sparse arguments are constants and cannot be differentiated"),
                ),
                _ => {
                    args[i].role = Role::Param;
                    params.push(i);
                }
            },
            None => errors.push(
                p.span(),
                format!(
                    "`{p}` is not an argument of `{}`; parameters must be among: {list}",
                    sig.ident
                ),
            ),
        }
    }
    check_return(&sig.output, attr, errors);
    Some(Signature {
        name: sig.ident.clone(),
        vis: item.vis.clone(),
        args,
        blocks,
        params,
        block_state: attr.state_is_tuple,
        primitives: attr.primitives.clone(),
    })
}

fn check_return(output: &ReturnType, attr: &FoldAttr, errors: &mut Errors) {
    let expected = if attr.state_is_tuple {
        format!(
            "a tuple of {} DVector<f64> (one per state block)",
            attr.state.len()
        )
    } else {
        "DVector<f64> (the next state)".to_string()
    };
    let ok = match output {
        ReturnType::Default => false,
        ReturnType::Type(_, ty) => {
            if attr.state_is_tuple {
                match &**ty {
                    Type::Tuple(t) => {
                        t.elems.len() == attr.state.len()
                            && t.elems
                                .iter()
                                .all(|e| matches!(arg_type(e), Ok((Kind::Vector, false))))
                    }
                    _ => false,
                }
            } else {
                matches!(arg_type(ty), Ok((Kind::Vector, false)))
            }
        }
    };
    if !ok {
        let span = match output {
            ReturnType::Default => attr.span,
            ReturnType::Type(_, ty) => ty.span(),
        };
        errors.push(span, format!("the update rule must return {expected}"));
    }
}

/// The kind of a supported argument type and whether it is a reference.
pub fn arg_type(ty: &Type) -> Result<(Kind, bool), (Span, String)> {
    match ty {
        Type::Reference(r) => {
            if r.mutability.is_some() {
                return Err((
                    r.span(),
                    format!("`&mut` arguments are not supported; {TYPES}"),
                ));
            }
            let (kind, inner_ref) = arg_type(&r.elem)?;
            if inner_ref {
                return Err((r.span(), TYPES.to_string()));
            }
            Ok((kind, true))
        }
        Type::Paren(p) => arg_type(&p.elem),
        Type::Path(p) if p.qself.is_none() => {
            let Some(last) = p.path.segments.last() else {
                return Err((p.span(), TYPES.to_string()));
            };
            let name = last.ident.to_string();
            let f64_arg = match &last.arguments {
                PathArguments::AngleBracketed(a) if a.args.len() == 1 => match &a.args[0] {
                    GenericArgument::Type(Type::Path(t)) => t.path.is_ident("f64"),
                    _ => false,
                },
                _ => false,
            };
            let no_args = matches!(last.arguments, PathArguments::None);
            match name.as_str() {
                "f64" if no_args => Ok((Kind::Scalar, false)),
                "DVector" if f64_arg => Ok((Kind::Vector, false)),
                "DMatrix" if f64_arg => Ok((Kind::Matrix, false)),
                "CsrMatrix" if f64_arg => Ok((Kind::Sparse, false)),
                _ => Err((p.span(), format!("unsupported argument type; {TYPES}"))),
            }
        }
        other => Err((other.span(), format!("unsupported argument type; {TYPES}"))),
    }
}
