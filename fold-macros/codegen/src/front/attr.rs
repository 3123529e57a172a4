//! The `#[fold(state = …, params(…), primitives(…))]` attribute.

use crate::errors::{suggestion, Errors};
use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, Ident, Meta, MetaList, Path, Token};

/// A user primitive: the function called in the rule and the type implementing
/// `fold_runtime::Primitive` for it.
#[derive(Clone, Debug)]
pub struct PrimitiveDecl {
    /// The function name used in the body.
    pub name: Ident,
    /// The implementing type (`f = Type`, or `f` in UpperCamelCase).
    pub ty: Path,
}

/// The parsed attribute.
#[derive(Clone, Debug)]
pub struct FoldAttr {
    /// State blocks, in order.
    pub state: Vec<Ident>,
    /// Whether the state was written as a tuple (block state).
    pub state_is_tuple: bool,
    /// Differentiated parameters.
    pub params: Vec<Ident>,
    /// User primitives.
    pub primitives: Vec<PrimitiveDecl>,
    /// Span of the whole attribute, for errors about it.
    pub span: Span,
}

const KEYS: &str = "`state = x` (or `state = (x, z, …)` for block state), `params(a, b, …)` and `primitives(f, …)`";

/// The attribute's keys, for typo suggestions.
const KEY_NAMES: [&str; 3] = ["state", "params", "primitives"];

/// Parses the attribute's tokens, reporting every malformed key at once.
pub fn parse(tokens: TokenStream) -> syn::Result<FoldAttr> {
    let span = if tokens.is_empty() {
        Span::call_site()
    } else {
        tokens.span()
    };
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated
        .parse2(tokens.clone())
        .map_err(|e| {
            syn::Error::new(
                e.span(),
                format!("{e}: #[fold(...)] takes {KEYS}, separated by commas"),
            )
        })?;
    let mut errors = Errors::default();
    let mut state: Option<(Vec<Ident>, bool)> = None;
    let mut params: Option<Vec<Ident>> = None;
    let mut primitives: Option<Vec<PrimitiveDecl>> = None;
    for meta in &metas {
        let path = meta.path();
        let Some(key) = path.get_ident().map(Ident::to_string) else {
            errors.push_spanned(
                path,
                format!("#[fold(...)] takes {KEYS}; this path is none of them"),
            );
            continue;
        };
        let twice = |errors: &mut Errors| {
            errors.push_spanned(path, format!("`{key}` is given twice; give it once"));
        };
        match key.as_str() {
            "state" => {
                let Meta::NameValue(nv) = meta else {
                    errors.push_spanned(
                        meta,
                        "write the state as `state = x`, or `state = (x, z, …)` for block state",
                    );
                    continue;
                };
                if state.is_some() {
                    twice(&mut errors);
                    continue;
                }
                state = parse_state(&nv.value, &mut errors);
            }
            "params" => {
                let Meta::List(list) = meta else {
                    errors.push_spanned(meta, "write the parameters as a list: `params(a, b, …)`");
                    continue;
                };
                if params.is_some() {
                    twice(&mut errors);
                    continue;
                }
                params = Some(parse_params(list, &mut errors));
            }
            "primitives" => {
                let Meta::List(list) = meta else {
                    errors.push_spanned(
                        meta,
                        "write the user primitives as a list: `primitives(f, g = path::to::G, …)`",
                    );
                    continue;
                };
                if primitives.is_some() {
                    twice(&mut errors);
                    continue;
                }
                primitives = Some(parse_primitives(list, &mut errors));
            }
            other => {
                let hint = suggestion(other, KEY_NAMES);
                errors.push_spanned(
                    path,
                    format!("unknown key `{other}` in #[fold(...)]{hint}; the supported keys are {KEYS}"),
                );
            }
        }
    }
    // A misspelled `state` key is reported as such, not also as a missing state.
    if state.is_none() && errors.is_empty() {
        let message = format!(
            "#[fold] needs the state: write `#[fold(state = x, params(…))]` where `x` is the argument the solver iterates (a DVector<f64>); supported keys: {KEYS}"
        );
        if tokens.is_empty() {
            errors.push(span, message);
        } else {
            errors.push_spanned(&tokens, message);
        }
    }
    errors.finish()?;
    let Some((state, state_is_tuple)) = state else {
        return Err(syn::Error::new(span, "#[fold] needs `state = x`"));
    };
    Ok(FoldAttr {
        state,
        state_is_tuple,
        params: params.unwrap_or_default(),
        primitives: primitives.unwrap_or_default(),
        span,
    })
}

