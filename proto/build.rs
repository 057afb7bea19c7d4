//! Generates the `tandem.v1` messages and services (and the peer protocol, `tandem.raft.v1`) with a vendored `protoc`, so a fresh
//! machine needs nothing installed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("tandem_descriptor.bin"))
        // The HTTP/JSON contract is these same messages: one vocabulary for both protocols.
        .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .message_attribute(".", "#[serde(default)]")
        .compile_with_config(config, &["proto/tandem/v1/tandem.proto"], &["proto"])?;
    // The peer protocol: its own package, not part of the client contract.
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/tandem/raft/v1/raft.proto"],
        &["proto"],
    )?;
    Ok(())
}
