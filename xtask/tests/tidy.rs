//! Tidy: the style rules a test can check, over the sources in `crates/`, `services/` and
//! `xtask/` (build output in `target/` and hidden directories skipped), plus the files at
//! the workspace root for whitespace.
//!
//! - every `.rs` file starts with a `//!` module comment;
//! - no trailing whitespace in `.rs`, `.toml`, `.md`, `.yml` and `.yaml` files;
//! - every member `Cargo.toml` has a `description` and `[lints] workspace = true`, and
//!   declares each dependency with `workspace = true` (versions and paths live once, in
//!   the root `[workspace.dependencies]`).
//!
//! Each check lists every offending `file:line` at once. Manifests are read line by line,
//! which is enough for the plain style the workspace uses; the parser's own tests are at
//! the end.

use std::fs;
use std::path::{Path, PathBuf};

#[test]
fn rust_files_start_with_a_module_doc_comment() {
    let mut problems = Vec::new();
    for path in files_under_members()
        .iter()
        .filter(|path| has_extension(path, &["rs"]))
    {
        let text = read(path);
        if !text
            .lines()
            .next()
            .is_some_and(|line| line.starts_with("//!"))
        {
            problems.push(format!(
                "{}:1: the first line must be a `//!` comment saying what the module is for",
                relative(path)
            ));
        }
    }
    assert_no_problems("module doc comments", &problems);
}

#[test]
fn no_trailing_whitespace() {
    let mut files = files_under_members();
    files.extend(root_files());
    let mut problems = Vec::new();
    for path in files
        .iter()
        .filter(|path| has_extension(path, &["rs", "toml", "md", "yml", "yaml"]))
    {
        for (index, line) in read(path).lines().enumerate() {
            if line.ends_with([' ', '\t']) {
                problems.push(format!(
                    "{}:{}: trailing whitespace",
                    relative(path),
                    index + 1
                ));
            }
        }
    }
    assert_no_problems("trailing whitespace", &problems);
}

#[test]
fn member_manifests_follow_the_workspace_rules() {
    let mut problems = Vec::new();
    for path in files_under_members()
        .iter()
        .filter(|path| path.file_name().is_some_and(|name| name == "Cargo.toml"))
    {
        for (line, problem) in manifest_problems(&read(path)) {
            problems.push(format!("{}:{line}: {problem}", relative(path)));
        }
    }
    assert_no_problems("member Cargo.toml rules", &problems);
}

fn assert_no_problems(rule: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "tidy: {} problem(s) with {rule}:\n{}\n",
        problems.len(),
        problems.join("\n")
    );
}

// Files.

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in a subdirectory of the workspace")
        .to_path_buf()
}

/// Every file under the member directories, sorted, skipping `target/` and hidden entries.
fn files_under_members() -> Vec<PathBuf> {
    let root = project_root();
    let mut files = Vec::new();
    for dir in ["crates", "services", "xtask"] {
        let dir = root.join(dir);
        if dir.is_dir() {
            walk(&dir, &mut files);
        }
    }
    files.sort();
    files
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        let file_type = entry
            .file_type()
            .unwrap_or_else(|error| panic!("{}: {error}", entry.path().display()));
        if file_type.is_dir() {
            walk(&entry.path(), files);
        } else if file_type.is_file() {
            files.push(entry.path());
        }
    }
}

