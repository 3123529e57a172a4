//! The annotated function's signature: which argument is state, parameter or constant,
//! and of what kind.

use crate::errors::{suggestion, Errors};
use crate::front::attr::{FoldAttr, PrimitiveDecl};
use crate::ir::{Kind, Role};
use proc_macro2::Span;
use quote::ToTokens;
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

const TYPES: &str = "a #[fold] function takes f64, DVector<f64>, DMatrix<f64> or CsrMatrix<f64> arguments, by value or by shared reference (`&`)";

/// Checks the signature against the attribute; errors go to `errors`.
pub fn analyze(attr: &FoldAttr, item: &ItemFn, errors: &mut Errors) -> Option<Signature> {
    let sig = &item.sig;
    if !sig.generics.params.is_empty() {
        errors.push_spanned(
            &sig.generics,
            "#[fold] functions cannot be generic: the update rule is differentiated for f64 nalgebra types; write it with f64, DVector<f64> and DMatrix<f64>",
        );
    } else if let Some(w) = &sig.generics.where_clause {
        errors.push_spanned(
            w,
            "#[fold] functions cannot have a `where` clause: the update rule is written with concrete f64 nalgebra types",
        );
    }
    if let Some(a) = &sig.asyncness {
        errors.push(
            a.span(),
            "#[fold] functions cannot be `async`: the update rule is a plain function of its arguments",
        );
    }
    if let Some(v) = &sig.variadic {
        errors.push_spanned(
            v,
            "variadic arguments are not supported; name every argument",
        );
    }
    let mut args = Vec::new();
    // Arguments whose type was rejected: already reported, so naming them in
    // `state`/`params` must not add a second, misleading "not an argument" error.
    let mut rejected: Vec<Ident> = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => errors.push_spanned(
                r,
                "#[fold] applies to free functions; `self` is not supported: pass the data as arguments",
            ),
            FnArg::Typed(pt) => {
                let name = match &*pt.pat {
                    Pat::Ident(p) if p.subpat.is_none() => p.ident.clone(),
                    other => {
                        errors.push_spanned(
                            other,
                            "arguments of a #[fold] function must be plain names (`x: &DVector<f64>`): `state` and `params` refer to them by name",
                        );
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
                    Err(e) => {
                        errors.add(e);
                        rejected.push(name);
                    }
                }
            }
        }
    }
    let fn_name = &sig.ident;
    let mut blocks = Vec::new();
    for (b, s) in attr.state.iter().enumerate() {
        match args.iter().position(|a| a.name == *s) {
            Some(i) => {
                if args[i].role != Role::Const {
                    errors.push(
                        s.span(),
                        format!("`{s}` is named twice in `state`; name each state block once"),
                    );
                    continue;
                }
                if !matches!(args[i].kind, Kind::Vector | Kind::Matrix) {
                    errors.push_spanned(
                        arg_type_of(sig, s),
                        format!(
                            "the state `{s}` must be a DVector<f64> or a DMatrix<f64> (found {}): the solver iterates a vector (a matrix state is iterated as its column-major flattening); for several blocks use block state `state = (x, z, …)`",
                            args[i].kind.describe()
                        ),
                    );
                }
                args[i].role = Role::State { block: b };
                blocks.push(i);
            }
            None if rejected.contains(s) => {}
            None => errors.push(
                s.span(),
                not_an_argument(s, fn_name, &args, false, "the state"),
            ),
        }
    }
    let mut params = Vec::new();
    for p in &attr.params {
        match args.iter().position(|a| a.name == *p) {
            Some(i) => match args[i].role {
                Role::State { .. } => errors.push(
                    p.span(),
                    format!("`{p}` is the state, so it cannot also be a parameter: `params(…)` names the other arguments whose gradients `backward` returns"),
                ),
                Role::Param => errors.push(p.span(), format!("`{p}` is listed twice in `params`; list each parameter once")),
                _ if args[i].kind == Kind::Sparse => errors.push(
                    p.span(),
                    format!("`{p}` is a sparse matrix: sparse arguments are constants and cannot be differentiated; remove it from `params(…)`, or pass it as a DMatrix<f64>"),
                ),
                _ => {
                    args[i].role = Role::Param;
                    params.push(i);
                }
            },
            None if rejected.contains(p) => {}
            None => errors.push(
                p.span(),
                not_an_argument(p, fn_name, &args, true, "a parameter"),
            ),
        }
    }
    // The kind each state block returns: its argument's (a vector when unknown).
    let block_kinds: Vec<Kind> = attr
        .state
        .iter()
        .map(|s| match args.iter().find(|a| a.name == *s) {
            Some(a) if a.kind == Kind::Matrix => Kind::Matrix,
            _ => Kind::Vector,
        })
        .collect();
    check_return(sig, attr, &block_kinds, errors);
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

