//! `${NAME}` / `${NAME:default}` placeholder resolution.
//!
//! A name is looked up first as a configuration key (any key, not only
//! `kafka.*` ones, so `${app.topic}` works), then as an environment variable,
//! then the default is used. Looked-up values and defaults may contain
//! placeholders themselves; a loop is reported instead of overflowing the
//! stack. `\${` stands for a literal `${`.

use super::ConfigError;

/// Nesting deeper than this is certainly a mistake, and bounding it keeps
/// hostile input from exhausting the stack through `${${${...` in defaults.
const MAX_DEPTH: usize = 32;

/// Where placeholder names are looked up.
pub(crate) trait Lookup {
    /// A configuration key's raw (unresolved) value and the `at` text naming
    /// where it came from (used in errors about placeholders inside it).
    fn key(&self, name: &str) -> Option<(&str, String)>;
    /// An environment variable's value.
    fn env(&self, name: &str) -> Option<&str>;
}

/// Resolves every placeholder in `text`; `at` names where `text` came from.
pub(crate) fn resolve(text: &str, at: &str, lookup: &dyn Lookup) -> Result<String, ConfigError> {
    Resolver {
        lookup,
        stack: Vec::new(),
    }
    .resolve(text, at, 0)
}

struct Resolver<'l> {
    lookup: &'l dyn Lookup,
    /// Names being resolved right now, outermost first, for cycle detection.
    stack: Vec<String>,
}

