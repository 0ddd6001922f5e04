//! Validates every WGSL shader variant with naga so that a shader error fails
//! `cargo build` with its file and line.

use std::collections::HashMap;
use std::path::Path;

#[path = "src/kernels/preprocess.rs"]
mod preprocess;
#[path = "src/kernels/variants.rs"]
mod variants;

fn main() {
    println!("cargo:rerun-if-changed=shaders");
    println!("cargo:rerun-if-changed=src/kernels/variants.rs");
    let mut sources = HashMap::new();
    for entry in std::fs::read_dir("shaders").expect("shaders/ exists") {
        let path = entry.expect("readable shaders/").path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            sources.insert(name, std::fs::read_to_string(&path).expect("readable shader"));
        }
    }
    let lookup = |name: &str| sources.get(name).map(String::as_str);
    let mut failures = Vec::new();
    for (shader, defines) in variants::all_variants() {
        if let Err(message) = validate(shader, &defines, &lookup) {
            failures.push(format!("shaders/{shader} with {defines:?}:\n{message}"));
        }
    }
    for (name, _) in sources.iter().filter(|(name, _)| !variants::is_known_shader(name)) {
        failures.push(format!("{}: not listed in src/kernels/variants.rs", Path::new("shaders").join(name).display()));
    }
    if !failures.is_empty() {
        panic!("WGSL validation failed:\n{}", failures.join("\n\n"));
    }
}

fn validate<'a>(
    shader: &str,
    defines: &[&'static str],
    lookup: &dyn Fn(&str) -> Option<&'a str>,
) -> Result<(), String> {
    let expanded = preprocess::expand(shader, defines, variants::SHADER_CONSTANTS, lookup)?;
    let origin = |line: usize| {
        expanded.origins.get(line.saturating_sub(1)).map(|(f, l)| format!("shaders/{f}:{l}")).unwrap_or_default()
    };
    let module = naga::front::wgsl::parse_str(&expanded.text).map_err(|e| {
        let at = e.location(&expanded.text).map(|l| origin(l.line_number as usize)).unwrap_or_default();
        format!("{at}: {}", e.emit_to_string(&expanded.text))
    })?;
    let mut validator =
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all());
    validator.validate(&module).map_err(|e| {
        let at = e.location(&expanded.text).map(|l| origin(l.line_number as usize)).unwrap_or_default();
        format!("{at}: {}", e.emit_to_string(&expanded.text))
    })?;
    Ok(())
}