/// `x`, `(x)` or `(x, z, …)`.
fn parse_state(expr: &Expr, errors: &mut Errors) -> Option<(Vec<Ident>, bool)> {
    let ident = |e: &Expr, errors: &mut Errors| -> Option<Ident> {
        match e {
            Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => {
                if let Some(i) = p.path.get_ident() {
                    return Some(i.clone());
                }
            }
            _ => {}
        }
        errors.push_spanned(
            e,
            "the state is the name of an argument (`state = x`) or a tuple of names for block state (`state = (x, z)`)",
        );
        None
    };
    match expr {
        Expr::Tuple(t) => {
            if t.elems.is_empty() {
                errors.push_spanned(
                    t,
                    "the state tuple is empty; name the state blocks: `state = (x, z)`",
                );
                return None;
            }
            let blocks: Vec<Option<Ident>> = t.elems.iter().map(|e| ident(e, errors)).collect();
            blocks
                .into_iter()
                .collect::<Option<Vec<_>>>()
                .map(|b| (b, true))
        }
        Expr::Paren(p) => Some((vec![ident(&p.expr, errors)?], false)),
        other => Some((vec![ident(other, errors)?], false)),
    }
}

/// `params(a, b, …)`: names only.
fn parse_params(list: &MetaList, errors: &mut Errors) -> Vec<Ident> {
    let items = match list.parse_args_with(Punctuated::<Expr, Token![,]>::parse_terminated) {
        Ok(items) => items,
        Err(e) => {
            errors.push(
                e.span(),
                format!("{e}: write the parameters as `params(a, b, …)`"),
            );
            return Vec::new();
        }
    };
    let mut names = Vec::new();
    for item in &items {
        match item {
            Expr::Path(p) if p.qself.is_none() && p.path.get_ident().is_some() => {
                names.extend(p.path.get_ident().cloned());
            }
            other => errors.push_spanned(
                other,
                "a parameter is the name of an argument of the function: `params(a, b, …)`",
            ),
        }
    }
    names
}

/// `primitives(f, g = path::to::G, …)`.
fn parse_primitives(list: &MetaList, errors: &mut Errors) -> Vec<PrimitiveDecl> {
    const FORM: &str = "a user primitive is `f` (implemented by the type `F`) or `f = path::to::Type`, where the type implements `fold_runtime::Primitive`";
    let items = match list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated) {
        Ok(items) => items,
        Err(e) => {
            errors.push(e.span(), format!("{e}: {FORM}"));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for item in &items {
        let Some(name) = item.path().get_ident().cloned() else {
            errors.push_spanned(item.path(), FORM);
            continue;
        };
        let ty = match item {
            Meta::Path(_) => Path::from(Ident::new(&upper_camel(&name.to_string()), name.span())),
            Meta::NameValue(nv) => match &nv.value {
                Expr::Path(p) if p.qself.is_none() => p.path.clone(),
                other => {
                    errors.push_spanned(other, FORM);
                    continue;
                }
            },
            Meta::List(l) => {
                errors.push_spanned(l, FORM);
                continue;
            }
        };
        out.push(PrimitiveDecl { name, ty });
    }
    out
}

/// `soft_sort` → `SoftSort`.
fn upper_camel(name: &str) -> String {
    name.split('_')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn parses_block_state_params_and_primitives() {
        let a = parse(quote!(
            state = (x, z),
            params(c, q),
            primitives(soft_sort, g = my::G)
        ))
        .unwrap();
        assert_eq!(a.state.len(), 2);
        assert!(a.state_is_tuple);
        assert_eq!(a.params.len(), 2);
        assert_eq!(a.primitives[0].ty.get_ident().unwrap(), "SoftSort");
        assert_eq!(a.primitives[1].ty.segments.len(), 2);
    }

    #[test]
    fn rejects_unknown_keys_with_a_suggestion() {
        let e = parse(quote!(stat = x)).unwrap_err().to_string();
        assert!(e.contains("unknown key `stat`"), "{e}");
        assert!(e.contains("did you mean `state`?"), "{e}");
        assert!(e.contains("`state = x`"), "{e}");
    }

    #[test]
    fn reports_every_malformed_key_at_once() {
        let e = parse(quote!(state(x), param(c), primitives = f)).unwrap_err();
        let all: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(all.len(), 3, "{all:#?}");
        assert!(all[0].contains("`state = x`"), "{all:#?}");
        assert!(all[1].contains("did you mean `params`?"), "{all:#?}");
        assert!(all[2].contains("primitives(f"), "{all:#?}");
    }

    #[test]
    fn rejects_bad_state_and_param_forms() {
        for attr in [
            quote!(state = ()),
            quote!(state = 1),
            quote!(state = (x, 2)),
            quote!(state = x, state = y),
            quote!(state = x, params = c),
            quote!(state = x, params(c + 1)),
            quote!(state = x, params(c), params(d)),
            quote!(params(c)),
            quote!(),
            quote!(state = ),
            quote!(a::b = x),
            quote!(state = x, primitives(f(1))),
        ] {
            assert!(parse(attr.clone()).is_err(), "accepted {attr}");
        }
    }
}
