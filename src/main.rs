//! The `bahinlink` binary; everything lives in the library so that tests can build it.

fn main() -> std::process::ExitCode {
    bahinlink::cli::main()
}
