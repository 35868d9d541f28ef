//! `cargo xtask layers`: the module layering of `src/`, checked.
//!
//! Every top-level module (`src/<module>.rs` or `src/<module>/`) has a row in [`LAYERS`] naming
//! the modules it may import; lower layers never import higher ones. Each file of a module is
//! scanned for code references to another top-level module: `crate::<module>` (also inside
//! `use crate::{…}` groups and `$crate::`), and `super::` chains that climb out of the module to
//! the crate root. Comments, doc comments and string literals are not code and are skipped. A
//! top-level module without a row is an error too, so a new module forces a decision.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

/// Which other top-level modules a module may import.
#[derive(Clone, Copy, Debug)]
pub enum Allowed {
    /// Only these.
    Only(&'static [&'static str]),
    /// Every module except these.
    AllExcept(&'static [&'static str]),
}

/// The layering, bottom up. Keep README's module table and `src/lib.rs` in step with it.
pub const LAYERS: &[(&str, Allowed)] = &[
    ("config", Allowed::Only(&[])),
    ("protocol", Allowed::Only(&[])),
    ("telemetry", Allowed::Only(&["config"])),
    ("tls", Allowed::Only(&["config", "telemetry"])),
    ("secrets", Allowed::Only(&["config"])),
    ("cluster", Allowed::Only(&["config", "protocol", "telemetry", "tls"])),
    ("routing", Allowed::Only(&["config", "protocol", "telemetry", "tls", "cluster"])),
    ("rewrite", Allowed::Only(&["config", "protocol", "telemetry", "routing"])),
    ("proxy", Allowed::Only(&["config", "protocol", "telemetry", "tls", "secrets", "routing", "rewrite"])),
    ("switchover", Allowed::Only(&["config", "telemetry", "tls", "routing"])),
    ("admin", Allowed::Only(&["config", "telemetry", "cluster", "routing", "switchover"])),
    ("gateway", Allowed::AllExcept(&["cli"])),
    ("cli", Allowed::AllExcept(&[])),
];

impl Allowed {
    fn permits(self, target: &str) -> bool {
        match self {
            Allowed::Only(list) => list.contains(&target),
            Allowed::AllExcept(list) => !list.contains(&target),
        }
    }
}

impl fmt::Display for Allowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Allowed::Only([]) => write!(f, "(nothing)"),
            Allowed::Only(list) => write!(f, "{}", list.join(", ")),
            Allowed::AllExcept([]) => write!(f, "everything"),
            Allowed::AllExcept(list) => write!(f, "everything except {}", list.join(", ")),
        }
    }
}

/// One source file of a top-level module.
#[derive(Debug)]
pub struct SourceFile {
    /// As shown in messages, e.g. `src/proxy/connection.rs`.
    pub display: String,
    /// The module path of the file, e.g. `["proxy", "connection"]`.
    pub module: Vec<String>,
    pub text: String,
}

/// One broken rule.
#[derive(Debug, PartialEq, Eq)]
pub struct Violation(pub String);

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Check the crate whose sources are in `src` (`src/lib.rs`, `src/main.rs` and `src/bin/` are
/// the roots, not modules, and are skipped).
pub fn check_dir(src: &Path) -> Result<Vec<Violation>> {
    let mut files = Vec::new();
    let mut entries: Vec<_> =
        fs::read_dir(src).with_context(|| format!("reading {}", src.display()))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if path.is_dir() {
            if name != "bin" {
                collect(&path, &format!("src/{name}"), vec![name], &mut files)?;
            }
        } else if let Some(stem) = name.strip_suffix(".rs") {
            if stem != "lib" && stem != "main" {
                files.push(read(&path, format!("src/{name}"), vec![stem.to_string()])?);
            }
        }
    }
    Ok(check_files(&files))
}

fn collect(dir: &Path, display: &str, module: Vec<String>, files: &mut Vec<SourceFile>) -> Result<()> {
    let mut entries: Vec<_> =
        fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let shown = format!("{display}/{name}");
        if path.is_dir() {
            let mut inner = module.clone();
            inner.push(name);
            collect(&path, &shown, inner, files)?;
        } else if let Some(stem) = name.strip_suffix(".rs") {
            let mut inner = module.clone();
            if stem != "mod" {
                inner.push(stem.to_string());
            }
            files.push(read(&path, shown, inner)?);
        }
    }
    Ok(())
}

fn read(path: &Path, display: String, module: Vec<String>) -> Result<SourceFile> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(SourceFile { display, module, text })
}

