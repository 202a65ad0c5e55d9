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
