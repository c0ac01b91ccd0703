//! Asset selection, compatible with Dagster's CLI syntax: `key`, `+key`, `key+`, `++key`,
//! `*key`, `key*`, `group:NAME`, `tag:K=V`, `kind:K`, and `,` for union.
//!
//! Pure: no IO.
