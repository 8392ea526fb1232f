//! Line-exact CSV reading and writing.
//!
//! General CSV readers report positions loosely (blank lines, CRLF, quoted newlines); errors here must
//! name the exact 1-based line of the file, so records are read line by line: `\n` or `\r\n` ends a
//! line, a record continues on the next line while a quoted field is open (RFC 4180), blank lines are
//! skipped but counted.

use std::io::{self, BufRead, BufReader, Read};
use std::ops::Range;

/// Physical lines of an input, counted.
pub(crate) struct Lines<R> {
    input: BufReader<R>,
    /// Lines read so far (= the 1-based number of the last line read).
    line: u64,
}

impl<R: Read> Lines<R> {
    pub(crate) fn new(input: R) -> Self {
        Lines {
            input: BufReader::with_capacity(64 * 1024, input),
            line: 0,
        }
    }

    /// The 1-based number of the last line read (0 before the first).
    pub(crate) fn line(&self) -> u64 {
        self.line
    }

    /// Appends the next line to `buf` without its `\n` / `\r\n`; false at the end of the input.
    pub(crate) fn read_line(&mut self, buf: &mut Vec<u8>) -> io::Result<bool> {
        let start = buf.len();
        if self.input.read_until(b'\n', buf)? == 0 {
            return Ok(false);
        }
        self.line += 1;
        if buf.len() > start && buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.len() > start && buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        Ok(true)
    }
}

/// Why a record could not be read.
pub(crate) enum RecordError {
    /// I/O (or decompression) failure.
    Io(io::Error),
    /// Not valid CSV; the reason, with the record text as read so far.
    Malformed(&'static str),
}

impl From<io::Error> for RecordError {
    fn from(e: io::Error) -> Self {
        RecordError::Io(e)
    }
}

/// One CSV record: its unescaped fields and where it starts.
#[derive(Default)]
pub(crate) struct Record {
    /// The record as written (lines joined with `\n`), for error messages.
    raw: String,
    bytes: Vec<u8>,
    fields: String,
    bounds: Vec<Range<usize>>,
    /// 1-based line of the file the record starts on.
    line: u64,
}

impl Record {
    pub(crate) fn line(&self) -> u64 {
        self.line
    }

    pub(crate) fn len(&self) -> usize {
        self.bounds.len()
    }

