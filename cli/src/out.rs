//! What otpctl prints on standard output goes through one locked, buffered writer; a reader
//! that has gone away (`otpctl user list | head -1`) ends otpctl quietly, as it ends `cat`,
//! instead of a panic or an error line about a pipe the reader closed on purpose.

use std::io::{self, Write};

use crate::Failure;

/// Standard output, locked for the whole invocation.
pub type Stdout = io::BufWriter<io::StdoutLock<'static>>;

pub fn stdout() -> Stdout {
    io::BufWriter::new(io::stdout().lock())
}

/// The failure a write to standard output became: [`Failure::Closed`] when the reader closed
/// the pipe, else one line saying what stopped the output.
pub fn failed(e: io::Error) -> Failure {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Failure::Closed
    } else {
        Failure::Usage(format!("cannot write to standard output: {e}"))
    }
}

/// Writes `text` then a newline, and flushes: a short reply printed at the end of a command.
pub fn line(text: &str) -> Result<(), Failure> {
    let mut out = stdout();
    writeln!(out, "{text}").map_err(failed)?;
    out.flush().map_err(failed)
}
