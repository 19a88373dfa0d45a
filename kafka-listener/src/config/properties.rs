//! Reading `.properties` files into key/value entries that remember their line.
//!
//! The actual syntax (separators, comments, continuations, escapes) is handled
//! by the `java-properties` crate. This module prepares its input, because
//! used as is the crate has three behaviours that would hurt our users:
//!
//! * it decodes ISO-8859-1 (as `java.util.Properties` does), which would turn
//!   UTF-8 topic names into mojibake; we read UTF-8 and hand it non-ASCII
//!   characters as `\uXXXX` escapes, which it decodes back;
//! * it unescapes comment text, so a harmless `# see C:\users` fails with
//!   "malformed \uxxxx encoding"; we blank comment lines (keeping the line
//!   break, so line numbers stay right);
//! * a continuation backslash on the very last line without a newline drops
//!   the whole entry; we make sure the text ends with a newline.

use std::path::Path;

use java_properties::{LineContent, PropertiesIter};

use super::ConfigError;

/// One `key=value` entry of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawEntry {
    pub(crate) key: String,
    pub(crate) value: String,
    /// 1-based line where the entry starts (the first line of a continued entry).
    pub(crate) line: usize,
}

/// Parses the bytes of a properties file; `path` is only used in errors.
///
/// Stops at the first syntax error, since the underlying parser cannot resume
/// after one.
pub(crate) fn parse(bytes: &[u8], path: &Path) -> Result<Vec<RawEntry>, ConfigError> {
    let parse_error = |line: usize, message: String| ConfigError::Parse {
        path: path.to_path_buf(),
        line,
        message,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        parse_error(
            line,
            "invalid UTF-8 (configuration files must be UTF-8)".to_owned(),
        )
    })?;
    // Editors on Windows like to start UTF-8 files with a byte-order mark,
    // which would otherwise become part of the first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let prepared = prepare(text).map_err(|(line, message)| parse_error(line, message))?;

    let mut entries = Vec::new();
    for line in PropertiesIter::new(prepared.as_bytes()) {
        let line = line.map_err(|e| {
            let message = e.to_string();
            // The crate appends " (line_number = N)"; we put the line in front instead.
            let message = match message.rfind(" (line_number") {
                Some(cut) => message[..cut].to_owned(),
                None => message,
            };
            parse_error(e.line_number().unwrap_or(0), message)
        })?;
        let number = line.line_number();
        if let LineContent::KVPair(key, value) = line.consume_content() {
            entries.push(RawEntry {
                key,
                value,
                line: number,
            });
        }
    }
    Ok(entries)
}

/// Rewrites UTF-8 text into the ASCII the parser expects, with the same
/// logical content and the same line numbering (see the module docs).
fn prepare(text: &str) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(text.len() + 16);
    // Whether the previous natural line ended in an odd number of backslashes,
    // i.e. this line continues an entry: then a leading `#` is data, not a comment.
    let mut continuing = false;
    for (index, (line, terminator)) in natural_lines(text).enumerate() {
        let trimmed = line.trim_start_matches([' ', '\t', '\x0c']);
        if !continuing && (trimmed.starts_with('#') || trimmed.starts_with('!')) {
            out.push('#');
            out.push_str(terminator);
            continue;
        }
        let mut backslashes = 0usize;
        for c in line.chars() {
            if c.is_ascii() {
                out.push(c);
                backslashes = if c == '\\' { backslashes + 1 } else { 0 };
                continue;
            }
            if backslashes % 2 == 1 {
                // `\é` means just `é` (unknown escapes drop the backslash);
                // keeping that backslash would escape the one we add below.
                out.pop();
            }
            backslashes = 0;
            let code = u32::from(c);
            if code > 0xFFFF {
                return Err((
                    index + 1,
                    format!(
                        "character {c:?} (U+{code:X}) is not supported in keys or values: \
                         only characters up to U+FFFF are"
                    ),
                ));
            }
            out.push_str(&format!("\\u{code:04x}"));
        }
        continuing = backslashes % 2 == 1;
        out.push_str(terminator);
    }
    if !out.ends_with(['\n', '\r']) {
        out.push('\n');
    }
    Ok(out)
}

