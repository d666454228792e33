//! The last step before a log line reaches stderr: every character that could
//! forge or hide text is escaped, whatever logged it and whatever the format.
//!
//! Values from outside (a request path at `debug`, a file name in a reload
//! error, a library's own message about a peer) reach log lines through many
//! call sites; escaping each one by hand misses some. Instead the writer sees
//! each whole formatted line and escapes control characters (all but the
//! line's final newline), line and paragraph separators (U+2028, U+2029)
//! and the invisible characters that reorder or hide text (bidi overrides,
//! zero-width), as `\uXXXX`: readable in a text line, and a valid escape
//! inside a JSON string, so JSON lines stay JSON. Colours (ANSI) are off for
//! the same reason: an escape sequence is exactly what is refused here.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Wraps a [`MakeWriter`] so that every line written through it is escaped.
#[derive(Debug, Clone, Copy)]
pub struct Escaping<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Escaping<M> {
    type Writer = EscapingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapingWriter(self.0.make_writer())
    }
}

/// Escapes what it is given (one whole event per `write`, as
/// `tracing-subscriber` writes) and writes it all to the inner writer.
#[derive(Debug)]
pub struct EscapingWriter<W>(W);

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        match escape_line(&text) {
            None => self.0.write_all(buf)?,
            Some(escaped) => self.0.write_all(escaped.as_bytes())?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Whether `c` is escaped in a log line.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// `line` with its unsafe characters escaped, or `None` when it has none
/// (the common case: no copy). A final `\n` is the line's end and stays.
pub fn escape_line(line: &str) -> Option<String> {
    let (body, end) = match line.strip_suffix('\n') {
        Some(body) => (body, "\n"),
        None => (line, ""),
    };
    if !body.chars().any(unsafe_char) {
        return None;
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in body.chars() {
        if unsafe_char(c) {
            // Every unsafe character is in the Basic Multilingual Plane.
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out.push_str(end);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_are_not_copied() {
        assert_eq!(escape_line("INFO serving addr=127.0.0.1:50051\n"), None);
        assert_eq!(escape_line("æøå – “quoted” 😀\n"), None);
    }

    #[test]
    fn forged_lines_and_hidden_text_are_escaped() {
        let line = "DEBUG path=/a\r\nINFO forged\u{1b}[31m\u{0}\u{2028}\u{2029}\u{202e}x\t\n";
        assert_eq!(
            escape_line(line).unwrap(),
            "DEBUG path=/a\\u000d\\u000aINFO forged\\u001b[31m\\u0000\\u2028\\u2029\\u202ex\\u0009\n"
        );
    }

    /// A JSON line stays one valid JSON document with the same values.
    #[test]
    fn json_lines_stay_json() {
        let value = serde_json::json!({"path": "/a\u{2028}b\u{202e}c", "n": 1});
        let line = format!("{value}\n");
        let escaped = escape_line(&line).unwrap();
        assert!(!escaped.contains('\u{2028}'));
        let back: serde_json::Value = serde_json::from_str(escaped.trim_end()).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn the_writer_writes_everything_escaped() {
        let mut out = Vec::new();
        let mut w = EscapingWriter(&mut out);
        assert_eq!(w.write(b"a\x1bb\n").unwrap(), 4);
        w.write_all(b"plain\n").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a\\u001bb\nplain\n");
    }
}
