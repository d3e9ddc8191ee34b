//! Mapping between TOML byte offsets, key paths and line/column positions.
//!
//! toml's errors carry a byte span but not the key path, and values checked after parsing carry
//! neither. Both are recovered here from a second, span-only parse of the same text: every key
//! and value is deserialised as [`toml::Spanned`], flattened into `(path, key span, value span)`
//! entries. That second parse only happens on the error path, so valid files pay nothing.

use std::ops::Range;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

use crate::error::ConfigError;

/// Parses `text` as `T`, turning toml's error into a [`ConfigError`] with line, column and key.
pub(crate) fn parse_toml<T>(text: &str, source_name: &str) -> Result<T, ConfigError>
where
    T: serde::de::DeserializeOwned,
{
    toml::from_str(text).map_err(|err| toml_error(&err, text, source_name))
}

/// Converts a toml syntax or deserialisation error into a located [`ConfigError`].
pub(crate) fn toml_error(err: &toml::de::Error, text: &str, source_name: &str) -> ConfigError {
    // toml's messages can span lines ("invalid string\nexpected ..."); ours are one line.
    let message = err
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    // toml has no words for some errors (a lone carriage return, a control character in a
    // comment): name what is at the position instead of an empty message.
    let message = if message.is_empty() {
        unexplained(text, err.span())
    } else {
        message
    };
    let mut out = ConfigError::new(source_name, message.clone());
    let Some(span) = err.span() else {
        if let Some(field) = missing_field(&message) {
            out.key = Some(field.to_owned());
        }
        return out;
    };
    let index = SpanIndex::build(text);
    if let Some(field) = missing_field(&message) {
        // A missing field is reported at the span of the table that lacks it. An array of
        // tables can share that span with its element; children come later, so search from
        // the end for the deepest match.
        let parent = index
            .as_ref()
            .and_then(|i| i.entries.iter().rev().find(|e| e.value_span == span));
        match parent {
            Some(parent) => {
                out.key = Some(join_path(&parent.path, field));
                let (line, column) = line_col(text, span.start);
                out = out.at(line, column);
            }
            // The document root lacks it: there is no line to point at.
            None => out.key = Some(field.to_owned()),
        }
        return out;
    }
    let (line, column) = line_col(text, span.start);
    out = out.at(line, column);
    out.key = match &index {
        Some(index) => index.path_at(span.start).map(str::to_owned),
        // The text does not parse, so fall back to reading the key off the offending line.
        None => key_on_line(text, line),
    };
    out
}

/// What is wrong at `span`, for a toml error that came without a message.
fn unexplained(text: &str, span: Option<Range<usize>>) -> String {
    let found = span
        .and_then(|span| text.get(span.start..))
        .and_then(|rest| rest.chars().next());
    match found {
        Some('\r') => "a carriage return must be followed by a line feed".to_owned(),
        Some(c) if c.is_control() => {
            format!(
                "control character U+{:04X} is not allowed here",
                u32::from(c)
            )
        }
        Some(c) => format!("unexpected `{c}`"),
        None => "invalid TOML".to_owned(),
    }
}

/// Locates the value of a key path (e.g. `bitrate`, `station[3].speakers`) in `text`,
/// for errors found after parsing.
pub(crate) fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let index = SpanIndex::build(text)?;
    let entry = index.entries.iter().find(|e| e.path == path)?;
    Some(line_col(text, entry.value_span.start))
}

/// A [`ConfigError`] for a key path in a file, with its line when the file has the key.
pub(crate) fn error_at_path(
    text: &str,
    source_name: &str,
    path: &str,
    message: impl Into<String>,
) -> ConfigError {
    let err = ConfigError::new(source_name, message).with_key(path);
    match locate(text, path) {
        Some((line, column)) => err.at(line, column),
        None => err,
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

fn join_path(parent: &str, key: &str) -> String {
    let key = quote_key(key);
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

/// Keys print bare when TOML would accept them bare, so paths read like the file.
fn quote_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// Best-effort key for a line of a file that does not parse: `key = ...` on that line, prefixed
/// by the table header above it.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let current = lines.get(line.checked_sub(1)?)?;
    let (lhs, _) = current.split_once('=')?;
    let key = lhs.trim();
    if key.is_empty() || key.starts_with('[') || key.starts_with('#') {
        return None;
    }
    let mut prefix = String::new();
    for (i, l) in lines[..line - 1].iter().enumerate().rev() {
        let l = l.trim();
        if let Some(name) = l.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = name.trim();
            let header = format!("[[{name}]]");
            let index = lines[..=i]
                .iter()
                .filter(|h| h.trim().starts_with(&header))
                .count()
                .saturating_sub(1);
            prefix = format!("{name}[{index}].");
            break;
        }
        if let Some(name) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
            prefix = format!("{}.", name.trim());
            break;
        }
    }
    Some(format!("{prefix}{key}"))
}

/// Every key and array element of a document, flattened, with its spans.
#[derive(Debug)]
struct SpanIndex {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    path: String,
    key_span: Option<Range<usize>>,
    value_span: Range<usize>,
}

impl SpanIndex {
    /// `None` when the text does not parse as TOML (or holds a datetime, which this span-only
    /// parse does not model); callers then fall back to line heuristics.
    fn build(text: &str) -> Option<SpanIndex> {
        let root: Node = toml::from_str(text).ok()?;
        let mut entries = Vec::new();
        flatten(&root, "", &mut entries);
        Some(SpanIndex { entries })
    }

