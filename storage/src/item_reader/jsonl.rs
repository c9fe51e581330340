//! JSON Lines: one item per line [DG-reader]; blank (empty or whitespace-only) lines are
//! skipped [3P floci]; a `\r` before the newline is not part of the line. `ItemsPointer` does
//! not apply (features.md §2.3).

use super::text::{Frame, FrameError, Framer, Step};

pub(crate) struct JsonlFramer {
    /// Start of the current line in the buffer.
    start: usize,
    /// Where the newline search resumes.
    pos: usize,
}

impl JsonlFramer {
    pub fn new() -> Self {
        JsonlFramer { start: 0, pos: 0 }
    }
}

fn blank(line: &[u8]) -> bool {
    line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

impl Framer for JsonlFramer {
    fn next(&mut self, buf: &[u8], eof: bool) -> Result<Step, FrameError> {
        loop {
            let newline = memchr::memchr(b'\n', &buf[self.pos..]).map(|n| self.pos + n);
            let (end, next) = match newline {
                Some(at) => (at, at + 1),
                None if eof => (buf.len(), buf.len()),
                None => {
                    let consumed = self.start;
                    self.pos = buf.len() - consumed;
                    self.start = 0;
                    return Ok(Step::NeedMore { consumed });
                }
            };
            let mut line_end = end;
            if line_end > self.start && buf[line_end - 1] == b'\r' {
                line_end -= 1;
            }
            let start = self.start;
            if blank(&buf[start..line_end]) {
                if next == buf.len() && newline.is_none() {
                    self.start = 0;
                    self.pos = 0;
                    return Ok(Step::End { consumed: buf.len() });
                }
                self.start = next;
                self.pos = next;
                continue;
            }
            self.start = 0;
            self.pos = 0;
            return Ok(Step::Record(Frame { start, end: line_end, value_start: start, member: false, next }));
        }
    }
}
