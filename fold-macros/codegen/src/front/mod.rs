//! The front end: the attribute and the signature parsed and validated, the body lowered
//! to typed IR terms. Every rejection carries a span.

pub mod attr;
pub mod lower;
pub mod signature;
