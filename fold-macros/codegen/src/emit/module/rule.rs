//! The items that follow from the rule's signature alone, as one `rule!` call: the runtime
//! writes `Grads`, `Jacobians`, `Params`, `Consts`, `Args`, `Rule` (with `Declared`) and
//! the public functions from it.

use super::ctx::Ctx;
use super::kind_ty;
use crate::ir::Role;
use proc_macro2::TokenStream;
use quote::quote;

/// The `rule!` call, and its text laid out as a person would write it (prettyplease prints
/// the tokens of a macro call one by one).
pub struct RuleCall {
    pub tokens: TokenStream,
    pub text: String,
}

impl Ctx<'_> {
    /// `rule! { fn name<'a>(args as declared); state …; params …; consts …; }`.
    pub fn rule_call(&self) -> RuleCall {
        let sig = self.sig;
        let name = &sig.name;
        let args: Vec<TokenStream> = (0..sig.args.len())
            .map(|i| {
                let n = &self.arg_names[i];
                let t = self.user_ty(i);
                quote!(#n: #t)
            })
            .collect();
        let owned = |i: usize| {
            let n = &self.arg_names[i];
            let t = kind_ty(sig.args[i].kind);
            quote!(#n: #t)
        };
        let blocks: Vec<TokenStream> = sig.blocks.iter().map(|&b| owned(b)).collect();
        let params: Vec<TokenStream> = sig.params.iter().map(|&p| owned(p)).collect();
        let consts: Vec<TokenStream> = (0..sig.args.len())
            .filter(|&i| sig.args[i].role == Role::Const)
            .map(owned)
            .collect();
        let state = if sig.block_state {
            quote!((#(#blocks),*))
        } else {
            quote!(#(#blocks)*)
        };
        let tokens = quote! {
            rule! {
                fn #name<'a>(#(#args),*);
                state #state;
                params #(#params),*;
                consts #(#consts),*;
            }
        };

        // The signature as prettyplease lays out a function's, the rest one line each.
        let item: syn::ItemFn = syn::parse_quote!(fn #name<'a>(#(#args),*) {});
        let file = syn::File {
            shebang: None,
            attrs: Vec::new(),
            items: vec![syn::Item::Fn(item)],
        };
        let pretty = prettyplease::unparse(&file);
        let signature = pretty.trim_end().trim_end_matches(" {}");
        let line = |head: &str, items: &[TokenStream]| {
            let items: Vec<String> = items.iter().map(tidy).collect();
            if items.is_empty() {
                format!("        {head};\n")
            } else {
                format!("        {head} {};\n", items.join(", "))
            }
        };
        let state_line = if sig.block_state {
            let blocks: Vec<String> = blocks.iter().map(tidy).collect();
            format!("        state ({});\n", blocks.join(", "))
        } else {
            line("state", &blocks)
        };
        let text = format!(
            "    rule! {{\n        {};\n{state_line}{}{}    }}\n",
            signature.replace('\n', "\n        "),
            line("params", &params),
            line("consts", &consts),
        );
        RuleCall { tokens, text }
    }
}

/// `name: Type` as written by hand (tokens print `DVector < f64 >`).
fn tidy(t: &TokenStream) -> String {
    t.to_string()
        .replace(" < ", "<")
        .replace(" >", ">")
        .replace(" :", ":")
}
