//! The `#[fold(state = …, params(…), primitives(…))]` attribute.

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Expr, Ident, Path};

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

const KEYS: &str = "`state = x` (or `state = (x, z, …)`), `params(…)` and `primitives(…)`";

/// Parses the attribute's tokens.
pub fn parse(tokens: TokenStream) -> syn::Result<FoldAttr> {
    let span = if tokens.is_empty() {
        Span::call_site()
    } else {
        tokens.span()
    };
    let mut state: Option<(Vec<Ident>, bool)> = None;
    let mut params: Option<Vec<Ident>> = None;
    let mut primitives = Vec::new();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("state") {
            if state.is_some() {
                return Err(meta.error("`state` given twice"));
            }
            let expr: Expr = meta.value()?.parse()?;
            state = Some(parse_state(&expr)?);
            Ok(())
        } else if meta.path.is_ident("params") {
            if params.is_some() {
                return Err(meta.error("`params` given twice"));
            }
            let mut list = Vec::new();
            meta.parse_nested_meta(|m| {
                list.push(m.path.require_ident()?.clone());
                Ok(())
            })?;
            params = Some(list);
            Ok(())
        } else if meta.path.is_ident("primitives") {
            meta.parse_nested_meta(|m| {
                let name = m.path.require_ident()?.clone();
                let ty = if m.input.peek(syn::Token![=]) {
                    m.value()?.parse::<Path>()?
                } else {
                    Path::from(Ident::new(&upper_camel(&name.to_string()), name.span()))
                };
                primitives.push(PrimitiveDecl { name, ty });
                Ok(())
            })
        } else {
            let key = meta
                .path
                .get_ident()
                .map_or_else(|| "this path".to_string(), |i| format!("`{i}`"));
            Err(meta.error(format!(
                "unknown key {key} in #[fold(...)]; supported: {KEYS}"
            )))
        }
    });
    parser.parse2(tokens)?;
    let (state, state_is_tuple) = state.ok_or_else(|| {
        syn::Error::new(
            span,
            format!("#[fold(...)] needs `state = x` naming the state argument; supported: {KEYS}"),
        )
    })?;
    Ok(FoldAttr {
        state,
        state_is_tuple,
        params: params.unwrap_or_default(),
        primitives,
        span,
    })
}

fn parse_state(expr: &Expr) -> syn::Result<(Vec<Ident>, bool)> {
    let ident = |e: &Expr| -> syn::Result<Ident> {
        match e {
            Expr::Path(p) if p.qself.is_none() => p.path.require_ident().cloned(),
            other => Err(syn::Error::new(
                other.span(),
                "the state is an argument name (`state = x`) or a tuple of them (`state = (x, z)`)",
            )),
        }
    };
    match expr {
        Expr::Tuple(t) => {
            let blocks = t.elems.iter().map(ident).collect::<syn::Result<Vec<_>>>()?;
            if blocks.is_empty() {
                return Err(syn::Error::new(t.span(), "the state tuple is empty"));
            }
            Ok((blocks, true))
        }
        Expr::Paren(p) => Ok((vec![ident(&p.expr)?], false)),
        other => Ok((vec![ident(other)?], false)),
    }
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
        assert!(e.contains("`state = x`"), "{e}");
    }
}
