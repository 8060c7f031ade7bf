//! Embeds every SQL file of `migrations/` into the binary.
//!
//! The list is generated here rather than with a macro so that adding a migration file is
//! picked up by the next `cargo build` without `cargo clean`: cargo re-runs this script
//! whenever anything in the directory changes.

use std::{env, fmt::Write as _, fs, path::Path};

fn main() {
    let dir = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("set by cargo")).join("migrations");
    println!("cargo:rerun-if-changed={}", dir.display());

    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
        .collect();
    files.sort();

    let mut out = String::from("/// (file name, SQL) of every migration, in version order.\n");
    out.push_str("pub(crate) static EMBEDDED_MIGRATIONS: &[(&str, &str)] = &[\n");
    for path in &files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("UTF-8 file name");
        let (version, rest) = name
            .split_once('_')
            .unwrap_or_else(|| panic!("migration {name}: expected <version>_<description>.sql"));
        assert!(
            !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) && !rest.is_empty(),
            "migration {name}: expected <version>_<description>.sql with a numeric version"
        );
        writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .expect("write to String");
    }
    out.push_str("];\n");
    let dest = Path::new(&env::var("OUT_DIR").expect("set by cargo")).join("migrations.rs");
    fs::write(dest, out).expect("write generated migrations list");
}
