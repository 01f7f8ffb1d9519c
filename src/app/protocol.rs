//! `explore protocol`: the built-in SecureNN price table, to copy and edit.

use crate::error::Result;
use crate::spec::protocol::SECURENN_TOML;

pub fn run() -> Result<()> {
    super::emit(None, SECURENN_TOML)
}
