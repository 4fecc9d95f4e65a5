//! Compiles the vendored `proto/onnx-ml.proto` into Rust types (`$OUT_DIR/onnx.rs`) with protox
//! and prost-build: no system `protoc`, and the same types on every machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx-ml.proto");
    let descriptors = protox::compile(["onnx-ml.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
