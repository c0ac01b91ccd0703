//! The asset graph: definitions validated into a DAG on petgraph. Duplicate keys, unknown deps
//! (with the nearest existing key suggested) and cycles (with the cycle's path) are refused.
//!
//! Pure: no IO.
