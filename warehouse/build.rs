//! Provides the prebuilt libduckdb.so (DuckDB 1.5.6) that libduckdb-sys links against:
//! `scripts/ensure-libduckdb` fetches it once into ~/.cache/orch/libduckdb (or
//! ORCH_LIBDUCKDB_DIR), and this copies it next to the binaries of the build
//! (`target/<profile>/` and `target/<profile>/deps/`), where cargo's test runners and the
//! `orch` binary (rpath `$ORIGIN`) find it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=ORCH_LIBDUCKDB_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let script = manifest.join("../scripts/ensure-libduckdb");
    println!("cargo:rerun-if-changed={}", script.display());
    let out = Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} to find libduckdb: {e}", script.display()));
    if !out.status.success() {
        panic!(
            "{} failed (it fetches DuckDB's libduckdb.so from the npm registry; or set ORCH_LIBDUCKDB_DIR to a folder holding DuckDB 1.5.6's libduckdb.so):\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let lib = dir.join("libduckdb.so");
    assert!(lib.is_file(), "{} is missing", lib.display());
    println!("cargo:rerun-if-changed={}", lib.display());

    // OUT_DIR is target/<profile>/build/<crate>-<hash>/out.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    let profile = out_dir
        .ancestors()
        .nth(3)
        .expect("OUT_DIR is below the profile directory")
        .to_path_buf();
    for dest in [profile.join("deps"), profile.clone()] {
        copy_if_changed(&lib, &dest);
    }
    println!(
        "cargo:rustc-link-search=native={}",
        profile.join("deps").display()
    );
}

fn copy_if_changed(lib: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).expect("create the profile directory");
    let dest = dir.join("libduckdb.so");
    let same = match (std::fs::metadata(lib), std::fs::metadata(&dest)) {
        (Ok(a), Ok(b)) => a.len() == b.len() && a.modified().ok() <= b.modified().ok(),
        _ => false,
    };
    if !same {
        // Copy then rename: a test running in parallel never loads half a library.
        let partial = dir.join(format!("libduckdb.so.{}.partial", std::process::id()));
        std::fs::copy(lib, &partial).expect("copy libduckdb.so");
        std::fs::rename(&partial, &dest).expect("move libduckdb.so into place");
    }
}
