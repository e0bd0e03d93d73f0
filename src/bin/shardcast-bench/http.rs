//! HTTP-FLV players: the URL of an HTTP play target.

/// An `http://host[:port]/path[?query]` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// `host[:port]` as written: the request's Host header.
    pub authority: String,
    /// The request target: path and query, starting with `/`.
    pub target: String,
}

/// The port of an http:// URL that names none.
const DEFAULT_PORT: u16 = 80;

impl HttpUrl {
    pub fn parse(url: &str) -> Result<HttpUrl, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: not an http:// URL"))?;
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        let (host, port) = match authority.rsplit_once(':') {
            // A colon inside brackets belongs to an IPv6 address.
            Some((h, p)) if !p.contains(']') => {
                let port = p
                    .parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| format!("{url}: bad port '{p}'"))?;
                (h, port)
            }
            _ => (authority, DEFAULT_PORT),
        };
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let target = match target {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        Ok(HttpUrl {
            host: host.to_string(),
            port,
            authority: authority.to_string(),
            target,
        })
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// `rtmp://host:port/app/stream` for `http://host:port/app/stream.ext`:
    /// where shardcast, which serves RTMP and HTTP on one port, takes the
    /// publish of what this URL plays.
    pub fn rtmp_publish_url(&self) -> String {
        let path = self.path();
        let name_start = path.rfind('/').map_or(0, |i| i + 1);
        let path = match path[name_start..].rfind('.') {
            Some(dot) => &path[..name_start + dot],
            None => path,
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("rtmp://{host}:{}{path}", self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_urls_and_derives_the_rtmp_publish_url() {
        let u = HttpUrl::parse("http://127.0.0.1:8079/live/x.flv?only-audio=1").unwrap();
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.port, 8079);
        assert_eq!(u.authority, "127.0.0.1:8079");
        assert_eq!(u.target, "/live/x.flv?only-audio=1");
        assert_eq!(u.path(), "/live/x.flv");
        assert_eq!(u.rtmp_publish_url(), "rtmp://127.0.0.1:8079/live/x");
        let u = HttpUrl::parse("http://example.com/live/a.b.m3u8").unwrap();
        assert_eq!(u.port, 80);
        assert_eq!(u.rtmp_publish_url(), "rtmp://example.com:80/live/a.b");
        let u = HttpUrl::parse("http://[::1]:8000/live/x.flv").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.authority, "[::1]:8000");
        assert_eq!(u.rtmp_publish_url(), "rtmp://[::1]:8000/live/x");
        assert_eq!(HttpUrl::parse("http://h?x=1").unwrap().target, "/?x=1");
        assert!(HttpUrl::parse("http://h:0/a").is_err());
        assert!(HttpUrl::parse("http://:80/a").is_err());
        assert!(HttpUrl::parse("https://h/a.flv").is_err());
    }
}
