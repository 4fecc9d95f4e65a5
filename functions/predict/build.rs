//! Refuses to build the prediction function when the model artifact does not match the sha256
//! recorded in its manifest, and hands both files' paths to `include_bytes!`.
//!
//! The model directory is `model-artifacts/`, or the one `MODEL_ARTIFACTS_DIR` names (absolute,
//! or relative to the repository root): a build against another model, for instance the
//! end-to-end check of an imported model (`scripts/model_e2e.sh`), without touching the
//! committed one.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

fn main() -> Result<(), String> {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let root = crate_dir.join("../..");
    println!("cargo:rerun-if-env-changed=MODEL_ARTIFACTS_DIR");
    let artifacts = match std::env::var_os("MODEL_ARTIFACTS_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("model-artifacts"),
    };
    let manifest_path = artifacts.join("manifest.json");
    println!("cargo:rerun-if-changed={}", manifest_path.display());

    let manifest_text = std::fs::read_to_string(&manifest_path)
        .map_err(|e| format!("cannot read {}: {e}", manifest_path.display()))?;
    let manifest: serde_json::Value = serde_json::from_str(&manifest_text)
        .map_err(|e| format!("{} is not JSON: {e}", manifest_path.display()))?;
    let (Some(file), Some(expected)) = (manifest["file"].as_str(), manifest["sha256"].as_str())
    else {
        return Err(format!(
            "{} lacks the `file` or `sha256` field",
            manifest_path.display()
        ));
    };
    // The manifest names a file inside its own directory, nothing else.
    if file.contains('/') || file.contains('\\') || file.starts_with('.') {
        return Err(format!(
            "manifest field `file` must be a plain file name, got {file:?}"
        ));
    }
    let artifact_path = artifacts.join(file);
    println!("cargo:rerun-if-changed={}", artifact_path.display());
    let bytes = std::fs::read(&artifact_path)
        .map_err(|e| format!("cannot read {}: {e}", artifact_path.display()))?;
    let actual = hex(&Sha256::digest(&bytes));
    if actual != expected {
        return Err(format!(
            "model artifact {} has sha256 {actual}, but its manifest.json records {expected}: \
             retrain with `make train`, re-import with `make import-model`, or restore the \
             committed artifact",
            artifact_path.display()
        ));
    }
    let canonical = artifact_path.canonicalize().map_err(|e| e.to_string())?;
    println!(
        "cargo:rustc-env=MODEL_ARTIFACT_PATH={}",
        canonical.display()
    );
    println!(
        "cargo:rustc-env=MODEL_MANIFEST_PATH={}",
        manifest_path
            .canonicalize()
            .map_err(|e| e.to_string())?
            .display()
    );
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
