//! The generated Rust of `#[fold]` against the IR interpreter (issue 3, item 5).
//!
//! Each rule is written once, inside `fold_rule!`, which both applies `#[fold]` (through
//! the proc macro, as a user would) and keeps the rule's text for
//! `fold_codegen::rule::analyze`, so the interpreter evaluates exactly the compiled rule.
//! On random inputs the forward step, `linearize(..)`'s `vjp_state`/`jvp_state`/
//! `vjp_params`/`jvp_params` and `jacobians(..)` must agree with the interpreter's
//! primal, VJP and JVP terms (Jacobians: the interpreter's JVP columns) to ~1e-12.

use fold_codegen::interp::{Interpreter, Value as IValue};
use fold_codegen::ir::Node;
use fold_codegen::rule::{self, Rule};
use fold_runtime::prelude::*;
use std::collections::{HashMap, HashSet};
use syn::visit::Visit;

/// What a rule's generated code computes at one point.
#[derive(Debug)]
struct Outputs {
    /// The forward step (blocks concatenated).
    step: Vec<f64>,
    /// `Φᵀv`.
    vjp_state: Vec<f64>,
    /// `Ψ_θᵀv` per parameter (column-major entries).
    vjp_params: Vec<Vec<f64>>,
    /// `Φu`.
    jvp_state: Vec<f64>,
    /// `Ψδθ`.
    jvp_params: Vec<f64>,
    /// `Φ`.
    phi: DMatrix<f64>,
    /// `Ψ_θ` per parameter.
    psi: Vec<DMatrix<f64>>,
}

/// Rust arguments from interpreter values.
trait FromValue<'a> {
    fn from_value(v: &'a IValue) -> Self;
}

impl FromValue<'_> for f64 {
    fn from_value(v: &IValue) -> f64 {
        v.scalar().expect("a scalar argument")
    }
}

impl<'a> FromValue<'a> for &'a DVector<f64> {
    fn from_value(v: &'a IValue) -> Self {
        v.vector().expect("a vector argument")
    }
}

impl<'a> FromValue<'a> for &'a DMatrix<f64> {
    fn from_value(v: &'a IValue) -> Self {
        v.matrix().expect("a matrix argument")
    }
}

impl FromValue<'_> for DVector<f64> {
    fn from_value(v: &IValue) -> Self {
        v.vector().expect("a vector").clone()
    }
}

impl FromValue<'_> for DMatrix<f64> {
    fn from_value(v: &IValue) -> Self {
        v.matrix().expect("a matrix").clone()
    }
}

/// Entries (column-major) of generated values.
trait Entries {
    fn entries(&self) -> Vec<f64>;
}

impl Entries for f64 {
    fn entries(&self) -> Vec<f64> {
        vec![*self]
    }
}

impl Entries for DVector<f64> {
    fn entries(&self) -> Vec<f64> {
        self.as_slice().to_vec()
    }
}

impl Entries for DMatrix<f64> {
    fn entries(&self) -> Vec<f64> {
        self.as_slice().to_vec()
    }
}

impl Entries for (DVector<f64>, DVector<f64>) {
    fn entries(&self) -> Vec<f64> {
        let mut e = self.0.entries();
        e.extend(self.1.entries());
        e
    }
}

