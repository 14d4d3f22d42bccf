//! What may be shown of untrusted or secret-bearing input: a URL as its origin only, a JSON
//! parse error without the text it was parsing. Logs and error messages go through here.

use std::fmt;

/// The part of a URL that is safe to log: `scheme://host[:port]`, without credentials,
/// path, query or fragment. Anything that does not parse logs as `<redacted URL>`.
pub fn url_for_log(url: &str) -> String {
    match url::Url::parse(url.trim()) {
        Ok(u) => match u.host_str() {
            Some(host) if !host.is_empty() => match u.port() {
                Some(port) => format!("{}://{}:{}", u.scheme(), host, port),
                None => format!("{}://{}", u.scheme(), host),
            },
            _ => "<redacted URL>".to_string(),
        },
        Err(_) => "<redacted URL>".to_string(),
    }
}

/// A plain message that quotes nothing it was given: the detail behind an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail(pub String);

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Detail {}

/// Describes a JSON error without quoting the input (which may hold the token): the kind of
/// error and where, or serde's "missing field `x`" / "unknown field" messages, which name
/// only keys.
pub fn json_error_detail(e: &serde_json::Error) -> Detail {
    use serde_json::error::Category;
    let msg = e.to_string();
    let keeps_no_value = msg.starts_with("missing field") || msg.starts_with("duplicate field");
    let text = match e.classify() {
        Category::Data if keeps_no_value => msg,
        Category::Data => format!(
            "a value has the wrong type or form at line {} column {}",
            e.line(),
            e.column()
        ),
        Category::Syntax => format!("invalid JSON at line {} column {}", e.line(), e.column()),
        Category::Eof => "the JSON text ends too early".to_string(),
        Category::Io => "I/O error while reading JSON".to_string(),
    };
    Detail(text)
}

/// A short, escaped excerpt of a value for an error log: at most `max_chars` characters,
/// control characters and quotes escaped, `…` when cut. For values that may be quoted at all
/// (never a token or params).
pub fn excerpt(value: &str, max_chars: usize) -> String {
    let mut out: String = value
        .chars()
        .take(max_chars)
        .flat_map(char::escape_debug)
        .collect();
    if value.chars().nth(max_chars).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_short_and_escaped() {
        assert_eq!(excerpt("abc", 10), "abc");
        assert_eq!(excerpt("a\nb\"c", 10), "a\\nb\\\"c");
        assert_eq!(excerpt("abcdef", 3), "abc…");
    }

    #[test]
    fn urls_log_as_origins_only() {
        assert_eq!(
            url_for_log("https://user:pw@api.example.com:8443/base/path?token=abc#x"),
            "https://api.example.com:8443"
        );
        assert_eq!(
            url_for_log("http://127.0.0.1:8080/"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            url_for_log("amqp://guest:secret@rabbit:5672/%2f"),
            "amqp://rabbit:5672"
        );
        assert_eq!(url_for_log("not a url secret"), "<redacted URL>");
        assert_eq!(url_for_log("mailto:someone@example.com"), "<redacted URL>");
    }
}