    /// The most specific path at a byte offset: a key containing it wins, else the narrowest
    /// value. Descending by containment would not work, because a `[[station]]` table's span
    /// covers only its header, not the keys below it.
    fn path_at(&self, offset: usize) -> Option<&str> {
        let contains = |r: &Range<usize>| {
            r.start <= offset && (offset < r.end || r.is_empty() && offset == r.start)
        };
        if let Some(e) = self
            .entries
            .iter()
            .find(|e| e.key_span.as_ref().is_some_and(contains))
        {
            return Some(&e.path);
        }
        self.entries
            .iter()
            .filter(|e| contains(&e.value_span))
            .min_by_key(|e| e.value_span.len())
            .map(|e| e.path.as_str())
    }
}

fn flatten(node: &Node, path: &str, out: &mut Vec<Entry>) {
    match node {
        Node::Table(items) => {
            for (key, value) in items {
                let child = join_path(path, key.get_ref());
                out.push(Entry {
                    path: child.clone(),
                    key_span: Some(key.span()),
                    value_span: value.span(),
                });
                flatten(value.get_ref(), &child, out);
            }
        }
        Node::Array(items) => {
            for (i, value) in items.iter().enumerate() {
                let child = format!("{path}[{i}]");
                out.push(Entry {
                    path: child.clone(),
                    key_span: None,
                    value_span: value.span(),
                });
                flatten(value.get_ref(), &child, out);
            }
        }
        Node::Leaf => {}
    }
}

/// The shape of a TOML document with nothing kept but structure and spans.
#[derive(Debug)]
enum Node {
    Table(Vec<(Spanned<String>, Spanned<Node>)>),
    Array(Vec<Spanned<Node>>),
    Leaf,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(entry) = map.next_entry()? {
            items.push(entry);
        }
        Ok(Node::Table(items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
# comment
top = 1
[district]
name = \"Bình Sơn\"

[[station]]
id = \"a\"

[[station]]
id = \"b\"
sinks = [
  \"x\",
  \"y\",
]
";

    /// Found by the `config_parse` fuzz target (minimised: a lone `\r`): toml reports these
    /// with an empty message, and the operator got `server.toml:1:1: ` and nothing else.
    #[test]
    fn errors_toml_leaves_unexplained_still_say_what_is_wrong() {
        for (text, line, column, message) in [
            (
                "\r",
                1,
                1,
                "a carriage return must be followed by a line feed",
            ),
            (
                "a = 1\n\r",
                2,
                1,
                "a carriage return must be followed by a line feed",
            ),
            (
                "# a\0b\n",
                1,
                4,
                "control character U+0000 is not allowed here",
            ),
            (
                "a = 1\n# \u{7f}\n",
                2,
                3,
                "control character U+007F is not allowed here",
            ),
        ] {
            let err = parse_toml::<toml::Table>(text, "server.toml").expect_err(text);
            assert_eq!(err.message, message, "{text:?}");
            assert_eq!(
                (err.line, err.column),
                (Some(line), Some(column)),
                "{text:?}"
            );
        }
    }

    #[test]
    fn locates_paths() {
        assert_eq!(locate(DOC, "top"), Some((2, 7)));
        assert_eq!(locate(DOC, "district.name"), Some((4, 8)));
        assert_eq!(locate(DOC, "station[1].id"), Some((10, 6)));
        assert_eq!(locate(DOC, "station[1].sinks[1]"), Some((13, 3)));
        assert_eq!(locate(DOC, "nope"), None);
    }

    #[test]
    fn path_at_prefers_the_key_then_the_narrowest_value() {
        let index = SpanIndex::build(DOC).expect("DOC parses");
        let at = |needle: &str| DOC.find(needle).expect("needle in DOC");
        assert_eq!(index.path_at(at("top")), Some("top"));
        assert_eq!(index.path_at(at("\"b\"")), Some("station[1].id"));
        assert_eq!(index.path_at(at("\"y\"")), Some("station[1].sinks[1]"));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let text = "name = \"Bình\" x\n";
        let offset = text.find(" x").expect("present") + 1;
        assert_eq!(line_col(text, offset), (1, 15));
        // An offset inside a multi-byte character snaps back instead of panicking.
        let inside = text.find('ì').expect("present") + 1;
        assert_eq!(line_col(text, inside), (1, 10));
        assert_eq!(line_col(text, 10_000), (2, 1));
    }

    #[test]
    fn syntax_error_names_line_and_key() {
        let text = "[district]\nid = \"x\"\nname = \"unterminated\n";
        let err = parse_toml::<toml::Table>(text, "d.toml").expect_err("bad string");
        assert_eq!(err.line, Some(3));
        assert_eq!(err.key.as_deref(), Some("district.name"));
        assert!(err.to_string().starts_with("d.toml:3:"), "{err}");
    }

    #[test]
    fn syntax_error_inside_an_array_of_tables_gets_an_index() {
        let text = "[[s]]\na = 1\n[[s]]\na = 1\nb = 2x\n";
        let err = parse_toml::<toml::Table>(text, "d.toml").expect_err("bad number");
        assert_eq!(err.line, Some(5));
        assert_eq!(err.key.as_deref(), Some("s[1].b"));
    }

    #[test]
    fn odd_keys_are_quoted() {
        assert_eq!(join_path("a", "b c"), "a.\"b c\"");
        assert_eq!(join_path("", "bitrate"), "bitrate");
    }
}