/// `fold_rule! { module(args…; params…) #[fold(…)] fn name(…) -> … { … } }` applies
/// `#[fold]` to the function inside `mod module`, and beside it defines `SOURCE` (the
/// attribute and the function as text, for the interpreter) and `generated(..)`, which
/// runs the generated code at a point. The header repeats the argument and parameter
/// names (macro_rules cannot split types at commas); `check` verifies it against the
/// analyzed rule.
macro_rules! fold_rule {
    (
        $module:ident($($arg:ident),*; $($param:ident),*)
        $(#[doc = $doc:literal])*
        #[fold($($attr:tt)*)]
        fn $name:ident $($rest:tt)*
    ) => {
        mod $module {
            use super::*;

            $(#[doc = $doc])*
            #[fold($($attr)*)]
            fn $name $($rest)*

            pub const SOURCE: Source = Source {
                attr: stringify!($($attr)*),
                func: stringify!(fn $name $($rest)*),
                args: &[$(stringify!($arg)),*],
                params: &[$(stringify!($param)),*],
            };

            pub fn generated(a: &[IValue], v: &DVector<f64>, u: &DVector<f64>, dth: &[IValue]) -> Outputs {
                // Arguments in order, each converted to the type the signature asks for.
                macro_rules! call {
                    ($f:path) => {{
                        let mut it = a.iter();
                        $f($({
                            let _ = stringify!($arg);
                            FromValue::from_value(it.next().expect("an argument"))
                        }),*)
                    }};
                }
                let step = call!($name);
                let lin = call!($name::linearize);
                let jac = call!($name::jacobians);
                let grads = Linearized::vjp_params(&lin, v);
                let mut it = dth.iter();
                let dtheta = $name::Grads {
                    $($param: FromValue::from_value(it.next().expect("a parameter tangent")),)*
                };
                let _ = (&grads, &jac, &mut it);
                Outputs {
                    step: Entries::entries(&step),
                    vjp_state: Linearized::vjp_state(&lin, v).as_slice().to_vec(),
                    vjp_params: vec![$(Entries::entries(&grads.$param)),*],
                    jvp_state: Linearized::jvp_state(&lin, u).as_slice().to_vec(),
                    jvp_params: Linearized::jvp_params(&lin, &dtheta).as_slice().to_vec(),
                    phi: jac.state.clone(),
                    psi: vec![$(jac.$param.clone()),*],
                }
            }
        }
    };
}

/// A rule's text, as `fold_rule!` records it.
struct Source {
    attr: &'static str,
    func: &'static str,
    args: &'static [&'static str],
    params: &'static [&'static str],
}

// ---------------------------------------------------------------------------------------
// The rules.
// ---------------------------------------------------------------------------------------

fold_rule! {
    box_qp(x, c, q, alpha; c)
    /// One projected-gradient step for  min ½xᵀQx + cᵀx  s.t.  0 ≤ x ≤ 1.
    #[fold(state = x, params(c))]
    fn pgd_step(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
        let grad = q * x + c;
        proj_box(&(x - grad * alpha), 0.0, 1.0)
    }
}

fold_rule! {
    tanh_layer(z, w, u, theta, b; w, theta, b)
    /// A tanh equilibrium layer  z = tanh(Wz + Uθ + b).
    #[fold(state = z, params(w, theta, b))]
    fn layer(z: &DVector<f64>, w: &DMatrix<f64>, u: &DMatrix<f64>, theta: &DVector<f64>, b: &DVector<f64>) -> DVector<f64> {
        tanh(&(w * z + u * theta + b))
    }
}

fold_rule! {
    mapped(x, a, c, s; a, c)
    /// Elementwise work through `.map` with captured scalars.
    #[fold(state = x, params(a, c))]
    fn smooth_step(x: &DVector<f64>, a: f64, c: &DVector<f64>, s: f64) -> DVector<f64> {
        let y = x - c * a;
        let t = y.norm_squared() * s;
        y.map(|e| e.tanh() * a + (e * e + 1.0).ln() * 0.25 - t.sin() * 0.1)
    }
}

fold_rule! {
    matrix_param(x, q, c, alpha; q, c)
    /// Gradient descent on ½xᵀQx + cᵀx with Q a parameter: x* = −Q⁻¹c.
    #[fold(state = x, params(q, c))]
    fn gd_step(x: &DVector<f64>, q: &DMatrix<f64>, c: &DVector<f64>, alpha: f64) -> DVector<f64> {
        x - (q * x + c) * alpha
    }
}

fold_rule! {
    primal_dual(x, lam, q, a, c, b, eta; c, b)
    /// A primal-dual step for  min ½xᵀQx + cᵀx  s.t.  Ax ≤ b  (two state blocks).
    #[fold(state = (x, lam), params(c, b))]
    fn pd_step(x: &DVector<f64>, lam: &DVector<f64>, q: &DMatrix<f64>, a: &DMatrix<f64>, c: &DVector<f64>, b: &DVector<f64>, eta: f64) -> (DVector<f64>, DVector<f64>) {
        let x1 = x - (q * x + c + a.transpose() * lam) * eta;
        let lam1 = relu(&(lam + (a * &x1 - b) * eta));
        (x1, lam1)
    }
}