/// The declared type of argument `name`, to underline it whole.
fn arg_type_of<'a>(sig: &'a syn::Signature, name: &Ident) -> Option<&'a Type> {
    sig.inputs.iter().find_map(|input| match input {
        FnArg::Typed(pt) => match &*pt.pat {
            Pat::Ident(p) if p.ident == *name => Some(&*pt.ty),
            _ => None,
        },
        FnArg::Receiver(_) => None,
    })
}

/// "`y` is not an argument of `step` …", with a typo suggestion and the candidates.
fn not_an_argument(
    name: &Ident,
    fn_name: &Ident,
    args: &[Arg],
    exclude_state: bool,
    what: &str,
) -> String {
    let is_state = |a: &&Arg| matches!(a.role, Role::State { .. });
    let names: Vec<String> = args
        .iter()
        .filter(|a| !(exclude_state && is_state(a)))
        .map(|a| a.name.to_string())
        .collect();
    let hint = suggestion(&name.to_string(), names.iter().map(String::as_str));
    if args.is_empty() {
        return format!(
            "`{name}` is not an argument of `{fn_name}`, which has none; {what} must be an argument of the function"
        );
    }
    if names.is_empty() {
        let others: Vec<String> = args
            .iter()
            .filter(is_state)
            .map(|a| format!("`{}`", a.name))
            .collect();
        return format!(
            "`{name}` is not an argument of `{fn_name}`, whose only argument is the state {}; {what} must be another argument of the function",
            others.join(", ")
        );
    }
    let list = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("`{name}` is not an argument of `{fn_name}`{hint}; {what} must be one of its arguments: {list}")
}

/// The type name of a state block of kind `kind`.
fn block_type(kind: Kind) -> &'static str {
    if kind == Kind::Matrix {
        "DMatrix<f64>"
    } else {
        "DVector<f64>"
    }
}

fn check_return(sig: &syn::Signature, attr: &FoldAttr, kinds: &[Kind], errors: &mut Errors) {
    let n = attr.state.len();
    let tys: Vec<&str> = kinds.iter().map(|k| block_type(*k)).collect();
    let first = kinds.first().copied().unwrap_or(Kind::Vector);
    let expected = if attr.state_is_tuple {
        let names: Vec<String> = attr.state.iter().map(Ident::to_string).collect();
        if kinds.iter().all(|k| *k == Kind::Vector) {
            format!(
                "a tuple of {n} DVector<f64>, one per state block in the order of `state = ({})`",
                names.join(", ")
            )
        } else {
            format!(
                "a tuple `({})`, one value per state block in the order of `state = ({})`",
                tys.join(", "),
                names.join(", ")
            )
        }
    } else {
        format!("{}, the next state", block_type(first))
    };
    let ty = match &sig.output {
        ReturnType::Default => {
            let fix = if attr.state_is_tuple {
                format!("-> ({})", tys.join(", "))
            } else {
                format!("-> {}", block_type(first))
            };
            errors.push(
                sig.paren_token.span.close(),
                format!("the update rule must return {expected}: add `{fix}` after the arguments"),
            );
            return;
        }
        ReturnType::Type(_, ty) => ty,
    };
    let is = |t: &Type, k: Kind| matches!(arg_type(t), Ok((found, false)) if found == k);
    let found = match (&**ty, attr.state_is_tuple) {
        (Type::Tuple(t), true)
            if t.elems.len() == n && t.elems.iter().zip(kinds).all(|(t, k)| is(t, *k)) =>
        {
            return
        }
        (Type::Tuple(t), true) if t.elems.len() != n => {
            format!("a tuple of {}", t.elems.len())
        }
        (t, false) if is(t, first) => return,
        (Type::Tuple(t), false) => {
            format!("a tuple of {}, but the state is one block", t.elems.len())
        }
        (Type::Reference(_), _) => format!("`{}`; return an owned value", type_text(ty)),
        _ => format!("`{}`", type_text(ty)),
    };
    errors.push_spanned(
        ty,
        format!("the update rule must return {expected} (found {found})"),
    );
}

