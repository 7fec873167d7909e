//! The `infomax` command line (placeholder until the CLI lands).
fn main() {
    eprintln!("infomax: the CLI is not built yet");
    std::process::exit(2);
}