/// Check files against [`LAYERS`]; the top-level modules are those the files belong to.
pub fn check_files(files: &[SourceFile]) -> Vec<Violation> {
    let modules: BTreeSet<&str> = files.iter().filter_map(|f| f.module.first()).map(String::as_str).collect();
    let mut violations = Vec::new();
    for module in &modules {
        if rule(module).is_none() {
            violations.push(Violation(format!(
                "src/{module}: top-level module `{module}` has no row in the layering table (xtask/src/layers.rs, \
                 LAYERS): add it with the modules it may import"
            )));
        }
    }
    for file in files {
        let Some(own) = file.module.first() else { continue };
        let Some(allowed) = rule(own) else { continue };
        let lines: Vec<&str> = file.text.lines().collect();
        for reference in references(&file.text, file.module.len()) {
            let targets: Vec<&str> = if reference.target == "*" {
                modules.iter().copied().collect()
            } else {
                vec![reference.target.as_str()]
            };
            for target in targets {
                if target == own || !modules.contains(target) || allowed.permits(target) {
                    continue;
                }
                let source = lines.get(reference.line - 1).map_or("", |l| l.trim());
                violations.push(Violation(format!(
                    "{}:{}: `{}` imports `{target}` ({}), but the layering allows {own} -> {allowed}",
                    file.display, reference.line, source, reference.via
                )));
            }
        }
    }
    violations
}

fn rule(module: &str) -> Option<Allowed> {
    LAYERS.iter().find(|(name, _)| *name == module).map(|(_, allowed)| *allowed)
}

/// A code reference to a top-level module of the crate.
#[derive(Debug, PartialEq, Eq)]
pub struct Reference {
    /// 1-based.
    pub line: usize,
    /// The top-level module named, or `*` for a glob of the crate root.
    pub target: String,
    /// The path as written, e.g. `crate::routing` or `super::super::routing`.
    pub via: String,
}