/// A type as written, without the spaces of token printing (`DMatrix<f64>`).
fn type_text(ty: &Type) -> String {
    let mut out = ty.to_token_stream().to_string();
    for (spaced, tight) in [
        (" < ", "<"),
        (" <", "<"),
        (" >", ">"),
        (" ,", ","),
        (" :: ", "::"),
        ("& ", "&"),
        ("( ", "("),
        (" )", ")"),
    ] {
        out = out.replace(spaced, tight);
    }
    out
}

/// The kind of a supported argument type and whether it is a reference.
pub fn arg_type(ty: &Type) -> Result<(Kind, bool), syn::Error> {
    let bad = |what: &dyn ToTokens, why: String| Err(syn::Error::new_spanned(what, why));
    match ty {
        Type::Reference(r) => {
            if r.mutability.is_some() {
                return bad(
                    r,
                    "`&mut` arguments are not supported: the update rule only reads its arguments and returns the next state; take a shared reference `&` instead".to_string(),
                );
            }
            let (kind, inner_ref) = arg_type(&r.elem)?;
            if inner_ref {
                return bad(r, format!("references to references are not supported; {TYPES}"));
            }
            Ok((kind, true))
        }
        Type::Paren(p) => arg_type(&p.elem),
        Type::Group(g) => arg_type(&g.elem),
        Type::Path(p) if p.qself.is_none() => {
            let Some(last) = p.path.segments.last() else {
                return bad(p, format!("unsupported argument type; {TYPES}"));
            };
            let name = last.ident.to_string();
            let elem = match &last.arguments {
                PathArguments::AngleBracketed(a) if a.args.len() == 1 => match &a.args[0] {
                    GenericArgument::Type(t) => Some(t),
                    _ => None,
                },
                _ => None,
            };
            let f64_arg = matches!(elem, Some(Type::Path(t)) if t.path.is_ident("f64"));
            let no_args = matches!(last.arguments, PathArguments::None);
            match name.as_str() {
                "f64" if no_args => Ok((Kind::Scalar, false)),
                "DVector" if f64_arg => Ok((Kind::Vector, false)),
                "DMatrix" if f64_arg => Ok((Kind::Matrix, false)),
                "CsrMatrix" if f64_arg => Ok((Kind::Sparse, false)),
                "DVector" | "DMatrix" | "CsrMatrix" => bad(
                    p,
                    format!("`{name}` arguments must hold f64 (`{name}<f64>`): the rule is differentiated in f64; {TYPES}"),
                ),
                "f32" | "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32"
                | "u64" | "u128" | "usize" => bad(
                    p,
                    format!("`{name}` arguments are not supported: every number in a #[fold] rule is f64; {TYPES}"),
                ),
                "Vec" | "VecDeque" => bad(
                    p,
                    format!("`{name}` arguments are not supported: use DVector<f64> for vectors; {TYPES}"),
                ),
                "Option" | "Box" | "Rc" | "Arc" | "Cow" => bad(
                    p,
                    format!("`{name}` arguments are not supported: pass the value itself; {TYPES}"),
                ),
                _ => bad(p, format!("unsupported argument type; {TYPES}")),
            }
        }
        Type::Array(_) | Type::Slice(_) => bad(
            ty,
            format!("arrays and slices are not supported: use DVector<f64> for vectors; {TYPES}"),
        ),
        Type::ImplTrait(_) => bad(
            ty,
            format!("`impl Trait` arguments are not supported: the rule is written for concrete types; {TYPES}"),
        ),
        other => bad(other, format!("unsupported argument type; {TYPES}")),
    }
}