fold_rule! {
    simplex(x, q, c, r, alpha; c, r)
    /// Projected gradient onto the simplex of radius r (a parameter).
    #[fold(state = x, params(c, r))]
    fn simplex_step(x: &DVector<f64>, q: &DMatrix<f64>, c: &DVector<f64>, r: f64, alpha: f64) -> DVector<f64> {
        proj_simplex(&(x - (q * x + c) * alpha), r)
    }
}

fold_rule! {
    hyperplane(x, z, a, b, g; a, b)
    /// A two-block rule with a hyperplane projection, a capped simplex and a scalar
    /// exponent.
    #[fold(state = (x, z), params(a, b))]
    fn split_step(x: &DVector<f64>, z: &DVector<f64>, a: &DVector<f64>, b: f64, g: &DMatrix<f64>) -> (DVector<f64>, DVector<f64>) {
        let x1 = proj_hyperplane(&(x + g.transpose() * z * 0.3), a, b);
        let z1 = proj_capped_simplex(&(g * &x1 + z * 0.5), 1.5);
        (x1, z1.map(|e| (e + 1.0).powf(b.abs() + 0.5)))
    }
}

fold_rule! {
    ista(x, a, y, lam, eta; y, lam)
    /// ISTA for the lasso, with the threshold λη depending on a scalar parameter.
    #[fold(state = x, params(y, lam))]
    fn ista_step(x: &DVector<f64>, a: &DMatrix<f64>, y: &DVector<f64>, lam: f64, eta: f64) -> DVector<f64> {
        let g = a.transpose() * (a * x - y);
        soft_threshold(&(x - g * eta), lam * eta)
    }
}

fold_rule! {
    ball_softmax(x, w, c, r; w, r)
    /// A ball projection, a softmax, a log-sum-exp and clamps with parameter bounds.
    #[fold(state = x, params(w, r))]
    fn mixed_step(x: &DVector<f64>, w: &DMatrix<f64>, c: &DVector<f64>, r: f64) -> DVector<f64> {
        let p = softmax(&(w * x + c));
        let l = log_sum_exp(x);
        let y = proj_l2_ball(&(x * 0.5 - p), r);
        clamp(&y, -r, r * 0.8).add_scalar(l * 0.1)
    }
}

// ---------------------------------------------------------------------------------------
// The interpreter side.
// ---------------------------------------------------------------------------------------

/// A deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
}

/// Random values shaped like `like`, entries in `[lo, hi]`.
fn random_like(rng: &mut Rng, like: &IValue, lo: f64, hi: f64) -> IValue {
    let e: Vec<f64> = like.entries().iter().map(|_| rng.uniform(lo, hi)).collect();
    like.with_entries(&e)
}

fn zeros_like(like: &IValue) -> IValue {
    like.with_entries(&vec![0.0; like.entries().len()])
}