/// The references to top-level modules in `text`, a file whose module path is `depth` deep
/// (`src/proxy/mod.rs` is 1, `src/proxy/connection.rs` 2).
pub fn references(text: &str, depth: usize) -> Vec<Reference> {
    let tokens = tokenize(&strip(text));
    let mut found = Vec::new();
    // Inline `mod name { … }` blocks deepen the module path: the brace depth each one opened at.
    let mut inline_mods: Vec<usize> = Vec::new();
    let mut braces = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        match token.text.as_str() {
            "{" => braces += 1,
            "}" => {
                braces = braces.saturating_sub(1);
                if inline_mods.last() == Some(&braces) {
                    inline_mods.pop();
                }
            }
            "mod" if tokens.get(i + 2).is_some_and(|t| t.text == "{") && tokens.get(i + 1).is_some_and(is_ident) => {
                inline_mods.push(braces);
            }
            "crate" if next_is_path_sep(&tokens, i) => {
                found.extend(targets_after(&tokens, i + 2, "crate::".to_string()));
            }
            "super" if next_is_path_sep(&tokens, i) && (i == 0 || tokens[i - 1].text != "::") => {
                let mut supers = 1;
                let mut j = i + 2;
                while tokens.get(j).is_some_and(|t| t.text == "super") && next_is_path_sep(&tokens, j) {
                    supers += 1;
                    j += 2;
                }
                if supers >= depth + inline_mods.len() {
                    found.extend(targets_after(&tokens, j, "super::".repeat(supers)));
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    found
}

fn next_is_path_sep(tokens: &[Token], i: usize) -> bool {
    tokens.get(i + 1).is_some_and(|t| t.text == "::")
}

fn is_ident(token: &Token) -> bool {
    token.text.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// The modules named at the crate root by the path continuing at `tokens[start]`: one name,
/// `*`, or the first name of each item of a `{…}` group.
fn targets_after(tokens: &[Token], start: usize, via: String) -> Vec<Reference> {
    let Some(first) = tokens.get(start) else { return Vec::new() };
    let reference = |token: &Token| Reference {
        line: token.line,
        target: token.text.clone(),
        via: if token.text == "*" { format!("{via}*") } else { format!("{via}{}", token.text) },
    };
    if first.text != "{" {
        return if is_ident(first) && first.text != "self" || first.text == "*" {
            vec![reference(first)]
        } else {
            vec![]
        };
    }
    let mut found = Vec::new();
    let mut depth = 0usize;
    let mut item_start = true;
    for token in &tokens[start..] {
        match token.text.as_str() {
            "{" => {
                depth += 1;
                if depth == 1 {
                    item_start = true;
                    continue;
                }
            }
            "}" => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            "," if depth == 1 => {
                item_start = true;
                continue;
            }
            _ => {}
        }
        if item_start && depth == 1 && (is_ident(token) && token.text != "self" || token.text == "*") {
            found.push(reference(token));
        }
        item_start = false;
    }
    found
}

#[derive(Debug)]
struct Token {
    text: String,
    line: usize,
}

/// Identifiers, `::`, and single punctuation characters, with their lines.
fn tokenize(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token { text: chars[start..i].iter().collect(), line });
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push(Token { text: "::".into(), line });
            i += 2;
        } else {
            tokens.push(Token { text: c.to_string(), line });
            i += 1;
        }
    }
    tokens
}

/// `text` with comments (line, doc and nested block comments) and the contents of string and
/// character literals blanked out; line breaks are kept, so lines still count.
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let ident_char = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut nesting = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    nesting += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    nesting -= 1;
                    out.push_str("  ");
                    i += 2;
                    if nesting == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (i == 0 || !ident_char(chars[i - 1]) || (chars[i - 1] == 'b' && (i < 2 || !ident_char(chars[i - 2]))))
            && matches!(next, Some('"') | Some('#'))
            && raw_string_hashes(&chars, i + 1).is_some()
        {
            let hashes = raw_string_hashes(&chars, i + 1).unwrap_or(0);
            // r, the hashes and the opening quote
            for _ in 0..hashes + 2 {
                out.push(' ');
            }
            i += hashes + 2;
            while i < chars.len() {
                if chars[i] == '"' && (0..hashes).all(|k| chars.get(i + 1 + k) == Some(&'#')) {
                    for _ in 0..hashes + 1 {
                        out.push(' ');
                    }
                    i += hashes + 1;
                    break;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() {
                match chars[i] {
                    '\\' => {
                        out.push(' ');
                        if let Some(&escaped) = chars.get(i + 1) {
                            out.push(blank(escaped));
                        }
                        i += 2;
                    }
                    '"' => {
                        out.push(' ');
                        i += 1;
                        break;
                    }
                    other => {
                        out.push(blank(other));
                        i += 1;
                    }
                }
            }
        } else if c == '\'' && next == Some('\\') {
            // an escaped character literal: '\n', '\'', '\u{…}'
            out.push_str("  ");
            i += 2;
            while i < chars.len() && chars[i] != '\'' && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
            if i < chars.len() && chars[i] == '\'' {
                out.push(' ');
                i += 1;
            }
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            // a plain character literal; anything else after a quote is a lifetime
            out.push_str("   ");
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// For a raw string whose `#`s start at `chars[at]`: how many there are, if a quote follows.
fn raw_string_hashes(chars: &[char], at: usize) -> Option<usize> {
    let hashes = chars[at..].iter().take_while(|&&c| c == '#').count();
    (chars.get(at + hashes) == Some(&'"')).then_some(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(display: &str, text: &str) -> SourceFile {
        let inner = display.strip_prefix("src/").unwrap().strip_suffix(".rs").unwrap();
        let mut module: Vec<String> = inner.split('/').map(String::from).collect();
        if module.last().map(String::as_str) == Some("mod") {
            module.pop();
        }
        SourceFile { display: display.into(), module, text: text.into() }
    }

    /// A small tree that follows the layering.
    fn clean_tree() -> Vec<SourceFile> {
        vec![
            file("src/config/mod.rs", "pub mod schema;\npub struct GatewayConfig;\n"),
            file("src/config/schema.rs", "use super::GatewayConfig;\n"),
            file("src/telemetry/mod.rs", "use crate::config::GatewayConfig;\n"),
            file("src/routing/mod.rs", "use crate::{config::GatewayConfig, telemetry};\n"),
            file("src/gateway.rs", "use crate::routing;\nuse crate::config;\n"),
            file("src/cli.rs", "use crate::gateway::Gateway;\n"),
        ]
    }

    #[test]
    fn a_clean_tree_passes() {
        assert_eq!(check_files(&clean_tree()), vec![]);
    }

    #[test]
    fn a_forbidden_import_fails_naming_file_line_import_and_rule() {
        let mut tree = clean_tree();
        tree.push(file("src/telemetry/audit.rs", "use std::fmt;\nuse crate::routing::Route;\n"));
        let violations = check_files(&tree);
        assert_eq!(violations.len(), 1, "{violations:?}");
        let message = &violations[0].0;
        assert!(message.starts_with("src/telemetry/audit.rs:2: `use crate::routing::Route;`"), "{message}");
        assert!(message.contains("imports `routing` (crate::routing)"), "{message}");
        assert!(message.contains("telemetry -> config"), "{message}");
    }

    #[test]
    fn the_bottom_layer_may_import_nothing() {
        let mut tree = clean_tree();
        tree.push(file("src/config/watch.rs", "fn f() { let _ = crate::telemetry::x(); }\n"));
        let violations = check_files(&tree);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].0.contains("config -> (nothing)"), "{}", violations[0]);
    }

    #[test]
    fn gateway_may_not_import_cli() {
        let mut tree = clean_tree();
        tree.push(file("src/gateway.rs", "use crate::cli;\n"));
        let violations = check_files(&tree);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].0.contains("gateway -> everything except cli"), "{}", violations[0]);
    }

    #[test]
    fn comments_doc_comments_and_strings_are_not_imports() {
        let mut tree = clean_tree();
        tree.push(file(
            "src/config/validate.rs",
            "// see crate::routing for how ports are used\n\
             /// Like [`crate::proxy::Listener`], but smaller.\n\
             //! crate::admin\n\
             /* crate::gateway /* nested crate::cli */ crate::admin */\n\
             fn f() -> &'static str { let _c = '\"'; \"crate::routing\" } // crate::proxy\n\
             const R: &str = r#\"crate::proxy \"quoted\" \"#;\n\
             fn g<'a>(x: &'a str) -> &'a str { x }\n",
        ));
        assert_eq!(check_files(&tree), vec![]);
    }

    #[test]
    fn groups_name_each_module() {
        let refs = references("use crate::{config::{A, B}, routing::Route, self, *};\n", 1);
        let targets: Vec<&str> = refs.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(targets, ["config", "routing", "*"]);
    }

    #[test]
    fn super_chains_that_reach_the_crate_root_count() {
        // src/telemetry/audit.rs is two deep: super is telemetry, super::super the crate root.
        let refs = references("use super::Metrics;\nuse super::super::routing::Route;\n", 2);
        assert_eq!(refs, vec![Reference { line: 2, target: "routing".into(), via: "super::super::routing".into() }]);
        // In src/gateway.rs one super is already the crate root.
        let refs = references("use super::{cli, config};\n", 1);
        let targets: Vec<&str> = refs.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(targets, ["cli", "config"]);
    }

    #[test]
    fn inline_modules_deepen_the_path() {
        let text = "mod tests {\n    use super::*;\n    use super::super::routing;\n}\nuse super::Foo;\n";
        // In src/telemetry/mod.rs: tests' super is telemetry, super::super the root; outside
        // `tests`, one super is already the root.
        let refs = references(text, 1);
        assert_eq!(
            refs,
            vec![
                Reference { line: 3, target: "routing".into(), via: "super::super::routing".into() },
                Reference { line: 5, target: "Foo".into(), via: "super::Foo".into() },
            ]
        );
        let mut tree = clean_tree();
        tree.push(file(
            "src/telemetry/metrics.rs",
            "#[cfg(test)]\nmod tests {\n    use super::super::super::cluster;\n}\n",
        ));
        tree.push(file("src/cluster/mod.rs", "use crate::config;\n"));
        let violations = check_files(&tree);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].0.starts_with("src/telemetry/metrics.rs:3:"), "{}", violations[0]);
    }

    #[test]
    fn visibility_and_macro_paths() {
        let refs = references("pub(crate) fn f() {}\npub(in crate::routing) fn g() {}\n$crate::proxy::x!()\n", 1);
        let targets: Vec<&str> = refs.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(targets, ["routing", "proxy"]);
    }

    #[test]
    fn a_module_missing_from_the_table_is_an_error() {
        let mut tree = clean_tree();
        tree.push(file("src/plugins/mod.rs", "use crate::config;\n"));
        let violations = check_files(&tree);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].0.contains("`plugins` has no row in the layering table"), "{}", violations[0]);
    }

    #[test]
    fn check_dir_walks_a_tree_on_disk() {
        let root = std::env::temp_dir().join(format!("xtask-layers-{}", std::process::id()));
        let src = root.join("src");
        fs::create_dir_all(src.join("telemetry")).unwrap();
        fs::create_dir_all(src.join("routing")).unwrap();
        fs::write(src.join("lib.rs"), "pub mod routing;\npub mod telemetry;\n").unwrap();
        fs::write(src.join("main.rs"), "use crate::routing;\n").unwrap();
        fs::write(src.join("routing/mod.rs"), "use crate::telemetry::Metrics;\n").unwrap();
        fs::write(src.join("telemetry/mod.rs"), "pub struct Metrics;\n// crate::routing\n").unwrap();
        let clean = check_dir(&src);
        fs::write(src.join("telemetry/audit.rs"), "\nuse crate::routing::Route;\n").unwrap();
        let broken = check_dir(&src);
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(clean.unwrap(), vec![]);
        let broken = broken.unwrap();
        assert_eq!(broken.len(), 1, "{broken:?}");
        assert!(broken[0].0.starts_with("src/telemetry/audit.rs:2:"), "{}", broken[0]);
    }
}
