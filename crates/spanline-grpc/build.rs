//! Compiles `proto/spanline/worker/v1/worker.proto` with a vendored `protoc`
//! (no system package needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    println!("cargo:rerun-if-changed=proto/spanline/worker/v1/worker.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".")
        .compile_with_config(
            config,
            &["proto/spanline/worker/v1/worker.proto"],
            &["proto"],
        )?;
    Ok(())
}
