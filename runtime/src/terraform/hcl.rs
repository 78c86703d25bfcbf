//! The few pieces of HCL syntax the generator writes: quoted strings and
//! `key = value` lines. Writing HCL needs no parser, only correct quoting.

/// `text` as an HCL quoted string: `"`, `\` and control characters escaped,
/// and `${` / `%{` doubled so that a topic name or schema text is never read
/// as an interpolation or a template directive.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Lines of `key = value` aligned on `=` the way `tofu fmt` aligns them
/// (consecutive single-line attributes share one column), indented by `indent` spaces.
pub fn attributes(indent: usize, pairs: &[(String, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        out.push_str(&format!("{:indent$}{key:<width$} = {value}\n", ""));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_what_hcl_would_interpret() {
        assert_eq!(quote("orders.created"), "\"orders.created\"");
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quote("${var.x} and %{if}"), "\"$${var.x} and %%{if}\"");
        assert_eq!(quote("cost $5 at 10%"), "\"cost $5 at 10%\"");
        assert_eq!(quote("line\nnext"), "\"line\\nnext\"");
    }

    #[test]
    fn attributes_align_on_the_equals_sign() {
        let pairs = [("a".to_string(), "1".to_string()), ("longer".to_string(), "2".to_string())];
        assert_eq!(attributes(2, &pairs), "  a      = 1\n  longer = 2\n");
    }
}
