//! Policies that more than one capability applies, each written once: which queries the extension
//! may run for a user (the read-only guard), what counts as an application object, what an
//! invalid index is and how to mend it, and how a name a user typed is found in the catalog.

pub mod app_objects;
pub mod invalid_indexes;
pub mod names;
pub mod query_guard;
