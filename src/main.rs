//! The `switchyard` binary: everything lives in the library; see `switchyard::cli`.

fn main() -> std::process::ExitCode {
    switchyard::cli::main()
}
