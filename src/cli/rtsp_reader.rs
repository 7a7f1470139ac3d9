//! `edgewatch rtsp-reader`: one RTSP source's reader, started by the daemon.

use std::process::ExitCode;

#[cfg(feature = "rtsp")]
/// Serves one reader on stdin and stdout (source/rtsp_child.rs).
pub fn rtsp_reader() -> ExitCode {
    ExitCode::from(crate::source::rtsp_child::serve() as u8)
}

#[cfg(not(feature = "rtsp"))]
/// Serves one reader on stdin and stdout (source/rtsp_child.rs).
pub fn rtsp_reader() -> ExitCode {
    eprintln!("edgewatch: built without RTSP support (cargo feature `rtsp`)");
    ExitCode::FAILURE
}