/// The interpreter's values of everything `Outputs` holds.
fn interpreted(
    rule: &Rule,
    args: &[IValue],
    v: &DVector<f64>,
    u: &DVector<f64>,
    dth: &[IValue],
) -> Outputs {
    let g = &rule.graph;
    // egg's `Id` and `Symbol` stay inferred: the root package does not depend on egg.
    let sym = |id| match g.node(id) {
        Node::Var(s) => *s,
        other => panic!("a seed or argument is a variable, found {other:?}"),
    };
    let block_lens: Vec<usize> = rule
        .sig
        .blocks
        .iter()
        .map(|&i| args[i].entries().len())
        .collect();
    let param_vals: Vec<&IValue> = rule.sig.params.iter().map(|&i| &args[i]).collect();
    let split = |x: &DVector<f64>| -> Vec<IValue> {
        let mut at = 0;
        block_lens
            .iter()
            .map(|&n| {
                at += n;
                IValue::Vector(DVector::from_column_slice(&x.as_slice()[at - n..at]))
            })
            .collect()
    };
    let mut env = HashMap::new();
    for (i, &id) in rule.args.iter().enumerate() {
        env.insert(sym(id), args[i].clone());
    }
    let bind =
        |env: &mut HashMap<_, IValue>, v: &DVector<f64>, u: &DVector<f64>, dth: &[IValue]| {
            for (&id, val) in rule.seeds.cotangent.iter().zip(split(v)) {
                env.insert(sym(id), val);
            }
            for (&id, val) in rule.seeds.tangent.iter().zip(split(u)) {
                env.insert(sym(id), val);
            }
            for (&id, val) in rule.seeds.param_tangent.iter().zip(dth) {
                env.insert(sym(id), val.clone());
            }
        };
    // Evaluates terms (a `None` is a structural zero of the given length), concatenated.
    let eval = |env: &HashMap<_, IValue>, ids: &[Option<_>], lens: &[usize]| -> Vec<f64> {
        let mut it = Interpreter::new(g, env);
        let mut out = Vec::new();
        for (id, &n) in ids.iter().zip(lens) {
            match id {
                Some(id) => out.extend(it.eval(*id).expect("interpretable").entries()),
                None => out.extend(std::iter::repeat_n(0.0, n)),
            }
        }
        out
    };
    let n: usize = block_lens.iter().sum();
    let param_lens: Vec<usize> = param_vals.iter().map(|p| p.entries().len()).collect();
    let outputs: Vec<Option<_>> = rule.outputs.iter().map(|&o| Some(o)).collect();
    bind(&mut env, v, u, dth);
    let step = eval(&env, &outputs, &block_lens);
    let vjp_state = eval(&env, &rule.vjp_state, &block_lens);
    let vjp_params = rule
        .vjp_params
        .iter()
        .zip(&param_lens)
        .map(|(t, &len)| eval(&env, &[*t], &[len]))
        .collect();
    let jvp_state = eval(&env, &rule.jvp_state, &block_lens);
    let jvp_params = eval(&env, &rule.jvp_params, &block_lens);
    // Dense Jacobians, column by column from the JVP terms.
    let zero_dth: Vec<IValue> = param_vals.iter().map(|p| zeros_like(p)).collect();
    let phi = DMatrix::from_fn(n, n, |_, _| 0.0);
    let mut phi = phi;
    for j in 0..n {
        let mut e = DVector::zeros(n);
        e[j] = 1.0;
        bind(&mut env, v, &e, &zero_dth);
        let col = eval(&env, &rule.jvp_state, &block_lens);
        phi.set_column(j, &DVector::from_vec(col));
    }
    let mut psi = Vec::new();
    for (p, &len) in param_lens.iter().enumerate() {
        let mut m = DMatrix::zeros(n, len);
        for k in 0..len {
            let mut d = zero_dth.clone();
            let mut e = vec![0.0; len];
            e[k] = 1.0;
            d[p] = d[p].with_entries(&e);
            bind(&mut env, v, u, &d);
            let col = eval(&env, &rule.jvp_params, &block_lens);
            m.set_column(k, &DVector::from_vec(col));
        }
        psi.push(m);
    }
    Outputs {
        step,
        vjp_state,
        vjp_params,
        jvp_state,
        jvp_params,
        phi,
        psi,
    }
}

/// Entries of `a` and `b` agree to `tol` relative to the larger magnitude (at least 1).
fn assert_close(what: &str, a: &[f64], b: &[f64], tol: f64, ctx: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ\n{ctx}");
    let scale = a.iter().chain(b).fold(1.0f64, |m, x| m.max(x.abs()));
    let err = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        err <= tol * scale,
        "{what}: generated {a:?}\n  interpreter {b:?}\n  (max error {err:.3e}, scale {scale:.3e})\n{ctx}"
    );
}

/// Generated vs interpreted values to 1e-12, relative.
const TOL: f64 = 1e-12;

/// The generated code run at `(args, v, u, δθ)` (`<module>::generated`).
type Generated = fn(&[IValue], &DVector<f64>, &DVector<f64>, &[IValue]) -> Outputs;

