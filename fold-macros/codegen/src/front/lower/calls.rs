//! Function calls: the builtins (projections, `linsolve`, …) and user primitives.

use super::*;

impl Lowerer<'_> {
    pub(super) fn call(&mut self, c: &syn::ExprCall) -> Option<Val> {
        let Expr::Path(p) = &*c.func else {
            return self.err_at(
                &c.func,
                "only calls of named functions are supported: the primitives of fold_runtime::ops and user primitives listed in `primitives(…)`",
            );
        };
        let segs: Vec<String> = p
            .path
            .segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect();
        let name = segs.last().cloned().unwrap_or_default();
        let path = segs.join("::");
        let prefix: Vec<&str> = segs[..segs.len().saturating_sub(1)]
            .iter()
            .map(String::as_str)
            .collect();
        if segs.len() == 1 && self.is_bound(&name) {
            // A local closure or value: its `let` was reported, or it is not callable.
            if self.lookup(&name, p.span()).is_some() {
                return self.err_at(
                    p,
                    format!("`{name}` is a value, not a function; call the primitives of fold_runtime::ops or user primitives listed in `primitives(…)`"),
                );
            }
            return None;
        }
        let runtime_path = matches!(
            prefix.as_slice(),
            [] | ["ops"] | ["fold_runtime", "ops"] | ["fold_runtime"]
        );
        if self.elementwise.is_some() {
            return self.err_at(p, format!("function calls are not supported inside `.map(|e| …)`, where `e` is a scalar: use scalar methods such as `e.exp()`, or apply `{name}` to the whole vector outside the closure"));
        }
        let user = segs.len() == 1 && self.sig.primitives.iter().any(|pd| pd.name == name);
        // An unknown callee is reported before its arguments are lowered: their errors
        // (an integer size, say) would only distract from it.
        if !user && prefix.last() == Some(&"DMatrix") && name == "from_diagonal" {
            let args: Vec<Option<Id>> = c.args.iter().map(|a| self.term(a)).collect();
            let args: Vec<Id> = args.into_iter().collect::<Option<_>>()?;
            let exprs: Vec<&Expr> = c.args.iter().collect();
            self.check_args(
                "DMatrix::from_diagonal",
                &args,
                &exprs,
                c,
                &[&[Kind::Vector]],
            )?;
            return Some(Val::Term(self.g.add(Node::Diag(args[0]))));
        }
        if !user {
            if matches!(
                prefix.last(),
                Some(&("DVector" | "DMatrix" | "OVector" | "OMatrix" | "Matrix" | "CsrMatrix"))
            ) {
                return self.err_at(
                    p,
                    format!("`{path}` is not supported: a #[fold] rule does not construct vectors or matrices; they come in as arguments, and operations produce new ones"),
                );
            }
            if !runtime_path || crate::ir::builtins::Builtin::from_name(&name).is_none() {
                return self.unknown_function(p, &path, &name);
            }
        }
        // Lower every argument, so that each one's errors are reported.
        let args: Vec<Option<Id>> = c.args.iter().map(|a| self.term(a)).collect();
        let args: Vec<Id> = args.into_iter().collect::<Option<_>>()?;
        if user {
            if args.is_empty() {
                return self.err_at(
                    c,
                    format!(
                        "user primitive `{name}` needs at least one argument: its input vector"
                    ),
                );
            }
            let call = self.g.add(Node::Call(Symbol::from(name.as_str()), args));
            let zero = self.scalar(0.0);
            return Some(Val::Term(self.g.add(Node::Get([call, zero]))));
        }
        let exprs: Vec<&Expr> = c.args.iter().collect();
        self.primitive(&name, &args, &exprs, c)
    }

    pub(super) fn unknown_function<T>(
        &mut self,
        at: &syn::ExprPath,
        path: &str,
        name: &str,
    ) -> Option<T> {
        let user: Vec<String> = self
            .sig
            .primitives
            .iter()
            .map(|pd| pd.name.to_string())
            .collect();
        let candidates = crate::ir::builtins::Builtin::ALL
            .iter()
            .map(|b| b.name())
            .chain(user.iter().map(String::as_str));
        let hint = suggestion(name, candidates);
        self.err_at(
            at,
            format!("unknown function `{path}`{hint}: a #[fold] body may call the primitives of fold_runtime::ops ({}) and user primitives; to use a function of your own, implement `fold_runtime::Primitive` for it and list it in `primitives({name})`", crate::ir::builtins::Builtin::names()),
        )
    }

    pub(super) fn check_args(
        &mut self,
        name: &str,
        args: &[Id],
        exprs: &[&Expr],
        call: &syn::ExprCall,
        kinds: &[&[Kind]],
    ) -> Option<()> {
        if args.len() != kinds.len() {
            let wanted: Vec<&str> = kinds.iter().map(|k| kind_word(k)).collect();
            return self.err_at(
                call,
                format!(
                    "`{name}` takes {} argument(s) ({}), found {}",
                    kinds.len(),
                    wanted.join(", "),
                    args.len()
                ),
            );
        }
        let mut ok = true;
        for (i, allowed) in kinds.iter().enumerate() {
            let k = self.kind(args[i]);
            if !allowed.contains(&k) {
                self.errors.push_spanned(
                    exprs[i],
                    format!(
                        "argument {} of `{name}` must be {}; this is {}",
                        i + 1,
                        kind_list(allowed),
                        k.describe()
                    ),
                );
                ok = false;
            }
        }
        ok.then_some(())
    }

    pub(super) fn primitive(
        &mut self,
        name: &str,
        args: &[Id],
        exprs: &[&Expr],
        call: &syn::ExprCall,
    ) -> Option<Val> {
        use crate::ir::builtins::Builtin as B;
        // `call` passes only builtin names here.
        let Some(b) = B::from_name(name) else {
            return self.err_at(
                call,
                format!(
                    "unknown function `{name}`; {}",
                    crate::ir::builtins::supported()
                ),
            );
        };
        self.check_args(name, args, exprs, call, b.args())?;
        let id = match b {
            B::Exp => self.g.add(Node::Exp(args[0])),
            B::Ln => self.g.add(Node::Ln(args[0])),
            B::Sin => self.g.add(Node::Sin(args[0])),
            B::Cos => self.g.add(Node::Cos(args[0])),
            B::Tanh => self.g.add(Node::Tanh(args[0])),
            B::Sigmoid => self.g.add(Node::Sigmoid(args[0])),
            B::Sqrt => self.g.add(Node::Sqrt(args[0])),
            B::Abs => self.g.add(Node::Abs(args[0])),
            B::Relu | B::ProjNonneg => self.g.add(Node::Relu(args[0])),
            B::Softplus => self.g.add(Node::Softplus(args[0])),
            B::Max => self.g.add(Node::Max([args[0], args[1]])),
            B::Min => self.g.add(Node::Min([args[0], args[1]])),
            B::SoftThreshold => self.g.add(Node::SoftThreshold([args[0], args[1]])),
            B::Clamp | B::ProjBox => self.g.add(Node::Clamp([args[0], args[1], args[2]])),
            B::Softmax => self.g.add(Node::Softmax(args[0])),
            B::LogSumExp => self.g.add(Node::LogSumExp(args[0])),
            B::ProjSimplex => self.g.add(Node::ProjSimplex([args[0], args[1]])),
            B::ProjCappedSimplex => self.g.add(Node::ProjCappedSimplex([args[0], args[1]])),
            B::ProjL2Ball => self.g.add(Node::ProjL2Ball([args[0], args[1]])),
            B::ProjHyperplane => {
                // v − a (aᵀv − b)/‖a‖², written out so that its derivative is symbolic.
                let (v, a, b) = (args[0], args[1], args[2]);
                let d = self.g.add(Node::Dot([a, v]));
                let num = self.g.sub(d, b);
                let den = self.g.add(Node::NormSq(a));
                let t = self.g.div(num, den);
                let step = self.g.mul(t, a);
                self.g.sub(v, step)
            }
            B::Linsolve => self.g.add(Node::Solve([args[0], args[1]])),
            B::ProjAffine => {
                // v − Aᵀ (AAᵀ)⁻¹ (Av − b), written out likewise.
                let (v, a, b) = (args[0], args[1], args[2]);
                let av = self.g.add(Node::MatVec([a, v]));
                let res = self.g.sub(av, b);
                let at = self.g.transpose(a);
                let gram = self.g.add(Node::MatMul([a, at]));
                let sol = self.g.add(Node::Solve([gram, res]));
                let corr = self.g.add(Node::MatVec([at, sol]));
                self.g.sub(v, corr)
            }
            B::ProjPolyhedron | B::QpSolve => {
                let call = self.g.add(Node::Call(Symbol::from(name), args.to_vec()));
                let mut outs = Vec::new();
                let n = b.opaque().map_or(1, |o| o.outputs());
                for i in 0..n {
                    let idx = self.scalar(i as f64);
                    outs.push(Val::Term(self.g.add(Node::Get([call, idx]))));
                }
                return Some(if n == 1 {
                    outs.remove(0)
                } else {
                    Val::Tuple(outs)
                });
            }
        };
        Some(Val::Term(id))
    }
}
