//! One module per subcommand: argument structs and a `run` that calls into
//! the crates. Nothing here should be more than glue.

pub mod agent;
pub mod audit;
pub mod ca;
pub mod connect;
pub mod gateway;
pub mod policy;
pub mod up;
