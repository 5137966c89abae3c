//! Path validation: length limits, allowed characters, special `@` watch paths.

use super::*;
use core::fmt;

/// What was wrong with a xenstore path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// The empty string.
    Empty,
    /// Longer than [`XENSTORE_ABS_PATH_MAX`] (absolute) or [`XENSTORE_REL_PATH_MAX`]
    /// (relative) bytes.
    TooLong {
        /// Bytes in the path.
        len: usize,
        /// The limit that applies.
        max: usize,
    },
    /// A byte other than `A-Z a-z 0-9 - / _ @` at byte offset `at`.
    InvalidChar {
        /// The byte.
        byte: u8,
        /// Its offset.
        at: usize,
    },
    /// Contains `//`.
    DoubleSlash,
    /// Ends in `/` (only `/` itself may).
    TrailingSlash,
    /// A special `@...` watch path where only node paths are allowed.
    SpecialNotAllowed,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::Empty => f.write_str("empty path"),
            PathError::TooLong { len, max } => write!(f, "path of {len} bytes exceeds {max}"),
            PathError::InvalidChar { byte, at } => {
                write!(f, "invalid byte {byte:#04x} in path at offset {at}")
            }
            PathError::DoubleSlash => f.write_str("path contains //"),
            PathError::TrailingSlash => f.write_str("path ends in /"),
            PathError::SpecialNotAllowed => f.write_str("special @ path not allowed here"),
        }
    }
}

/// The kind of a valid path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// Starts with `/`.
    Absolute,
    /// Relative to the connection's home `/local/domain/<domid>`.
    Relative,
    /// A special watch path such as `@introduceDomain` / `@releaseDomain`.
    Special,
}

/// Check a path (without its NUL): length limit for its kind (absolute
/// [`XENSTORE_ABS_PATH_MAX`]; relative, and the part of an absolute path below
/// `/local/domain/<domid>/`, [`XENSTORE_REL_PATH_MAX`]), allowed characters, no `//`,
/// no trailing `/`. `allow_special` admits `@...` watch paths.
pub fn validate_path(path: &[u8], allow_special: bool) -> Result<PathKind, PathError> {
    let kind = match path.first() {
        None => return Err(PathError::Empty),
        Some(b'/') => PathKind::Absolute,
        Some(b'@') => PathKind::Special,
        Some(_) => PathKind::Relative,
    };
    if kind == PathKind::Special && !allow_special {
        return Err(PathError::SpecialNotAllowed);
    }
    let max = match kind {
        PathKind::Relative => XENSTORE_REL_PATH_MAX,
        PathKind::Absolute | PathKind::Special => XENSTORE_ABS_PATH_MAX,
    };
    if path.len() > max {
        return Err(PathError::TooLong {
            len: path.len(),
            max,
        });
    }
    // Under a domain's home the part below `/local/domain/<domid>/` is a relative path
    // and has the relative limit too (as xenstored checks it).
    if kind == PathKind::Absolute {
        let below_home = path
            .strip_prefix(b"/local/domain/")
            .and_then(|rest| {
                let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                (1..=5).contains(&digits).then(|| &rest[digits..])
            })
            .and_then(|rest| rest.strip_prefix(b"/"));
        if let Some(rel) = below_home {
            if rel.len() > XENSTORE_REL_PATH_MAX {
                return Err(PathError::TooLong {
                    len: rel.len(),
                    max: XENSTORE_REL_PATH_MAX,
                });
            }
        }
    }
    if let Some(at) = path
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'@')))
    {
        return Err(PathError::InvalidChar { byte: path[at], at });
    }
    if path.windows(2).any(|w| w == b"//") {
        return Err(PathError::DoubleSlash);
    }
    if path.len() > 1 && path.ends_with(b"/") {
        return Err(PathError::TrailingSlash);
    }
    Ok(kind)
}
