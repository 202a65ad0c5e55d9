//! Reading a policy directory into memory: the one place in this crate that
//! does I/O, kept apart so that the gateway, the CA and the CLI load
//! directories the same way. Compilation and evaluation never touch the
//! file system.

use std::path::{Path, PathBuf};

use crate::error::{Diagnostic, Error};
use crate::schema::Schema;
use crate::set::{GROUPS_FILE, PolicySet, Source};

/// Reads every `*.json` file under `dir`, recursively (hidden files and
/// directories, whose names start with `.`, are skipped), named by their
/// path relative to `dir` with `/` separators. `groups.json` at the top is
/// the group file. Sorted by name.
pub fn load(dir: &Path) -> Result<Vec<Source>, Error> {
    let mut out = Vec::new();
    walk(dir, dir, &mut out, 0)?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// [`load`] then [`PolicySet::compile`].
pub fn compile(dir: &Path, schema: &Schema) -> Result<(PolicySet, Vec<Diagnostic>), Error> {
    PolicySet::compile(&load(dir)?, schema)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<Source>, depth: usize) -> Result<(), Error> {
    if depth > 32 {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    entries.sort();
    for path in entries {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        let meta = std::fs::metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            walk(root, &path, out, depth + 1)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push(Source { name, text });
        }
    }
    Ok(())
}

/// Whether a source is the group file.
pub fn is_groups_file(source: &Source) -> bool {
    source.name == GROUPS_FILE
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"Version": "2026-11-01", "Statement": {"Effect": "Allow", "Principal": {"Group": "ops"}, "Action": "http:GET", "Resource": "*"}}"#;

    #[test]
    fn loads_recursively_sorted_and_skips_hidden_and_other_files() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("team-b/sub")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(
            root.join("groups.json"),
            r#"{"Groups": {"ops": ["a@b.c"]}}"#,
        )
        .unwrap();
        std::fs::write(root.join("team-b/sub/p.json"), DOC).unwrap();
        std::fs::write(root.join("a.json"), DOC).unwrap();
        std::fs::write(root.join("README.md"), "not a policy").unwrap();
        std::fs::write(root.join(".git/x.json"), "not json").unwrap();
        std::fs::write(root.join(".hidden.json"), "not json").unwrap();
        let sources = load(root).unwrap();
        let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a.json", "groups.json", "team-b/sub/p.json"]);
        assert!(is_groups_file(&sources[1]));
        let (set, warnings) = compile(root, &Schema::gateway()).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn missing_directory_is_an_io_error_naming_the_path() {
        let e = load(Path::new("/nonexistent/ward-policies")).unwrap_err();
        assert!(matches!(e, Error::Io { .. }));
        assert!(e.to_string().contains("/nonexistent/ward-policies"), "{e}");
    }

    #[test]
    fn errors_name_the_relative_path() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("team")).unwrap();
        std::fs::write(
            tmp.path().join("team/bad.json"),
            "{\n  \"Version\": \"2026-11-01\",\n  \"Statment\": []\n}",
        )
        .unwrap();
        let e = compile(tmp.path(), &Schema::gateway()).unwrap_err();
        let d = &e.diagnostics()[0];
        assert_eq!((d.file.as_str(), d.line, d.column), ("team/bad.json", 3, 3));
        assert!(d.message.contains("did you mean \"Statement\"?"), "{d}");
    }
}
