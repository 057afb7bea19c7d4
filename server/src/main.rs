//! `tandem`: the server binary. The durable engine (issue "Durable account actors") and the
//! gRPC/HTTP server (issue "The Tandem server") fill this in; until then it says so plainly
//! instead of pretending to serve.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "tandem {}: the server is not built yet; the pure authorization core (crate tandem-core) is. \
         Run the test suite with: cargo test --workspace --all-targets",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
