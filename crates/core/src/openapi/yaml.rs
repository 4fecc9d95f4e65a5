//! The few YAML shapes the generated blocks need, written so that both YAML 1.2 readers and
//! PyYAML (YAML 1.1: `yes` is a boolean, `1e3` a string) read the values that were meant:
//! strings are plain only when they are identifiers no reader takes for anything else, and
//! floats always have a `.` and a signed exponent.

use std::fmt::Write as _;

/// A YAML (or JSON) value whose mappings keep their order.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

/// A mapping from `(key, value)` pairs, in order.
pub fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Node)>) -> Node {
    Node::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

/// A string.
pub fn s(text: impl Into<String>) -> Node {
    Node::Str(text.into())
}

/// A number: an integer when it is one (and small enough to be exact), else a float.
#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
pub fn num(x: f64) -> Node {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        Node::Int(x as i64)
    } else {
        Node::Float(x)
    }
}

/// `{"$ref": "#/components/<kind>/<name>"}`.
pub fn reference(kind: &str, name: &str) -> Node {
    map([("$ref", s(format!("#/components/{kind}/{name}")))])
}

impl Node {
    /// Parses JSON text, keeping the order of every object's members.
    pub fn from_json(text: &str) -> Result<Node, serde_json::Error> {
        serde_json::from_str(text)
    }

    fn is_scalar(&self) -> bool {
        !matches!(self, Node::Seq(_) | Node::Map(_))
    }

    fn scalar(&self) -> String {
        match self {
            Node::Null => "null".to_owned(),
            Node::Bool(b) => b.to_string(),
            Node::Int(i) => i.to_string(),
            Node::Float(x) => float(*x),
            Node::Str(text) => string(text),
            Node::Seq(_) | Node::Map(_) => unreachable!("a scalar"),
        }
    }
}

/// A float as both YAML versions read it: `0.5`, `100.0`, `1.0e+300`.
fn float(x: f64) -> String {
    let text = format!("{x:?}");
    match text.split_once('e') {
        None => text,
        Some((mantissa, exponent)) => {
            let mantissa = if mantissa.contains('.') {
                mantissa.to_owned()
            } else {
                format!("{mantissa}.0")
            };
            let exponent = if exponent.starts_with('-') {
                exponent.to_owned()
            } else {
                format!("+{exponent}")
            };
            format!("{mantissa}e{exponent}")
        }
    }
}

/// A string: plain when it is an identifier that every YAML reader takes for a string, else
/// double-quoted (JSON's escapes are YAML's).
fn string(text: &str) -> String {
    const SPECIAL: [&str; 11] = [
        "y", "n", "yes", "no", "true", "false", "on", "off", "null", "nan", "inf",
    ];
    let plain = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'))
        && !SPECIAL.contains(&text.to_ascii_lowercase().as_str());
    if plain {
        text.to_owned()
    } else {
        serde_json::Value::String(text.to_owned()).to_string()
    }
}