/// Splits into lines the way the parser does (`\n`, `\r\n` or a lone `\r`),
/// keeping each terminator so the output has exactly the same line structure.
fn natural_lines(text: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, terminator, next) = match rest.find(['\n', '\r']) {
            Some(at) => {
                let width = if rest[at..].starts_with("\r\n") { 2 } else { 1 };
                (&rest[..at], &rest[at..at + width], &rest[at + width..])
            }
            None => (rest, "", ""),
        };
        rest = next;
        Some((line, terminator))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Vec<(String, String, usize)> {
        match parse(text.as_bytes(), Path::new("test.properties")) {
            Ok(entries) => entries
                .into_iter()
                .map(|e| (e.key, e.value, e.line))
                .collect(),
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    fn one(key: &str, value: &str, line: usize) -> (String, String, usize) {
        (key.to_owned(), value.to_owned(), line)
    }

    #[test]
    fn separators_equals_colon_and_whitespace() {
        assert_eq!(
            entries("a=1\nb:2\nc 3\nd = 4\ne\t:\t5\nf\n"),
            vec![
                one("a", "1", 1),
                one("b", "2", 2),
                one("c", "3", 3),
                one("d", "4", 4),
                one("e", "5", 5),
                one("f", "", 6),
            ]
        );
    }

    #[test]
    fn comments_with_hash_and_bang_are_skipped() {
        assert_eq!(
            entries("# comment\n  ! another\na=1 # not a comment\n"),
            vec![one("a", "1 # not a comment", 3)]
        );
    }

    #[test]
    fn comments_may_contain_backslashes_and_unicode() {
        // java-properties alone rejects this (it unescapes comment text).
        assert_eq!(
            entries("# see C:\\users\\me ☃ 😀\na=1\n"),
            vec![one("a", "1", 2)]
        );
    }

    #[test]
    fn continuation_joins_lines_and_keeps_first_line_number() {
        assert_eq!(
            entries("a=one, \\\n    two, \\\n    three\nb=after\n"),
            vec![one("a", "one, two, three", 1), one("b", "after", 4)]
        );
    }

    #[test]
    fn continued_line_starting_with_hash_is_data() {
        assert_eq!(entries("a=x\\\n#y\n"), vec![one("a", "x#y", 1)]);
    }

    #[test]
    fn even_backslashes_do_not_continue() {
        assert_eq!(
            entries("a=x\\\\\nb=y\n"),
            vec![one("a", "x\\", 1), one("b", "y", 2)]
        );
    }

    #[test]
    fn continuation_on_last_line_without_newline_keeps_entry() {
        assert_eq!(entries("a=x\\"), vec![one("a", "x", 1)]);
    }

    #[test]
    fn escapes_in_keys_and_values() {
        assert_eq!(
            entries("a\\=b\\:c\\ d=tab\\there\\nnl \\u00e9\\\\\n"),
            vec![one("a=b:c d", "tab\there\nnl é\\", 1)]
        );
    }

    #[test]
    fn utf8_is_read_as_utf8() {
        assert_eq!(
            entries("topic=заказы\nk=\\ä\n"),
            vec![one("topic", "заказы", 1), one("k", "ä", 2)]
        );
    }

    #[test]
    fn crlf_and_cr_line_endings_count_lines() {
        assert_eq!(
            entries("a=1\r\nb=2\rc=3\n"),
            vec![one("a", "1", 1), one("b", "2", 2), one("c", "3", 3)]
        );
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        assert_eq!(entries("\u{feff}a=1\n"), vec![one("a", "1", 1)]);
    }

    #[test]
    fn malformed_unicode_escape_names_file_and_line() {
        let err = parse(b"a=1\nb=\\u12g4\n", Path::new("x.properties"));
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err("x.properties:2: Malformed \\uxxxx encoding: not hex.".to_owned())
        );
    }

    #[test]
    fn invalid_utf8_names_line() {
        let err = parse(b"a=1\nb=\xff\n", Path::new("x.properties"));
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err("x.properties:2: invalid UTF-8 (configuration files must be UTF-8)".to_owned())
        );
    }

    #[test]
    fn astral_characters_in_values_are_rejected_with_line() {
        let err = parse("a=1\nb=😀\n".as_bytes(), Path::new("x.properties"));
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err(
                "x.properties:2: character '😀' (U+1F600) is not supported in keys or values: \
                 only characters up to U+FFFF are"
                    .to_owned()
            )
        );
    }
}
