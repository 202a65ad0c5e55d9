//! ward-policy: IAM-style JSON policies compiled into a pure evaluator.
//!
//! The crate does no I/O and reads no clock: the whole request context, the
//! current time included, is an input, so every decision is reproducible
//! (the same design rule as quinn-proto). It depends on no other ward crate.

mod error;

pub use error::Error;
