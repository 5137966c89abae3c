//! The status file `sluice status` reads (default `/run/sluice/blkback.json`): per
//! device (its xenstore backend path), requests answered OKAY and answered with an error.
//! Rewritten (write + rename, so a reader never sees half a file) when a count changes.

use std::io;
use std::path::Path;

/// `{"devices":{"<backend path>":{"ok":N,"failed":M},...}}`. Paths come from dom0's own
/// backend directory; one with a character that would need JSON escaping is left out.
pub fn render<'a>(devices: impl IntoIterator<Item = (&'a str, u64, u64)>) -> String {
    let safe = |p: &str| {
        p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-.".contains(&b))
    };
    let entries: Vec<String> = devices
        .into_iter()
        .filter(|(p, _, _)| safe(p))
        .map(|(p, ok, failed)| format!("\"{p}\":{{\"ok\":{ok},\"failed\":{failed}}}"))
        .collect();
    format!("{{\"devices\":{{{}}}}}\n", entries.join(","))
}

/// The status file and what was last written to it.
#[derive(Debug)]
pub struct StatusFile {
    path: std::path::PathBuf,
    last: String,
}

impl StatusFile {
    pub fn new(path: std::path::PathBuf) -> Self {
        Self {
            path,
            last: String::new(),
        }
    }

    /// Writes `now` if it differs from the last text; false (after one warning) when
    /// the file cannot be written, and the caller stops trying.
    pub fn update(&mut self, now: String) -> bool {
        if now == self.last {
            return true;
        }
        if let Err(e) = write_atomic(&self.path, &now) {
            tracing::warn!(
                "status file {}: {e}; no longer written",
                self.path.display()
            );
            return false;
        }
        self.last = now;
        true
    }
}

/// Writes `text` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_drops_unsafe_paths() {
        let s = render([
            ("/local/domain/0/backend/vbd/3/51712", 10, 2),
            ("/local/domain/0/backend/vbd/4/5\"x", 1, 1),
        ]);
        assert_eq!(
            s,
            "{\"devices\":{\"/local/domain/0/backend/vbd/3/51712\":{\"ok\":10,\"failed\":2}}}\n"
        );
        assert_eq!(render([]), "{\"devices\":{}}\n");
    }

    #[test]
    fn write_is_whole_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("run/sluice/blkback.json");
        write_atomic(&p, "a").unwrap();
        write_atomic(&p, "bc").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "bc");
        assert!(!p.with_extension("json.tmp").exists());
    }
}
