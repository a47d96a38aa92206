//! The `keyledger` binary: thin over the library.
fn main() -> std::process::ExitCode {
    keyledger::cli::main()
}