impl Resolver<'_> {
    fn resolve(&mut self, text: &str, at: &str, depth: usize) -> Result<String, ConfigError> {
        if depth > MAX_DEPTH {
            return Err(ConfigError::MalformedPlaceholder {
                at: at.to_owned(),
                problem: format!("placeholders nested more than {MAX_DEPTH} levels deep"),
            });
        }
        // Fast path: the vast majority of values have no placeholder at all.
        if !text.contains("${") {
            return Ok(text.to_owned());
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if rest[..start].ends_with('\\') {
                out.push_str(&rest[..start - 1]);
                out.push_str("${");
                rest = &rest[start + 2..];
                continue;
            }
            out.push_str(&rest[..start]);
            let body_start = start + 2;
            let Some(len) = matching_brace(&rest[body_start..]) else {
                return Err(ConfigError::MalformedPlaceholder {
                    at: at.to_owned(),
                    problem: "unterminated placeholder: \"${\" without a matching \"}\" \
                              (write \\${ for a literal \"${\")"
                        .to_owned(),
                });
            };
            let body = &rest[body_start..body_start + len];
            out.push_str(&self.placeholder(body, at, depth)?);
            rest = &rest[body_start + len + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Resolves the inside of one `${...}`.
    fn placeholder(&mut self, body: &str, at: &str, depth: usize) -> Result<String, ConfigError> {
        let (name, default) = split_default(body);
        // A name may itself be built from placeholders, as in Spring.
        let name = self.resolve(name, at, depth + 1)?;
        let name = name.trim();
        if name.is_empty() {
            return Err(ConfigError::MalformedPlaceholder {
                at: at.to_owned(),
                problem: "empty placeholder name in \"${}\"".to_owned(),
            });
        }
        if let Some(pos) = self.stack.iter().position(|n| n == name) {
            let mut chain = self.stack[pos..].to_vec();
            chain.push(name.to_owned());
            return Err(ConfigError::PlaceholderCycle {
                at: at.to_owned(),
                chain,
            });
        }
        let lookup = self.lookup;
        let found = match lookup.key(name) {
            Some((value, key_at)) => Some((value, key_at)),
            None => lookup.env(name).map(|value| (value, format!("env {name}"))),
        };
        match (found, default) {
            (Some((value, value_at)), _) => {
                self.stack.push(name.to_owned());
                let resolved = self.resolve(value, &value_at, depth + 1);
                self.stack.pop();
                resolved
            }
            (None, Some(default)) => self.resolve(default, at, depth + 1),
            (None, None) => Err(ConfigError::UnresolvedPlaceholder {
                at: at.to_owned(),
                name: name.to_owned(),
            }),
        }
    }
}

/// Length of the text up to the `}` closing a placeholder whose `${` has
/// just been consumed, skipping nested `${...}` pairs.
fn matching_brace(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 2;
                continue;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Splits `NAME:default` at the first `:` outside nested placeholders.
fn split_default(body: &str) -> (&str, Option<&str>) {
    let bytes = body.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 2;
                continue;
            }
            b'}' => depth = depth.saturating_sub(1),
            b':' if depth == 0 => return (&body[..i], Some(&body[i + 1..])),
            _ => {}
        }
        i += 1;
    }
    (body, None)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    struct Maps {
        keys: BTreeMap<&'static str, &'static str>,
        env: BTreeMap<&'static str, &'static str>,
    }

    impl Lookup for Maps {
        fn key(&self, name: &str) -> Option<(&str, String)> {
            self.keys.get(name).map(|v| (*v, format!("key {name}")))
        }
        fn env(&self, name: &str) -> Option<&str> {
            self.env.get(name).copied()
        }
    }

    fn run(
        text: &str,
        keys: &[(&'static str, &'static str)],
        env: &[(&'static str, &'static str)],
    ) -> Result<String, String> {
        let maps = Maps {
            keys: keys.iter().copied().collect(),
            env: env.iter().copied().collect(),
        };
        resolve(text, "here", &maps).map_err(|e| e.to_string())
    }

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(run("a $ {b} }", &[], &[]), Ok("a $ {b} }".to_owned()));
    }

    #[test]
    fn key_before_env_before_default() {
        assert_eq!(
            run("${X:d}", &[("X", "key")], &[("X", "env")]),
            Ok("key".to_owned())
        );
        assert_eq!(run("${X:d}", &[], &[("X", "env")]), Ok("env".to_owned()));
        assert_eq!(run("${X:d}", &[], &[]), Ok("d".to_owned()));
        assert_eq!(run("${X:}", &[], &[]), Ok(String::new()));
    }

    #[test]
    fn default_may_contain_colons_and_placeholders() {
        assert_eq!(
            run("${HOST:localhost:9092}", &[], &[]),
            Ok("localhost:9092".to_owned())
        );
        assert_eq!(run("${A:${B:b}-x}!", &[], &[]), Ok("b-x!".to_owned()));
    }

    #[test]
    fn nested_values_are_resolved_with_their_own_location() {
        assert_eq!(
            run("<${a}>", &[("a", "${b}"), ("b", "B")], &[]),
            Ok("<B>".to_owned())
        );
        assert_eq!(
            run("${a}", &[("a", "${MISSING}")], &[]),
            Err("key a: unresolved placeholder ${MISSING} \
                 (no key or environment variable MISSING, and no default)"
                .to_owned())
        );
    }

    #[test]
    fn cycles_are_reported() {
        assert_eq!(
            run("${a}", &[("a", "x${b}"), ("b", "${a}")], &[]),
            Err("key b: placeholder cycle ${a} -> ${b} -> ${a}".to_owned())
        );
        assert_eq!(
            run("${a}", &[("a", "${a}")], &[]),
            Err("key a: placeholder cycle ${a} -> ${a}".to_owned())
        );
    }

    #[test]
    fn same_name_twice_in_a_row_is_not_a_cycle() {
        assert_eq!(run("${a}${a}", &[("a", "1")], &[]), Ok("11".to_owned()));
    }

    #[test]
    fn escaped_placeholder_is_literal() {
        assert_eq!(run("\\${a}", &[("a", "1")], &[]), Ok("${a}".to_owned()));
    }

    #[test]
    fn malformed() {
        assert_eq!(
            run("x${a", &[], &[]),
            Err(
                "here: unterminated placeholder: \"${\" without a matching \"}\" \
                 (write \\${ for a literal \"${\")"
                    .to_owned()
            )
        );
        assert_eq!(
            run("${}", &[], &[]),
            Err("here: empty placeholder name in \"${}\"".to_owned())
        );
        let deep = format!("{}x{}", "${A:".repeat(40), "}".repeat(40));
        assert_eq!(
            run(&deep, &[], &[]),
            Err(format!(
                "here: placeholders nested more than {MAX_DEPTH} levels deep"
            ))
        );
    }
}
