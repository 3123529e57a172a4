//! Linear solvers for `(I − Φᵀ) w = g`, one file per method.
