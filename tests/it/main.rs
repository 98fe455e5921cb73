//! The one integration-test binary (STYLE.md rule 12): every test starts what it needs
//! in-process on port 0, or spawns the real `sabot` binary where a test kills it.

mod alter;
mod catalog;
mod changes;
mod differential;
mod durability;
mod epochs;
mod event_time;
mod functions;
mod fuzz;
mod hardening;
mod harness;
mod indexes;
mod introspection;
mod joins;
mod over_windows;
mod protocol;
mod robustness;
mod security;
mod slt;
mod sources;
mod transactions;
mod uniques;
mod views;