/// Writes the entries of `node` (a mapping) at `indent` spaces, one `key: value` per line.
pub fn write_entries(node: &Node, indent: usize, out: &mut String) {
    if let Node::Map(entries) = node {
        for (key, value) in entries {
            pad(out, indent);
            out.push_str(&string(key));
            out.push(':');
            write_value(value, indent, out);
        }
    }
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// Writes what follows `key:` (or `-`) for an entry at `indent`.
fn write_value(node: &Node, indent: usize, out: &mut String) {
    match node {
        scalar if scalar.is_scalar() => {
            let _ = writeln!(out, " {}", scalar.scalar());
        }
        Node::Map(entries) if entries.is_empty() => out.push_str(" {}\n"),
        Node::Seq(items) if items.is_empty() => out.push_str(" []\n"),
        Node::Seq(items) if items.iter().all(Node::is_scalar) => {
            let items: Vec<String> = items.iter().map(Node::scalar).collect();
            let _ = writeln!(out, " [{}]", items.join(", "));
        }
        Node::Map(_) => {
            out.push('\n');
            write_entries(node, indent + 2, out);
        }
        Node::Seq(items) => {
            out.push('\n');
            for item in items {
                pad(out, indent + 2);
                out.push('-');
                match item {
                    Node::Map(entries) if !entries.is_empty() => {
                        // The first entry shares the dash's line; the rest align with it.
                        let mut block = String::new();
                        write_entries(item, indent + 4, &mut block);
                        out.push(' ');
                        out.push_str(&block[indent + 4..]);
                    }
                    other => write_value(other, indent + 2, out),
                }
            }
        }
        _ => unreachable!("every node kind is handled above"),
    }
}

impl<'de> serde::Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> serde::de::Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E>(self, value: bool) -> Result<Node, E> {
        Ok(Node::Bool(value))
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Node, E> {
        i64::try_from(value)
            .map(Node::Int)
            .map_err(|_| E::custom("an integer beyond i64"))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Node, E> {
        Ok(Node::Int(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Node, E> {
        Ok(Node::Float(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Node, E> {
        Ok(Node::Str(value.to_owned()))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = access.next_entry::<String, Node>()? {
            entries.push(entry);
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(node: &Node) -> String {
        let mut out = String::new();
        write_entries(node, 2, &mut out);
        out
    }

    #[test]
    fn floats_keep_a_point_and_a_signed_exponent() {
        assert_eq!(float(0.5), "0.5");
        assert_eq!(float(100.0), "100.0");
        assert_eq!(float(1e300), "1.0e+300");
        assert_eq!(float(5e-324), "5.0e-324");
        assert_eq!(float(-1.5e-10), "-1.5e-10");
    }

    #[test]
    fn strings_a_reader_could_take_for_something_else_are_quoted() {
        for (text, written) in [
            ("setosa", "setosa"),
            ("sepal_length", "sepal_length"),
            ("$ref", "$ref"),
            ("yes", "\"yes\""),
            ("No", "\"No\""),
            ("null", "\"null\""),
            ("NaN", "\"NaN\""),
            ("0", "\"0\""),
            ("1.0.0", "\"1.0.0\""),
            ("a b", "\"a b\""),
            ("od280/od315", "\"od280/od315\""),
            ("#/components/schemas/X", "\"#/components/schemas/X\""),
            ("", "\"\""),
            ("say \"hi\"", "\"say \\\"hi\\\"\""),
        ] {
            assert_eq!(string(text), written, "{text}");
        }
    }

    #[test]
    fn blocks_nest_by_two_spaces_with_short_scalar_lists_in_flow_style() {
        let node = map([
            ("name", s("x")),
            ("row", Node::Seq(vec![num(5.1), num(3.0), s("NaN")])),
            (
                "items",
                Node::Seq(vec![
                    map([("pointer", s("/data/1")), ("detail", s("must be a number"))]),
                    map([("a", Node::Seq(vec![map([("b", Node::Null)])]))]),
                ]),
            ),
            ("empty", Node::Map(Vec::new())),
        ]);
        assert_eq!(
            yaml(&node),
            "  name: x\n  row: [5.1, 3, \"NaN\"]\n  items:\n    - pointer: \"/data/1\"\n      detail: \"must be a number\"\n    - a:\n        - b: null\n  empty: {}\n"
        );
    }

    #[test]
    fn json_objects_keep_their_member_order() {
        let node = Node::from_json(r#"{"z": 1, "a": [1.5, null, true], "m": {"y": "1"}}"#).unwrap();
        assert_eq!(
            node,
            map([
                ("z", Node::Int(1)),
                (
                    "a",
                    Node::Seq(vec![Node::Float(1.5), Node::Null, Node::Bool(true)])
                ),
                ("m", map([("y", s("1"))])),
            ])
        );
    }
}
