//! Scenario files (stub).
use crate::Backend;
use crate::error::CliError;
use crate::output::Out;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub fn run_file(
    _file: &Path,
    _vars: &[String],
    _backend: &Backend,
    _out: &Out,
    _i: &Arc<AtomicBool>,
) -> Result<(), CliError> {
    Err(CliError::Usage("not yet".into()))
}
