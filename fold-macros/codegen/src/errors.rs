//! Compile errors collected across the pipeline, each on the span of the offending code.

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use std::fmt::Display;

/// Errors gathered so that one expansion reports all of them at once.
#[derive(Default)]
pub struct Errors {
    combined: Option<syn::Error>,
}

impl Errors {
    /// Records an error at `span` (one token: on stable Rust a span cannot be joined).
    pub fn push(&mut self, span: Span, message: impl Display) {
        self.add(syn::Error::new(span, message));
    }

    /// Records an error underlining all of `tokens`, from their first to their last token.
    pub fn push_spanned(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.add(syn::Error::new_spanned(tokens, message));
    }

    /// Records an existing error.
    pub fn add(&mut self, error: syn::Error) {
        match &mut self.combined {
            Some(all) => all.combine(error),
            None => self.combined = Some(error),
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.combined.is_none()
    }

    /// `Err` with everything recorded, or `Ok(())`.
    pub fn finish(self) -> syn::Result<()> {
        match self.combined {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The annotated item as a function, or an error naming what it is instead.
pub fn parse_function(item: TokenStream) -> syn::Result<syn::ItemFn> {
    const USAGE: &str = "write `#[fold(state = x, params(…))] fn step(x: &DVector<f64>, …) -> DVector<f64> { … }`, one iteration of the solver";
    let parsed = match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Fn(f)) => return Ok(f),
        Ok(other) => other,
        Err(e) => {
            return Err(syn::Error::new(
                e.span(),
                format!("#[fold] applies to a function with a body; {USAGE}"),
            ))
        }
    };
    let (what, head): (&str, TokenStream) = match &parsed {
        syn::Item::Struct(s) => ("a struct", pair(&s.struct_token, &s.ident)),
        syn::Item::Enum(e) => ("an enum", pair(&e.enum_token, &e.ident)),
        syn::Item::Union(u) => ("a union", pair(&u.union_token, &u.ident)),
        syn::Item::Mod(m) => ("a module", pair(&m.mod_token, &m.ident)),
        syn::Item::Trait(t) => ("a trait", pair(&t.trait_token, &t.ident)),
        syn::Item::Impl(i) => ("an impl block", i.impl_token.to_token_stream()),
        syn::Item::Const(c) => ("a constant", pair(&c.const_token, &c.ident)),
        syn::Item::Static(s) => ("a static", pair(&s.static_token, &s.ident)),
        syn::Item::Type(t) => ("a type alias", pair(&t.type_token, &t.ident)),
        syn::Item::Use(u) => ("a `use` item", u.use_token.to_token_stream()),
        // `fn f(…);`: a declaration, as in a trait or an `extern` block.
        syn::Item::Verbatim(v) if syn::parse2::<syn::TraitItemFn>(v.clone()).is_ok() => {
            ("a function without a body", v.clone())
        }
        _ => ("this item", item.clone()),
    };
    let message = if matches!(parsed, syn::Item::Verbatim(_)) {
        format!("#[fold] needs the function's body: it differentiates the code of the update rule; {USAGE}")
    } else {
        format!("#[fold] applies to a function, not to {what}; {USAGE}")
    };
    Err(syn::Error::new_spanned(head, message))
}

/// The tokens of `a` then `b`: a keyword and a name, to underline both.
fn pair(a: &impl ToTokens, b: &impl ToTokens) -> TokenStream {
    let mut tokens = a.to_token_stream();
    b.to_tokens(&mut tokens);
    tokens
}

/// What `#[fold]` expands to when it rejects `item`: the errors, and the function with
/// its body replaced. Keeping the function means callers still resolve it; dropping the
/// body means rustc does not repeat, as long trait-bound errors, what the macro already
/// explained (`alpha + x`, a missing tail expression, …).
pub fn fallback(item: &TokenStream, error: syn::Error) -> TokenStream {
    let errors = error.to_compile_error();
    match syn::parse2::<syn::ItemFn>(item.clone()) {
        Ok(f) => {
            let (attrs, vis, sig) = (&f.attrs, &f.vis, &f.sig);
            quote! {
                #(#attrs)*
                #[allow(unused_variables)]
                #vis #sig {
                    // Never runs: the compile errors above stop the build.
                    ::core::panic!("#[fold] rejected this function")
                }
                #errors
            }
        }
        Err(_) => quote!(#item #errors),
    }
}

/// The candidate closest to `name`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    // About one edit per three characters: short names (`x`, `c`) get no suggestion,
    // since any other short name is as close.
    let budget = name.chars().count() / 3;
    if budget == 0 {
        return None;
    }
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= budget)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `"; did you mean `x`?"`, or nothing.
pub fn suggestion<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(name, candidates).map_or_else(String::new, |c| format!(" (did you mean `{c}`?)"))
}

/// Levenshtein distance, with a transposition of neighbours counting as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_misses_only() {
        assert_eq!(did_you_mean("stat", ["state", "params"]), Some("state"));
        assert_eq!(did_you_mean("param", ["state", "params"]), Some("params"));
        assert_eq!(
            did_you_mean("norm_sqared", ["norm", "norm_squared"]),
            Some("norm_squared")
        );
        assert_eq!(did_you_mean("porj_box", ["proj_box"]), Some("proj_box"));
        assert_eq!(did_you_mean("shrink", ["sin", "sqrt", "softmax"]), None);
        assert_eq!(did_you_mean("y", ["x", "c"]), None);
    }
}
