//! Finding the files to ingest: files and folders (recursive, following symbolic links, with
//! loops reported instead of followed), in a stable order.

use std::path::{Path, PathBuf};

/// A file to ingest, or a path that could not be walked and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    File(PathBuf),
    Unwalkable { path: PathBuf, reason: String },
}

/// Every file under `roots`, sorted per root. Hidden files and folders (`.name`) inside a
/// folder are skipped; a root named explicitly is always taken.
pub fn discover(roots: &[PathBuf]) -> Vec<Found> {
    let mut found = Vec::new();
    for root in roots {
        let walker = walkdir::WalkDir::new(root)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !is_hidden(e.file_name()));
        for entry in walker {
            match entry {
                Ok(e) if e.file_type().is_file() => found.push(Found::File(e.into_path())),
                Ok(_) => {}
                Err(err) => {
                    let path = err.path().map_or_else(|| root.clone(), Path::to_path_buf);
                    let reason = if let Some(ancestor) = err.loop_ancestor() {
                        format!("symbolic link loop: leads back to {}", ancestor.display())
                    } else if let Some(io) = err.io_error() {
                        format!("cannot read: {io}")
                    } else {
                        err.to_string()
                    };
                    found.push(Found::Unwalkable { path, reason });
                }
            }
        }
    }
    found
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|n| n.starts_with('.'))
}

/// The source URI recorded for a file: `file://` + its absolute, normalised path.
pub fn file_uri(path: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    format!("file://{}", abs.display())
}

/// The path of a `file://` URI made by [`file_uri`] (`None` for other URIs).
pub fn path_of_file_uri(uri: &str) -> Option<PathBuf> {
    uri.strip_prefix("file://").map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_recursively_sorted_and_reports_loops() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("b/inner")).unwrap();
        std::fs::write(root.join("b/inner/z.txt"), "z").unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::fs::write(root.join(".hidden.txt"), "h").unwrap();
        std::os::unix::fs::symlink(root.join("b"), root.join("b/inner/loop")).unwrap();
        let found = discover(&[root.to_path_buf()]);
        let files: Vec<_> = found
            .iter()
            .filter_map(|f| match f {
                Found::File(p) => Some(p.strip_prefix(root).unwrap().to_path_buf()),
                Found::Unwalkable { .. } => None,
            })
            .collect();
        assert_eq!(
            files,
            vec![PathBuf::from("a.txt"), PathBuf::from("b/inner/z.txt")]
        );
        let loops: Vec<_> = found
            .iter()
            .filter_map(|f| match f {
                Found::Unwalkable { reason, .. } => Some(reason.clone()),
                Found::File(_) => None,
            })
            .collect();
        assert_eq!(loops.len(), 1, "{found:?}");
        assert!(loops[0].contains("symbolic link loop"), "{loops:?}");
    }

    #[test]
    fn uris_are_absolute() {
        let uri = file_uri(Path::new("some/file.pdf"));
        assert!(uri.starts_with("file:///"), "{uri}");
        assert!(uri.ends_with("some/file.pdf"), "{uri}");
    }
}