    pub(crate) fn get(&self, i: usize) -> &str {
        &self.fields[self.bounds[i].clone()]
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &str> {
        self.bounds.iter().map(|r| &self.fields[r.clone()])
    }

    /// The record as written in the file.
    pub(crate) fn raw(&self) -> &str {
        &self.raw
    }

    /// Reads the next non-blank record; false at the end of the input.
    pub(crate) fn read<R: Read>(&mut self, lines: &mut Lines<R>) -> Result<bool, RecordError> {
        self.bytes.clear();
        loop {
            if !lines.read_line(&mut self.bytes)? {
                return Ok(false);
            }
            if !self.bytes.is_empty() {
                break;
            }
        }
        self.line = lines.line();
        // A quoted field is open while the number of quotes is odd (`""` escapes come in pairs).
        while self.bytes.contains(&b'"')
            && self.bytes.iter().filter(|&&b| b == b'"').count() % 2 == 1
        {
            self.bytes.push(b'\n');
            if !lines.read_line(&mut self.bytes)? {
                self.set_raw();
                return Err(RecordError::Malformed(
                    "a quoted field is not closed before the end of the input",
                ));
            }
        }
        self.raw.clear();
        match std::str::from_utf8(&self.bytes) {
            Ok(text) => self.raw.push_str(text),
            Err(_) => {
                self.set_raw();
                return Err(RecordError::Malformed("not valid UTF-8"));
            }
        }
        self.split()
    }

    fn set_raw(&mut self) {
        self.raw.clear();
        self.raw.push_str(&String::from_utf8_lossy(&self.bytes));
    }

    /// Splits `raw` (valid UTF-8 by now) into unescaped fields.
    fn split(&mut self) -> Result<bool, RecordError> {
        self.fields.clear();
        self.bounds.clear();
        let raw = self.raw.as_str();
        if !raw.contains('"') {
            // Fast path: no quoting, the fields are the raw text.
            self.fields.push_str(raw);
            let mut start = 0;
            for (i, _) in raw.match_indices(',') {
                self.bounds.push(start..i);
                start = i + 1;
            }
            self.bounds.push(start..raw.len());
            return Ok(true);
        }
        let mut rest = raw;
        loop {
            let start = self.fields.len();
            if let Some(quoted) = rest.strip_prefix('"') {
                // Quoted: up to the quote not followed by another quote.
                let mut s = quoted;
                loop {
                    let Some(q) = s.find('"') else {
                        return Err(RecordError::Malformed("unbalanced quotes"));
                    };
                    self.fields.push_str(&s[..q]);
                    s = &s[q + 1..];
                    if let Some(after) = s.strip_prefix('"') {
                        self.fields.push('"');
                        s = after;
                    } else {
                        break;
                    }
                }
                self.bounds.push(start..self.fields.len());
                if s.is_empty() {
                    return Ok(true);
                }
                let Some(after) = s.strip_prefix(',') else {
                    return Err(RecordError::Malformed(
                        "a closing quote must be followed by `,` or the end of the line",
                    ));
                };
                rest = after;
            } else {
                let end = rest.find(',').unwrap_or(rest.len());
                self.fields.push_str(&rest[..end]);
                self.bounds.push(start..self.fields.len());
                if end == rest.len() {
                    return Ok(true);
                }
                rest = &rest[end + 1..];
            }
        }
    }
}

/// Appends `field` to `out`, quoted when it holds a comma, a quote or a line break.
pub(crate) fn push_field(out: &mut Vec<u8>, field: &str) {
    if field
        .bytes()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    {
        out.push(b'"');
        for part in field.split('"').enumerate() {
            if part.0 > 0 {
                out.extend_from_slice(b"\"\"");
            }
            out.extend_from_slice(part.1.as_bytes());
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(field.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str) -> Vec<(u64, Vec<String>)> {
        let mut lines = Lines::new(text.as_bytes());
        let mut rec = Record::default();
        let mut out = Vec::new();
        while rec.read(&mut lines).ok().unwrap() {
            out.push((rec.line(), rec.iter().map(str::to_string).collect()));
        }
        out
    }

    #[test]
    fn lines_are_exact_with_blank_lines_crlf_and_quoted_newlines() {
        let got = records("h,i\r\n\r\na,\"b\"\"c\"\n\n\"x\ny\",z\nlast");
        let want: Vec<(u64, Vec<String>)> = vec![
            (1, vec!["h".into(), "i".into()]),
            (3, vec!["a".into(), "b\"c".into()]),
            (5, vec!["x\ny".into(), "z".into()]),
            (7, vec!["last".into()]),
        ];
        assert_eq!(got, want);
        assert_eq!(
            records("a,,\n"),
            vec![(1, vec!["a".into(), "".into(), "".into()])]
        );
        assert_eq!(records("\"\"\n"), vec![(1, vec![String::new()])]);
    }

    #[test]
    fn malformed_quoting_is_an_error() {
        for text in ["\"a\"b,c\n", "\"open\nstill open\n", "a,\"b\"\"\n"] {
            let mut lines = Lines::new(text.as_bytes());
            let mut rec = Record::default();
            assert!(
                matches!(rec.read(&mut lines), Err(RecordError::Malformed(_))),
                "{text:?}"
            );
            assert_eq!(rec.line(), 1, "{text:?}");
        }
    }

    #[test]
    fn push_field_quotes_only_when_needed() {
        let mut out = Vec::new();
        for f in ["plain", "a,b", "say \"hi\"", "two\nlines", ""] {
            push_field(&mut out, f);
            out.push(b'|');
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"two\nlines\"||"
        );
    }
}
