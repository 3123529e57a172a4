//! Fold layers inside deep-learning frameworks, each behind a cargo feature.

#[cfg(feature = "candle")]
pub mod candle;