/// The regular files directly in the workspace root (`Cargo.toml`, `ARCHITECTURE.md`...).
fn root_files() -> Vec<PathBuf> {
    let root = project_root();
    let mut files: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|error| panic!("{}: {error}", root.display()))
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_ok_and(|file_type| file_type.is_file()))
        .map(|entry| entry.path())
        .collect();
    files.sort();
    files
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .is_some_and(|extension| extensions.iter().any(|wanted| extension == *wanted))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn relative(path: &Path) -> String {
    path.strip_prefix(project_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

// Manifests.

/// A dependency seen in a manifest: where it is first declared and whether it inherits
/// from the workspace.
#[derive(Debug)]
struct Dependency {
    section: String,
    name: String,
    line: usize,
    inherits: bool,
}

/// The rule violations of one member manifest, as (line, message), sorted by line.
fn manifest_problems(text: &str) -> Vec<(usize, String)> {
    let mut problems = Vec::new();
    let mut section = String::new();
    let mut package_line = None;
    let mut has_description = false;
    let mut lints_line = None;
    let mut lints_inherit = false;
    let mut dependencies: Vec<Dependency> = Vec::new();
    // Brackets and braces left open by a value spanning several lines.
    let mut depth = 0i32;

    for (index, raw) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = strip_comment(raw).trim();
        if depth > 0 {
            depth += bracket_delta(line);
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).trim().to_owned();
            match section.as_str() {
                "package" => package_line = Some(line_number),
                "lints" => lints_line = Some(line_number),
                _ => {}
            }
            // `[dependencies.name]`: one dependency as a table.
            if let Some((table, name)) = dependency_table_of_one(&section) {
                dependency_entry(&mut dependencies, table, name, line_number);
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            problems.push((line_number, format!("cannot read this line: `{line}`")));
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        depth += bracket_delta(value);

        if section == "package" && (key == "description" || key == "description.workspace") {
            has_description = true;
        } else if section == "lints" && key == "workspace" && value == "true" {
            lints_inherit = true;
        } else if is_dependency_table(&section) {
            // `name = ...`, or a dotted key such as `name.workspace = true`.
            let (name, field) = match key.split_once('.') {
                Some((name, field)) => (name.trim(), Some(field.trim())),
                None => (key, None),
            };
            let inherits = match field {
                Some(field) => field == "workspace" && value == "true",
                None => value.replace([' ', '\t'], "").contains("workspace=true"),
            };
            let dependency = dependency_entry(
                &mut dependencies,
                section.clone(),
                name.to_owned(),
                line_number,
            );
            dependency.inherits |= inherits;
        } else if let Some((table, name)) = dependency_table_of_one(&section)
            && key == "workspace"
            && value == "true"
        {
            dependency_entry(&mut dependencies, table, name, line_number).inherits = true;
        }
    }

    match package_line {
        None => problems.push((1, "no [package] section".to_owned())),
        Some(line) if !has_description => problems.push((
            line,
            "[package] has no `description`; add a one-line description".to_owned(),
        )),
        Some(_) => {}
    }
    match lints_line {
        None => problems.push((
            1,
            "no `[lints]` section; add `[lints]` with `workspace = true`".to_owned(),
        )),
        Some(line) if !lints_inherit => {
            problems.push((line, "`[lints]` must say `workspace = true`".to_owned()))
        }
        Some(_) => {}
    }
    for dependency in dependencies
        .iter()
        .filter(|dependency| !dependency.inherits)
    {
        problems.push((
            dependency.line,
            format!(
                "[{}] `{}` does not use `workspace = true`; declare its version or path once in \
                 [workspace.dependencies] of the root Cargo.toml and write `{}.workspace = true`",
                dependency.section, dependency.name, dependency.name
            ),
        ));
    }
    problems.sort_by_key(|(line, _)| *line);
    problems
}

/// The entry for `name` in `section`, added on first sight.
fn dependency_entry(
    dependencies: &mut Vec<Dependency>,
    section: String,
    name: String,
    line: usize,
) -> &mut Dependency {
    let position = dependencies
        .iter()
        .position(|dependency| dependency.section == section && dependency.name == name);
    let position = position.unwrap_or_else(|| {
        dependencies.push(Dependency {
            section,
            name,
            line,
            inherits: false,
        });
        dependencies.len() - 1
    });
    &mut dependencies[position]
}

const DEPENDENCY_TABLES: [&str; 3] = ["dependencies", "dev-dependencies", "build-dependencies"];

/// The section without a `target.<cfg>.` prefix.
fn without_target(section: &str) -> &str {
    let Some(rest) = section.strip_prefix("target.") else {
        return section;
    };
    // The cfg may be quoted and contain dots: `target.'cfg(target_os = "linux")'.x`.
    let after_cfg = match rest.chars().next() {
        Some(quote @ ('\'' | '"')) => rest[1..].find(quote).map(|end| &rest[end + 2..]),
        _ => rest.find('.').map(|end| &rest[end..]),
    };
    after_cfg
        .and_then(|tail| tail.strip_prefix('.'))
        .unwrap_or(section)
}

/// `[dependencies]`, `[dev-dependencies]`, `[target.'cfg(..)'.build-dependencies]`...
fn is_dependency_table(section: &str) -> bool {
    DEPENDENCY_TABLES.contains(&without_target(section))
}

/// For `[dependencies.name]` (and the other kinds), the table and the name.
fn dependency_table_of_one(section: &str) -> Option<(String, String)> {
    let (table, name) = without_target(section).split_once('.')?;
    DEPENDENCY_TABLES.contains(&table).then(|| {
        (
            section[..section.len() - name.len() - 1].to_owned(),
            name.to_owned(),
        )
    })
}

/// The line without a trailing `# comment` (a `#` inside a string is kept).
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut escaped = false;
    for (index, character) in line.char_indices() {
        match (quote, character) {
            (Some('"'), '\\') if !escaped => {
                escaped = true;
                continue;
            }
            (Some(open), close) if open == close && !escaped => quote = None,
            (None, '"' | '\'') => quote = Some(character),
            (None, '#') => return &line[..index],
            _ => {}
        }
        escaped = false;
    }
    line
}

/// Opening minus closing brackets and braces outside strings.
fn bracket_delta(text: &str) -> i32 {
    let mut delta = 0;
    let mut quote = None;
    let mut escaped = false;
    for character in text.chars() {
        match (quote, character) {
            (Some('"'), '\\') if !escaped => {
                escaped = true;
                continue;
            }
            (Some(open), close) if open == close && !escaped => quote = None,
            (None, '"' | '\'') => quote = Some(character),
            (None, '[' | '{') => delta += 1,
            (None, ']' | '}') => delta -= 1,
            _ => {}
        }
        escaped = false;
    }
    delta
}

// The manifest reader's own tests.

const GOOD_MANIFEST: &str = r#"[package]
name = "good"
description = "A crate that follows the rules" # with a comment
version.workspace = true

[lints]
workspace = true

[dependencies]
anyhow.workspace = true
tokio = { workspace = true, features = [
    "rt", # the runtime
    "net",
] }

[dev-dependencies.serde]
workspace = true
features = ["derive"]

[target.'cfg(target_os = "linux")'.dependencies]
libc = { workspace = true }

[[test]]
name = "api"
path = "tests/api/main.rs"
"#;

#[test]
fn manifest_following_the_rules_has_no_problems() {
    assert_eq!(manifest_problems(GOOD_MANIFEST), vec![]);
}

#[test]
fn manifest_without_description_or_lints_is_flagged() {
    let problems = manifest_problems("[package]\nname = \"x\"\n\n[lints]\nclippy = {}\n");
    assert_eq!(
        problems.iter().map(|(line, _)| *line).collect::<Vec<_>>(),
        vec![1, 4]
    );
    assert!(problems[0].1.contains("description"), "{problems:?}");
    assert!(problems[1].1.contains("workspace = true"), "{problems:?}");

    let problems = manifest_problems("[package]\ndescription = \"d\"\n");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].1.contains("no `[lints]`"), "{problems:?}");
}

