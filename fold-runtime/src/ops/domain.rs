//! Domain-checked variants of the kinked primitives and of the masks in their
//! derivatives. Generated code calls these wherever it evaluates a primitive *or*
//! linearizes it (`solve`, `linearize`, `backward`, `jacobians`), so an invalid argument
//! (`lo > hi`, a negative threshold) is the same `PrimitiveFailed` everywhere, never a
//! number. They check the scalar arguments only (`NonFinite` for a NaN one); the
//! operand's finiteness is checked where generated code produces it. (`proj_simplex`, `proj_capped_simplex` and `proj_l2_ball` are checked by their
//! `try_` functions, whose values every derivative of theirs reads.)

use super::Mapped;
use crate::FoldError;

fn check_box(lo: f64, hi: f64) -> Result<(), FoldError> {
    if lo.is_nan() || hi.is_nan() {
        return Err(FoldError::non_finite("clamp: bounds"));
    }
    // Infinite bounds are fine on their own side (`clamp(v, 0, ∞)` is relu); a box
    // that admits only ±∞ is empty.
    if lo > hi || lo == f64::INFINITY || hi == f64::NEG_INFINITY {
        return Err(FoldError::primitive(
            "clamp",
            format!("infeasible: lo = {lo} > hi = {hi}"),
        ));
    }
    Ok(())
}

fn check_threshold(t: f64) -> Result<(), FoldError> {
    if t.is_nan() {
        return Err(FoldError::non_finite("soft_threshold: t"));
    }
    if t < 0.0 {
        return Err(FoldError::primitive(
            "soft_threshold",
            format!("threshold t = {t} is negative"),
        ));
    }
    Ok(())
}

/// [`super::clamp`] (and `proj_box`), `PrimitiveFailed` when `lo > hi`.
pub fn clamp<T: Mapped>(v: T, lo: f64, hi: f64) -> Result<T::Output, FoldError> {
    check_box(lo, hi)?;
    Ok(super::clamp(v, lo, hi))
}

/// [`super::soft_threshold`], `PrimitiveFailed` when `t < 0`.
pub fn soft_threshold<T: Mapped>(v: T, t: f64) -> Result<T::Output, FoldError> {
    check_threshold(t)?;
    Ok(super::soft_threshold(v, t))
}

/// [`super::mask::between`], the derivative mask of `clamp(v, lo, hi)`:
/// `PrimitiveFailed` when `lo > hi`.
pub fn between<T: Mapped>(v: T, lo: f64, hi: f64) -> Result<T::Output, FoldError> {
    check_box(lo, hi)?;
    Ok(super::mask::between(v, lo, hi))
}

/// [`super::mask::outside`], the derivative mask of `soft_threshold(v, t)`:
/// `PrimitiveFailed` when `t < 0`.
pub fn outside<T: Mapped>(v: T, t: f64) -> Result<T::Output, FoldError> {
    check_threshold(t)?;
    Ok(super::mask::outside(v, t))
}
