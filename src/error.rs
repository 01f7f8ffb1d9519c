//! Error types. Every failure a user can cause (a bad file, a bad key, a shape that
//! does not fit) is an `Error` whose `Display` is one line naming the file and the
//! layer or key, so the CLI can print it and exit with code 2 (`exit_code`).

use std::path::{Path, PathBuf};

/// Where in an input file a problem sits: the file and, when known, a layer or key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    /// `layer "conv1"`, `[relu.relu1]`, `line 4, column 1`, ...
    pub within: Option<String>,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(w) = &self.within {
            write!(f, ": {w}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{path}: cannot read: {source}", path = .path.display())]
    Read { path: PathBuf, source: std::io::Error },

    /// A file could not be written.
    #[error("{path}: cannot write: {source}", path = .path.display())]
    Write { path: PathBuf, source: std::io::Error },

    /// The file is not valid TOML, or a value has the wrong type or an unknown key.
    #[error("{at}: {message}")]
    Syntax { at: Location, message: String },

    /// The file parses but says something impossible (a shape that does not fit, a
    /// dangling input, a patch larger than its map, ...).
    #[error("{at}: {message}")]
    Invalid { at: Location, message: String },

    /// A merge looked for a point's stage in the store and it was not there.
    #[error("point \"{point}\": {stage} is not in the store")]
    Missing { point: String, stage: String },

    /// A search budget that is malformed, names an unknown or unpriced unit, or
    /// cannot be met; the message gives the cheapest reachable value where one exists.
    #[error("budget \"{budget}\": {message}")]
    Budget { budget: String, message: String },

    /// A layer whose operation the protocol table gives no price for.
    #[error("protocol \"{protocol}\" ({origin}): layer \"{layer}\": {op} is not priced: the table has no [{op}] entry{hint}")]
    NotPriced { protocol: String, origin: String, layer: String, op: String, hint: String },

    /// A party of a networked run stopped: a peer died, hung, refused or sent a frame
    /// the protocol does not expect (`party` says who reports it).
    #[error("{party}: {message}")]
    Network { party: String, message: String },

    /// An environment variable the tool reads holds a value it does not know.
    #[error("{var}: {message}")]
    Environment { var: String, message: String },

    /// `explore validate` ran, and some of its checks failed (the table says which).
    #[error("{failed} of {total} checks failed")]
    ChecksFailed { failed: usize, total: usize },
}

impl Error {
    pub fn invalid(file: &Path, within: Option<String>, message: impl Into<String>) -> Self {
        Error::Invalid { at: Location { file: file.to_path_buf(), within }, message: message.into() }
    }

    pub fn syntax(file: &Path, within: Option<String>, message: impl Into<String>) -> Self {
        Error::Syntax { at: Location { file: file.to_path_buf(), within }, message: message.into() }
    }

    /// Exit code for the CLI: 1 when checks ran and failed, 2 for anything wrong
    /// with the user's input files or settings.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::ChecksFailed { .. } => 1,
            _ => 2,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
