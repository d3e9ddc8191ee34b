//! The one check for every HTTP/Icecast stream URL that enters the server: schedule
//! entries, bulletins and emergencies (`schedule/validate.rs`, which the admin API and the
//! ladder go through), the relay itself (`relay.rs`, again before it connects) and the
//! demo's `--relay`.
//!
//! Whatever is relayed reaches every loudspeaker, so a URL is held to what the relay client
//! can actually open: `http` or `https`, a host (a DNS name in ASCII, punycode for
//! Vietnamese names, or an IP address), a port in 1–65535 if one is given, no whitespace or
//! control characters (a pasted URL with a trailing space or a newline would otherwise fail
//! at 05:00 rather than when it is entered) and at most [`MAX_URL_LEN`] bytes.
//!
//! Credentials (`http://source:password@icecast:8000/mount`) are allowed, since Icecast
//! mounts often need them, but never shown: [`StreamUrl`]'s `Display` and [`mask`] write
//! `source:***@icecast…`, and that is what logs, errors and status carry. Only
//! [`StreamUrl::uri`] holds the password, for the request.

use std::borrow::Cow;
use std::fmt;

/// Longest URL accepted, in bytes: what browsers and servers commonly accept, and far more
/// than a stream's address needs.
pub const MAX_URL_LEN: usize = 2_048;

/// What is wrong with a stream URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("is empty")]
    Empty,
    #[error("is {0} bytes long; at most {MAX_URL_LEN} are accepted")]
    TooLong(usize),
    #[error("contains a space or control character at byte {0}")]
    Whitespace(usize),
    #[error("has no scheme: expected http://HOST[:PORT]/PATH or https://…")]
    NoScheme,
    #[error("scheme `{0}` is not http or https")]
    Scheme(String),
    #[error("has no host")]
    NoHost,
    #[error(
        "`{0}` is not a host name or address (non-ASCII names must be written in punycode, \
         xn--…)"
    )]
    Host(String),
    #[error("`{0}` is not an IPv6 address")]
    Ipv6(String),
    #[error("`{0}` is not a port (1-65535)")]
    Port(String),
    #[error("is not a valid URL: {0}")]
    Syntax(String),
}

/// A stream URL that passed [`StreamUrl::parse`]. Displays with its password masked.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamUrl {
    uri: ureq::http::Uri,
    masked: String,
}

impl fmt::Debug for StreamUrl {
    // The derived one would print the password inside the `Uri`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamUrl({:?})", self.masked)
    }
}

impl fmt::Display for StreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked)
    }
}

impl StreamUrl {
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        if url.is_empty() {
            return Err(UrlError::Empty);
        }
        if url.len() > MAX_URL_LEN {
            return Err(UrlError::TooLong(url.len()));
        }
        if let Some((at, _)) = url
            .char_indices()
            .find(|(_, c)| c.is_whitespace() || c.is_control())
        {
            return Err(UrlError::Whitespace(at));
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(UrlError::NoScheme);
        };
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(UrlError::Scheme(scheme.to_owned()));
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
        let (host, port) = if let Some(inner) = host_port.strip_prefix('[') {
            let Some((v6, after)) = inner.split_once(']') else {
                return Err(UrlError::Ipv6(inner.to_owned()));
            };
            if v6.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(UrlError::Ipv6(v6.to_owned()));
            }
            match after {
                "" => (None, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (None, Some(port)),
                    None => return Err(UrlError::Port(after.to_owned())),
                },
            }
        } else {
            let (host, port) = match host_port.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            };
            if host.is_empty() {
                return Err(UrlError::NoHost);
            }
            (Some(host), port)
        };
        if let Some(host) = host {
            check_host_name(host)?;
        }
        if let Some(port) = port {
            // An empty port after ':' is legal URL syntax and means the default port.
            if !port.is_empty() && !matches!(port.parse::<u16>(), Ok(p) if p != 0) {
                return Err(UrlError::Port(port.to_owned()));
            }
        }
        // What the HTTP client will make of it, so that nothing accepted here fails there.
        let uri: ureq::http::Uri = url
            .parse()
            .map_err(|e: ureq::http::uri::InvalidUri| UrlError::Syntax(e.to_string()))?;
        if uri.host().is_none_or(str::is_empty) {
            return Err(UrlError::NoHost);
        }
        Ok(StreamUrl {
            uri,
            masked: mask(url).into_owned(),
        })
    }

    /// The URL for the request, credentials included: never log it.
    pub fn uri(&self) -> &ureq::http::Uri {
        &self.uri
    }

    pub fn host(&self) -> &str {
        self.uri.host().unwrap_or_default()
    }

    pub fn is_https(&self) -> bool {
        self.uri
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("https"))
    }

    /// Lower-case extension of the last path segment (`/live.mp3` gives `mp3`).
    pub fn extension(&self) -> Option<String> {
        let segment = self.uri.path().rsplit('/').next()?;
        let (stem, ext) = segment.rsplit_once('.')?;
        let plausible = !stem.is_empty()
            && (1..=5).contains(&ext.len())
            && ext.bytes().all(|b| b.is_ascii_alphanumeric());
        plausible.then(|| ext.to_ascii_lowercase())
    }
}

