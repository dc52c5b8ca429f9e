//! The `dwlth` command-line tool's commands, callable from Rust as well.

pub mod analyze;
pub mod cluster;
pub mod data;
pub mod demo;
pub mod eval;
pub mod import;
pub mod jobs;
pub mod predict;
pub mod prune;
pub mod run;
pub mod train;
