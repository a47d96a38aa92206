//! The `keyledger` CLI, built in the test package so tests can spawn it as a process.
fn main() -> std::process::ExitCode {
    keyledger::cli::main()
}