/// Checks `generated` against the interpreter on `trials` random points; `domains`
/// overrides the default input range [-1, 1] for the named arguments.
fn check(
    src: &Source,
    generated: Generated,
    shapes: &[IValue],
    domains: &[(&str, f64, f64)],
    trials: u64,
) {
    let attr = src.attr.parse().expect("the attribute tokenizes");
    let item: syn::ItemFn = syn::parse_str(src.func).expect("the rule parses");
    let rule = rule::analyze(attr, &item).unwrap_or_else(|e| panic!("analyze: {e}"));
    // The header of `fold_rule!` must name the very arguments and parameters.
    let names: Vec<String> = rule.sig.args.iter().map(|a| a.name.to_string()).collect();
    assert_eq!(names, src.args, "fold_rule! header: arguments");
    assert_eq!(
        rule.param_names(),
        src.params,
        "fold_rule! header: parameters"
    );
    assert_eq!(shapes.len(), names.len());
    for trial in 0..trials {
        let mut rng = Rng(0xF01D_0000 + trial);
        let args: Vec<IValue> = names
            .iter()
            .zip(shapes)
            .map(|(name, like)| {
                let (lo, hi) = domains
                    .iter()
                    .find(|(n, _, _)| n == name)
                    .map_or((-1.0, 1.0), |&(_, lo, hi)| (lo, hi));
                random_like(&mut rng, like, lo, hi)
            })
            .collect();
        let n: usize = rule
            .sig
            .blocks
            .iter()
            .map(|&i| args[i].entries().len())
            .sum();
        let v = DVector::from_fn(n, |_, _| rng.uniform(-1.0, 1.0));
        let u = DVector::from_fn(n, |_, _| rng.uniform(-1.0, 1.0));
        let dth: Vec<IValue> = rule
            .sig
            .params
            .iter()
            .map(|&i| random_like(&mut rng, &args[i], -1.0, 1.0))
            .collect();
        let gen = generated(&args, &v, &u, &dth);
        let int = interpreted(&rule, &args, &v, &u, &dth);
        let ctx = format!(
            "rule:\n#[fold({})]\n{}\ntrial {trial}, inputs {args:?}",
            src.attr, src.func
        );
        assert_close("forward step", &gen.step, &int.step, TOL, &ctx);
        assert_close("Φᵀv", &gen.vjp_state, &int.vjp_state, TOL, &ctx);
        for (p, name) in src.params.iter().enumerate() {
            let what = format!("Ψ_{name}ᵀv");
            assert_close(&what, &gen.vjp_params[p], &int.vjp_params[p], TOL, &ctx);
        }
        assert_close("Φu", &gen.jvp_state, &int.jvp_state, TOL, &ctx);
        assert_close("Ψδθ", &gen.jvp_params, &int.jvp_params, TOL, &ctx);
        assert_eq!(gen.phi.shape(), int.phi.shape(), "Φ shape\n{ctx}");
        assert_close(
            "jacobians().state",
            gen.phi.as_slice(),
            int.phi.as_slice(),
            TOL,
            &ctx,
        );
        for (p, name) in src.params.iter().enumerate() {
            assert_eq!(
                gen.psi[p].shape(),
                int.psi[p].shape(),
                "Ψ_{name} shape\n{ctx}"
            );
            let what = format!("jacobians().{name}");
            assert_close(
                &what,
                gen.psi[p].as_slice(),
                int.psi[p].as_slice(),
                TOL,
                &ctx,
            );
        }
    }
}

fn s() -> IValue {
    IValue::Scalar(0.0)
}
fn v(n: usize) -> IValue {
    IValue::Vector(DVector::zeros(n))
}
fn m(r: usize, c: usize) -> IValue {
    IValue::Matrix(DMatrix::zeros(r, c))
}

/// Trials per rule: enough that every mask pattern of the kinked rules occurs.
const TRIALS: u64 = 40;

#[test]
fn box_qp_pgd() {
    // x spans [-0.5, 1.5] so that both bounds of the box are active at times.
    let shapes = [v(5), v(5), m(5, 5), s()];
    let dom = [("x", -0.5, 1.5), ("alpha", 0.1, 0.6)];
    check(&box_qp::SOURCE, box_qp::generated, &shapes, &dom, TRIALS);
}

#[test]
fn tanh_layer() {
    let shapes = [v(4), m(4, 4), m(4, 3), v(3), v(4)];
    check(
        &tanh_layer::SOURCE,
        tanh_layer::generated,
        &shapes,
        &[],
        TRIALS,
    );
}

#[test]
fn map_rule() {
    let shapes = [v(5), s(), v(5), s()];
    check(&mapped::SOURCE, mapped::generated, &shapes, &[], TRIALS);
}

#[test]
fn matrix_parameter() {
    let shapes = [v(4), m(4, 4), v(4), s()];
    let dom = [("alpha", 0.1, 0.5)];
    check(
        &matrix_param::SOURCE,
        matrix_param::generated,
        &shapes,
        &dom,
        TRIALS,
    );
}

