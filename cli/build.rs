//! The `orch` binary links DuckDB's shared library (see `warehouse/build.rs`, which copies
//! `libduckdb.so` next to it): look for it beside the binary first.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg-bins=-Wl,-rpath,$ORIGIN");
}
