//! `edgewatch cameras`: the V4L2 cameras this machine has.

use std::process::ExitCode;

#[cfg(feature = "camera")]
/// Lists cameras with their stable paths, formats, sizes and rates.
pub fn cameras() -> ExitCode {
    print!("{}", crate::source::camera::list());
    ExitCode::SUCCESS
}

#[cfg(not(feature = "camera"))]
/// Lists cameras with their stable paths, formats, sizes and rates.
pub fn cameras() -> ExitCode {
    eprintln!("edgewatch: built without camera support (cargo feature `camera`); rebuild with it to list cameras");
    ExitCode::FAILURE
}
