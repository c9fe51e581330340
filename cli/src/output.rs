//! Standard output for results. A reader that goes away (`stepmap run … | head -1`) ends the
//! output, not the command: `println!` would panic on the broken pipe, and the exit code is the
//! command's (e.g. the execution's status), whoever reads what it prints.

use std::io::Write;

/// Writes one line to standard output; a broken pipe is ignored, any other failure reported
/// on standard error.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(error) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if error.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("stepmap: cannot write to standard output: {error}");
        }
    }
}

/// `println!` through [`line`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}
