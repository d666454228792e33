//! The PostgreSQL store against a real PostgreSQL (see `harness` for the
//! environment that turns these on): the conformance suite on both
//! backends, a fleet of replicas on one store, what happens when the
//! connection or the server goes away, and moving data in and out.

mod chaos;
mod conformance;
mod fleet;
mod harness;
mod transfer;
