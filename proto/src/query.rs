//! Query parameters (`?only-audio=1&vhost=x`), as RTMP stream names and
//! HTTP request targets carry them.

/// The last value of parameter `key`.
pub fn param<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// True when parameter `key` is present and `1`, `true`, `yes` or empty.
pub fn flag(query: &[(String, String)], key: &str) -> bool {
    matches!(param(query, key), Some("1" | "true" | "yes" | ""))
}

/// The media a play asks for with `?only-audio=1` / `?only-video=1`:
/// (audio, video).
pub fn media_wanted(query: &[(String, String)]) -> (bool, bool) {
    (!flag(query, "only-video"), !flag(query, "only-audio"))
}

/// `?key=value&...` with each value percent-encoded (RFC 3986: all but
/// unreserved characters), to carry parameters into URIs we write; empty
/// for no parameters.
pub fn carry(params: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (key, value)) in params.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(key);
        out.push('=');
        for b in value.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carry_encodes_all_but_unreserved() {
        assert_eq!(carry(&[("vhost", "example.com")]), "?vhost=example.com");
        assert_eq!(carry(&[("vhost", "a b/ü&")]), "?vhost=a%20b%2F%C3%BC%26");
        assert_eq!(
            carry(&[("vhost", "v"), ("expires", "1"), ("sign", "ab")]),
            "?vhost=v&expires=1&sign=ab"
        );
        assert_eq!(carry(&[]), "");
    }

    #[test]
    fn last_value_wins_and_flags() {
        let q = vec![
            ("a".to_string(), "1".to_string()),
            ("a".to_string(), "2".to_string()),
            ("only-audio".to_string(), String::new()),
        ];
        assert_eq!(param(&q, "a"), Some("2"));
        assert!(flag(&q, "only-audio"));
        assert!(!flag(&q, "a"));
        assert_eq!(media_wanted(&q), (true, false));
    }
}
