//! Validates every WGSL shader variant with naga so that a shader error fails
//! `cargo build` with its file and line, and writes each uniform struct's WGSL layout into
//! a compile-time check of the Rust struct written into it (src/kernels/uniform.rs).

use std::collections::BTreeSet;

#[path = "src/kernels/preprocess.rs"]
mod preprocess;
#[path = "src/kernels/variants.rs"]
mod variants;
// The weight block, where variants.rs finds it in the library.
#[path = "src/format/block.rs"]
mod format;

use variants::{Role, Shader, ShaderUniform};

fn main() {
    println!("cargo:rerun-if-changed=shaders");
    println!("cargo:rerun-if-changed=src/kernels/variants.rs");
    println!("cargo:rerun-if-changed=src/format/block.rs");
    let mut failures = Vec::new();
    let mut checks = BTreeSet::new();
    for (shader, defines) in variants::all_variants() {
        match validate(shader, &defines).and_then(|module| uniform_checks(shader, &module)) {
            Ok(module_checks) => checks.extend(module_checks),
            Err(message) => failures.push(format!("shaders/{} with {defines:?}:\n{message}", shader.file())),
        }
    }
    // The registry's `include_str!` fails the build on a listed file that is missing; this
    // catches the other way round.
    for entry in std::fs::read_dir("shaders").expect("shaders/ exists") {
        let path = entry.expect("readable shaders/").path();
        let file = path.file_name().unwrap().to_string_lossy();
        if path.extension().is_some_and(|e| e == "wgsl") && Shader::from_file(&file).is_none() {
            failures.push(format!("{}: not in the registry in src/kernels/variants.rs", path.display()));
        }
    }
    if !failures.is_empty() {
        panic!("WGSL validation failed:\n{}", failures.join("\n\n"));
    }
    let out = std::path::Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("uniform_checks.rs");
    let checks: Vec<String> = checks.into_iter().collect();
    std::fs::write(&out, checks.join("\n")).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}

fn validate(shader: Shader, defines: &[&'static str]) -> Result<naga::Module, String> {
    let source = |file: &str| Shader::from_file(file).map(Shader::source);
    let expanded = preprocess::expand(shader.file(), defines, variants::SHADER_CONSTANTS, &source)?;
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
    Ok(module)
}

/// The checks (src/kernels/uniform.rs) that every uniform buffer struct of `module` has the
/// layout of its Rust struct: `shader`'s own uniform or an included file's.
fn uniform_checks(shader: Shader, module: &naga::Module) -> Result<Vec<String>, String> {
    let mut checks = Vec::new();
    for (_, global) in module.global_variables.iter() {
        if global.space != naga::AddressSpace::Uniform {
            continue;
        }
        let ty = &module.types[global.ty];
        let name = ty.name.clone().unwrap_or_default();
        let naga::TypeInner::Struct { members, span } = &ty.inner else {
            return Err(format!("uniform {:?} is not a struct", global.name));
        };
        let (owner, ShaderUniform { rust_type, .. }) = Shader::ALL
            .iter()
            .filter(|s| **s == shader || s.role() == Role::Include)
            .find_map(|s| s.uniform().filter(|uniform| uniform.wgsl_struct == name).map(|uniform| (s, uniform)))
            .ok_or_else(|| format!("uniform struct {name} is not in the registry (src/kernels/variants.rs)"))?;
        let mut fields = Vec::new();
        let mut described = Vec::new();
        for member in members {
            let inner = &module.types[member.ty].inner;
            let kind = inner.scalar().map_or("?", |s| match s.kind {
                naga::ScalarKind::Uint => "u32",
                naga::ScalarKind::Sint => "i32",
                naga::ScalarKind::Float => "f32",
                _ => "?",
            });
            let (field, offset, size) =
                (member.name.clone().unwrap_or_default(), member.offset, inner.size(module.to_ctx()));
            fields.push(format!("Field {{ name: {field:?}, offset: {offset}, size: {size}, kind: {kind:?} }}"));
            described.push(format!("{field}: {kind} at {offset}"));
        }
        let message = format!(
            "uniform struct {name} in shaders/{} differs from {rust_type}, the Rust struct its line in \
             src/kernels/variants.rs names: the WGSL has {} ({span} bytes)",
            owner.file(),
            described.join(", ")
        );
        checks.push(format!(
            "const _: () = assert!(matches::<super::{rust_type}>(&[{}], {span}), {message:?});",
            fields.join(", ")
        ));
    }
    Ok(checks)
}