#[test]
fn two_block_primal_dual() {
    // Three primal variables, two constraints: blocks of different lengths.
    let shapes = [v(3), v(2), m(3, 3), m(2, 3), v(3), v(2), s()];
    let dom = [("lam", -0.3, 1.0), ("eta", 0.1, 0.5)];
    check(
        &primal_dual::SOURCE,
        primal_dual::generated,
        &shapes,
        &dom,
        TRIALS,
    );
}

#[test]
fn simplex_projection() {
    let shapes = [v(5), m(5, 5), v(5), s(), s()];
    let dom = [("r", 0.5, 2.0), ("alpha", 0.1, 0.5)];
    check(&simplex::SOURCE, simplex::generated, &shapes, &dom, TRIALS);
}

#[test]
fn two_block_hyperplane_capped_simplex() {
    let shapes = [v(3), v(4), v(3), s(), m(4, 3)];
    let dom = [("a", 0.5, 1.5)];
    check(
        &hyperplane::SOURCE,
        hyperplane::generated,
        &shapes,
        &dom,
        TRIALS,
    );
}

// ---------------------------------------------------------------------------------------
// Staged fields.
// ---------------------------------------------------------------------------------------

/// Every rule of this file.
const RULES: [&Source; 9] = [
    &box_qp::SOURCE,
    &tanh_layer::SOURCE,
    &mapped::SOURCE,
    &matrix_param::SOURCE,
    &primal_dual::SOURCE,
    &simplex::SOURCE,
    &ista::SOURCE,
    &ball_softmax::SOURCE,
    &hyperplane::SOURCE,
];

/// `self.<field>` reads in a syntax tree.
struct SelfFields(Vec<String>);

impl<'ast> Visit<'ast> for SelfFields {
    fn visit_expr_field(&mut self, f: &'ast syn::ExprField) {
        if let (syn::Expr::Path(p), syn::Member::Named(id)) = (&*f.base, &f.member) {
            if p.path.is_ident("self") {
                self.0.push(id.to_string());
            }
        }
        syn::visit::visit_expr_field(self, f);
    }
}

/// Every `self.<field>` read in the methods of `Staged` is a field `stage()` fills. The
/// ISTA and mixed rules once failed to compile that way (`Staged::jacobians()` and
/// `state_jacobian()` read `self.w4`/`self.w16`); this finds it without a compiler.
#[test]
fn staged_methods_read_only_staged_fields() {
    let mut missing = Vec::new();
    for src in RULES {
        let (attr, func) = (src.attr, src.func);
        let item = func.parse().expect("the rule tokenizes");
        let e = fold_codegen::try_expand(attr.parse().expect("the attribute tokenizes"), item)
            .unwrap_or_else(|e| panic!("{e}"));
        let file: syn::File = syn::parse_str(&e.source).expect("SOURCE parses");
        let items: Vec<&syn::Item> = file
            .items
            .iter()
            .flat_map(|it| match it {
                syn::Item::Mod(m) => m.content.iter().flat_map(|(_, c)| c.iter()).collect(),
                other => vec![other],
            })
            .collect();
        let is_staged = |ty: &syn::Type| matches!(ty, syn::Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Staged"));
        let mut fields: HashSet<String> = HashSet::new();
        let mut reads = SelfFields(Vec::new());
        for it in items {
            match it {
                syn::Item::Struct(st) if st.ident == "Staged" => {
                    fields.extend(
                        st.fields
                            .iter()
                            .filter_map(|f| f.ident.as_ref().map(|i| i.to_string())),
                    );
                }
                syn::Item::Impl(im) if is_staged(&im.self_ty) => reads.visit_item_impl(im),
                _ => {}
            }
        }
        for r in reads.0 {
            if !fields.contains(&r) {
                missing.push(format!(
                    "{}: self.{r}",
                    func.split('(').next().unwrap_or(func)
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "Staged methods read fields stage() never computes: {missing:?}"
    );
}

#[test]
fn ista_soft_threshold() {
    let shapes = [v(4), m(3, 4), v(3), s(), s()];
    let dom = [("lam", 0.1, 1.0), ("eta", 0.1, 0.5)];
    check(&ista::SOURCE, ista::generated, &shapes, &dom, TRIALS);
}

#[test]
fn ball_softmax_clamp() {
    let shapes = [v(4), m(4, 4), v(4), s()];
    let dom = [("r", 0.2, 1.0)];
    check(
        &ball_softmax::SOURCE,
        ball_softmax::generated,
        &shapes,
        &dom,
        TRIALS,
    );
}