/// `url` with the password of its credentials replaced by `***` (`user:***@host`; a lone
/// user name, which may be a token, becomes `***@host`). Works on any text, valid URL or
/// not, so that an error about a bad URL does not leak it either.
pub fn mask(url: &str) -> Cow<'_, str> {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return Cow::Borrowed(url);
    };
    let rest = &url[scheme_end..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_len].rfind('@') else {
        return Cow::Borrowed(url);
    };
    let user = match rest[..at].split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    Cow::Owned(format!("{}{user}{}", &url[..scheme_end], &rest[at..]))
}

/// A DNS name or IPv4 address: non-ASCII (Vietnamese) names must be given in punycode.
fn check_host_name(host: &str) -> Result<(), UrlError> {
    let name = host.strip_suffix('.').unwrap_or(host);
    let ok = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(UrlError::Host(host.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_urls_are_accepted() {
        for ok in [
            "http://127.0.0.1:8000/qng.mp3",
            "https://radio.quangngai.gov.vn/live",
            "HTTP://host",
            "http://user:pass@icecast.example:8000/mount?x=1",
            "http://[::1]:8000/a",
            "http://host:/a",
            "http://xn--i-7ia.vn/a",
        ] {
            assert!(StreamUrl::parse(ok).is_ok(), "{ok}");
        }
        let url = StreamUrl::parse("HTTPS://radio.example.vn:8443/live.MP3").expect("ok");
        assert!(url.is_https());
        assert_eq!(url.host(), "radio.example.vn");
        assert_eq!(url.extension().as_deref(), Some("mp3"));
    }

    #[test]
    fn each_refusal_names_what_is_wrong() {
        let long = format!("http://host/{}", "a".repeat(MAX_URL_LEN));
        let cases: [(&str, UrlError); 16] = [
            ("", UrlError::Empty),
            (&long, UrlError::TooLong(MAX_URL_LEN + 12)),
            ("http://ho st/a", UrlError::Whitespace(9)),
            (" http://host/a", UrlError::Whitespace(0)),
            ("http://host/a\n", UrlError::Whitespace(13)),
            ("http://host/\u{7f}", UrlError::Whitespace(12)),
            ("host/a.mp3", UrlError::NoScheme),
            ("rtsp://host/a", UrlError::Scheme("rtsp".into())),
            ("file:///srv/a.mp3", UrlError::Scheme("file".into())),
            ("http:///a", UrlError::NoHost),
            ("http://user:pw@/a", UrlError::NoHost),
            ("http://đài.vn/a", UrlError::Host("đài.vn".into())),
            ("http://-bad-.vn/", UrlError::Host("-bad-.vn".into())),
            ("http://[::1/a", UrlError::Ipv6("::1".into())),
            ("http://host:99999/a", UrlError::Port("99999".into())),
            ("http://host:0/a", UrlError::Port("0".into())),
        ];
        for (bad, want) in cases {
            assert_eq!(StreamUrl::parse(bad), Err(want.clone()), "{bad}");
            assert!(!want.to_string().is_empty());
        }
        assert!(UrlError::Port("0".into()).to_string().contains("`0`"));
        assert!(UrlError::Scheme("rtsp".into())
            .to_string()
            .contains("`rtsp` is not http or https"));
    }

    #[test]
    fn credentials_are_masked_wherever_the_url_is_shown() {
        let url = StreamUrl::parse("http://source:hackme@icecast.vn:8000/live?x=a@b").expect("ok");
        assert_eq!(
            url.to_string(),
            "http://source:***@icecast.vn:8000/live?x=a@b"
        );
        assert_eq!(format!("{url:?}").matches("hackme").count(), 0, "{url:?}");
        assert_eq!(
            url.uri().to_string(),
            "http://source:hackme@icecast.vn:8000/live?x=a@b"
        );
        assert_eq!(mask("https://token@h/a"), "https://***@h/a");
        assert_eq!(mask("http://h/a?u=x@y"), "http://h/a?u=x@y");
        assert_eq!(mask("not a url"), "not a url");
        assert_eq!(mask("rtsp://a:b@c d"), "rtsp://a:***@c d");
    }
}
