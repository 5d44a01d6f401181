//! Schema: what a migration did to the tables and indexes, and what it should have done.
//!
//! Owns the index reports (`find_unused_indexes()`, duplicates, invalid builds), the migration
//! expectations (`expect_migration()` and its assert) and the schema baselines.

pub mod baselines;
pub mod indexes;
pub mod migrations;
