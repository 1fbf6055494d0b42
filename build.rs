//! Compiles `proto/` into Rust with no system `protoc`: protox parses the
//! files in pure Rust and tonic-prost-build generates the code. `bytes`
//! fields become `bytes::Bytes`, so record payloads are never copied.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    // Storage depends on this crate for the codec alone; it needs no gRPC.
    if std::env::var_os("CARGO_FEATURE_GRPC").is_none() {
        return Ok(());
    }
    let mut files = Vec::new();
    collect_protos(PathBuf::from("proto"), &mut files)?;
    files.sort();
    let fds = protox::compile(&files, ["proto"])?;
    // The descriptor set serves gRPC reflection, so tools need no .proto files.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("carteiro_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure().bytes(".").compile_fds(fds)?;
    Ok(())
}

fn collect_protos(dir: PathBuf, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
