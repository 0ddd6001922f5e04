//! Validates every WGSL shader variant with naga so that a shader error fails
//! `cargo build` with its file and line, and checks that each uniform struct's WGSL
//! layout equals the `#[repr(C)]` Rust struct written into it.

#[path = "src/kernels/preprocess.rs"]
mod preprocess;
#[path = "src/kernels/variants.rs"]
mod variants;
// The weight block, where variants.rs finds it in the library.
#[path = "src/format/block.rs"]
mod format;

use variants::{Role, Shader, Uniform};

fn main() {
    println!("cargo:rerun-if-changed=shaders");
    println!("cargo:rerun-if-changed=src/kernels/variants.rs");
    println!("cargo:rerun-if-changed=src/format/block.rs");
    for uniform in Shader::ALL.iter().filter_map(|shader| shader.uniform()) {
        println!("cargo:rerun-if-changed={}", uniform.rust_file);
    }
    let mut failures = Vec::new();
    for (shader, defines) in variants::all_variants() {
        if let Err(message) = validate(shader, &defines) {
            failures.push(format!("shaders/{} with {defines:?}:\n{message}", shader.file()));
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
}

fn validate(shader: Shader, defines: &[&'static str]) -> Result<(), String> {
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
    check_uniforms(shader, &module)
}

/// One field: name, byte offset, byte size, scalar kind ("u32", "i32", "f32").
type Field = (String, u32, u32, &'static str);

/// Compares every uniform buffer struct of `module` with its Rust counterpart: `shader`'s own
/// uniform or an included file's.
fn check_uniforms(shader: Shader, module: &naga::Module) -> Result<(), String> {
    for (_, global) in module.global_variables.iter() {
        if global.space != naga::AddressSpace::Uniform {
            continue;
        }
        let ty = &module.types[global.ty];
        let name = ty.name.clone().unwrap_or_default();
        let naga::TypeInner::Struct { members, span } = &ty.inner else {
            return Err(format!("uniform {:?} is not a struct", global.name));
        };
        let Uniform { rust_file, rust_struct, .. } = Shader::ALL
            .iter()
            .filter(|s| **s == shader || s.role() == Role::Include)
            .filter_map(|s| s.uniform())
            .find(|uniform| uniform.wgsl_struct == name)
            .ok_or_else(|| format!("uniform struct {name} is not in the registry (src/kernels/variants.rs)"))?;
        let wgsl: Vec<Field> = members
            .iter()
            .map(|m| {
                let inner = &module.types[m.ty].inner;
                let kind = inner.scalar().map_or("?", |s| match s.kind {
                    naga::ScalarKind::Uint => "u32",
                    naga::ScalarKind::Sint => "i32",
                    naga::ScalarKind::Float => "f32",
                    _ => "?",
                });
                (m.name.clone().unwrap_or_default(), m.offset, inner.size(module.to_ctx()), kind)
            })
            .collect();
        let source = std::fs::read_to_string(rust_file).map_err(|e| format!("{rust_file}: {e}"))?;
        let (rust, rust_size) = rust_fields(&source, rust_struct).map_err(|e| format!("{rust_file}: {e}"))?;
        // Padding (names starting with `_`) may be split differently; the sizes must match.
        let named = |fields: &[Field]| fields.iter().filter(|f| !f.0.starts_with('_')).cloned().collect::<Vec<_>>();
        if named(&wgsl) != named(&rust) || *span != rust_size {
            return Err(format!(
                "uniform {name} ({span} bytes) in shaders/{} differs from {rust_struct} ({rust_size} bytes) in \
                 {rust_file}:\n  WGSL: {wgsl:?}\n  Rust: {rust:?}",
                shader.file()
            ));
        }
    }
    Ok(())
}

/// The fields of `#[repr(C)] struct NAME` in Rust source formatted by rustfmt (one
/// `name: type,` per line, comment lines skipped; types u32, i32, f32 and arrays of them)
/// and its size.
fn rust_fields(source: &str, name: &str) -> Result<(Vec<Field>, u32), String> {
    let lines: Vec<&str> = source.lines().map(str::trim).collect();
    let start = lines
        .iter()
        .position(|l| l.trim_start_matches("pub ").strip_prefix("struct ") == Some(&format!("{name} {{")))
        .ok_or_else(|| format!("no struct {name}"))?;
    if !lines[..start].iter().rev().take_while(|l| l.starts_with("#[")).any(|l| *l == "#[repr(C)]") {
        return Err(format!("struct {name} is not #[repr(C)]"));
    }
    let mut fields = Vec::new();
    let mut offset = 0;
    for line in lines[start + 1..].iter().take_while(|l| **l != "}").filter(|l| !l.starts_with("//")) {
        let (field, ty) = line
            .trim_start_matches("pub ")
            .trim_end_matches(',')
            .split_once(": ")
            .ok_or_else(|| format!("struct {name}: cannot read field `{line}`"))?;
        let (scalar, count) = match ty.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            Some(array) => {
                let (scalar, count) = array.split_once("; ").ok_or_else(|| format!("field {field}: `{ty}`"))?;
                (scalar, count.parse::<u32>().map_err(|e| format!("field {field}: {e}"))?)
            }
            None => (ty, 1),
        };
        let kind = ["u32", "i32", "f32"]
            .into_iter()
            .find(|k| *k == scalar)
            .ok_or_else(|| format!("field {field}: type `{ty}` is not u32, i32, f32 or an array of them"))?;
        fields.push((field.to_string(), offset, 4 * count, kind));
        offset += 4 * count;
    }
    Ok((fields, offset))
}
