//! A tiny WGSL preprocessor: `#include "file.wgsl"`, `#ifdef NAME`, `#ifndef NAME`,
//! `#else`, `#endif` (`#ifdef A | B`: any of the names is defined; `#ifndef A | B`: none
//! is), and numeric constants defined from Rust (`const NAME: u32 = VALUE;`
//! before the source, so Rust and WGSL read one definition). Shared with build.rs, which
//! validates every variant with naga.

/// Expanded source plus, for each output line, the file and 1-based line it came from.
pub struct Expanded {
    pub text: String,
    pub origins: Vec<(String, usize)>,
}

/// Expands `name`'s source with the given flags defined, after a `const` declaration for
/// each of `constants`. `lookup` returns a shader file's text by name.
pub fn expand<'a>(
    name: &str,
    defines: &[&str],
    constants: &[(&str, u32)],
    lookup: &dyn Fn(&str) -> Option<&'a str>,
) -> Result<Expanded, String> {
    let mut out = Expanded { text: String::new(), origins: Vec::new() };
    for (constant, value) in constants {
        out.text.push_str(&format!("const {constant}: u32 = {value}u;\n"));
        out.origins.push(("src/kernels/variants.rs".to_owned(), 0));
    }
    expand_into(name, defines, lookup, &mut out, &mut Vec::new())?;
    Ok(out)
}

fn expand_into<'a>(
    name: &str,
    defines: &[&str],
    lookup: &dyn Fn(&str) -> Option<&'a str>,
    out: &mut Expanded,
    stack: &mut Vec<String>,
) -> Result<(), String> {
    if stack.iter().any(|n| n == name) {
        return Err(format!("{name}: included recursively"));
    }
    let source = lookup(name).ok_or_else(|| format!("{name}: no such shader"))?;
    stack.push(name.to_owned());
    // Each entry: (this branch is active, an enclosing branch is active).
    let mut conditions: Vec<(bool, bool)> = Vec::new();
    for (index, line) in source.lines().enumerate() {
        let at = |problem: &str| format!("{name}:{}: {problem}", index + 1);
        let active = conditions.last().is_none_or(|&(this, outer)| this && outer);
        let directive = line.trim_start();
        let any_defined = |flags: &str| flags.split('|').any(|flag| defines.contains(&flag.trim()));
        if let Some(flags) = directive.strip_prefix("#ifdef ") {
            conditions.push((any_defined(flags), active));
        } else if let Some(flags) = directive.strip_prefix("#ifndef ") {
            conditions.push((!any_defined(flags), active));
        } else if directive.starts_with("#else") {
            let branch = conditions.last_mut().ok_or_else(|| at("#else without #ifdef"))?;
            branch.0 = !branch.0;
        } else if directive.starts_with("#endif") {
            conditions.pop().ok_or_else(|| at("#endif without #ifdef"))?;
        } else if let Some(file) = directive.strip_prefix("#include ") {
            if active {
                expand_into(file.trim().trim_matches('"'), defines, lookup, out, stack).map_err(|e| at(&e))?;
            }
        } else if directive.starts_with('#') {
            return Err(at("unknown directive"));
        } else if active {
            out.text.push_str(line);
            out.text.push('\n');
            out.origins.push((name.to_owned(), index + 1));
        }
    }
    if !conditions.is_empty() {
        return Err(format!("{name}: #ifdef without #endif"));
    }
    stack.pop();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn ifdef_with_several_names_means_any_of_them() {
        let source = "#ifdef A | B\nany\n#else\nneither\n#endif\n#ifndef A | B\nnone\n#endif\n";
        let lookup = |_: &str| Some(source);
        let lines = |defines: &[&str]| expand("x.wgsl", defines, &[], &lookup).unwrap().text;
        assert_eq!(lines(&["B"]), "any\n");
        assert_eq!(lines(&["A", "B"]), "any\n");
        assert_eq!(lines(&["C"]), "neither\nnone\n");
    }
}