#[test]
fn dependency_with_its_own_version_or_path_is_flagged_with_its_line() {
    let manifest = format!(
        "{GOOD_MANIFEST}\n[build-dependencies]\ncc = \"1\"\n\
         [target.'cfg(unix)'.dev-dependencies]\nlocal = {{ path = \"../local\" }}\n\
         [dependencies.rand]\nversion = \"0.9\"\n"
    );
    let problems = manifest_problems(&manifest);
    let names: Vec<String> = problems
        .iter()
        .map(|(line, message)| format!("{line} {}", message.split('`').nth(1).unwrap_or("")))
        .collect();
    let first = GOOD_MANIFEST.lines().count() + 3;
    assert_eq!(
        names,
        vec![
            format!("{first} cc"),
            format!("{} local", first + 2),
            format!("{} rand", first + 3),
        ]
    );
}

#[test]
fn target_prefix_is_removed_from_sections() {
    assert_eq!(without_target("dependencies"), "dependencies");
    assert_eq!(
        without_target("target.x86_64-unknown-linux-gnu.dependencies"),
        "dependencies"
    );
    assert_eq!(
        without_target(r#"target.'cfg(target_os = "linux")'.dev-dependencies.foo"#),
        "dev-dependencies.foo"
    );
    assert!(!is_dependency_table("workspace.dependencies"));
    assert_eq!(dependency_table_of_one("workspace.dependencies.foo"), None);
}
