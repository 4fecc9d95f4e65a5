//! Rewrites the model-dependent blocks of `openapi.yaml` from a model directory (see
//! `secure_ml_core::openapi`). `make train`, `make import-model` and `make openapi` run it.
//!
//! ```text
//! openapi-model [--model-dir model-artifacts] [--openapi openapi.yaml] [--out FILE] [--check]
//! ```
//!
//! `--out` writes the result elsewhere (default: back into `--openapi`, only when it changes);
//! `--check` writes nothing and fails when the document is not what the model implies.

use std::path::PathBuf;
use std::process::ExitCode;

use secure_ml_core::model::ServedModel;

struct Args {
    model_dir: PathBuf,
    openapi: PathBuf,
    out: Option<PathBuf>,
    check: bool,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        model_dir: PathBuf::from("model-artifacts"),
        openapi: PathBuf::from("openapi.yaml"),
        out: None,
        check: false,
    };
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .map(PathBuf::from)
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.to_str() {
            Some("--model-dir") => args.model_dir = value("--model-dir")?,
            Some("--openapi") => args.openapi = value("--openapi")?,
            Some("--out") => args.out = Some(value("--out")?),
            Some("--check") => args.check = true,
            Some("-h" | "--help") => {
                return Err(
                    "usage: openapi-model [--model-dir DIR] [--openapi FILE] [--out FILE] [--check]"
                        .to_owned(),
                );
            }
            _ => return Err(format!("unknown argument {arg:?} (try --help)")),
        }
    }
    Ok(args)
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|err| format!("cannot read {}: {err}", path.display()))
}

fn run() -> Result<String, String> {
    let args = args()?;
    let manifest_path = args.model_dir.join(tree_model::MANIFEST_FILE);
    let manifest = String::from_utf8(read(&manifest_path)?)
        .map_err(|_| format!("{} is not UTF-8", manifest_path.display()))?;
    let file = tree_model::Manifest::from_json(manifest.as_bytes())
        .map_err(|err| format!("{}: {err}", manifest_path.display()))?
        .file;
    let artifact = read(&args.model_dir.join(file))?;
    let model = ServedModel::load(&artifact, &manifest).map_err(|err| err.to_string())?;
    let document = String::from_utf8(read(&args.openapi)?)
        .map_err(|_| format!("{} is not UTF-8", args.openapi.display()))?;
    let rendered =
        secure_ml_core::openapi::render(&document, &model).map_err(|err| err.to_string())?;
    let out = args.out.unwrap_or_else(|| args.openapi.clone());
    let current = std::fs::read_to_string(&out).unwrap_or_default();
    if rendered == current {
        return Ok(format!(
            "{}: up to date with {}",
            out.display(),
            manifest_path.display()
        ));
    }
    if args.check {
        return Err(format!(
            "{} is out of date with {}: run `make openapi`",
            out.display(),
            manifest_path.display()
        ));
    }
    std::fs::write(&out, rendered)
        .map_err(|err| format!("cannot write {}: {err}", out.display()))?;
    Ok(format!(
        "{}: wrote the schemas and examples of {} {}",
        out.display(),
        model.manifest().name,
        model.version()
    ))
}

fn main() -> ExitCode {
    match run() {
        Ok(message) => {
            println!("openapi-model: {message}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("openapi-model: error: {message}");
            ExitCode::FAILURE
        }
    }
}
