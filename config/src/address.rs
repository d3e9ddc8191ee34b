//! `host:port` strings: addresses that may be DNS names, so not a `SocketAddr`.

/// Checks `host:port`, `1.2.3.4:port` or `[v6]:port`. Name resolution happens at connect time;
/// here we only catch what can never work, such as a missing port.
pub(crate) fn check_host_port(value: &str) -> Result<(), String> {
    let expected = "expected HOST:PORT, e.g. `radio.binhson.gov.vn:4433`, `10.0.0.5:4433` or \
                    `[2001:db8::1]:4433`";
    let Some((host, port)) = value.rsplit_once(':') else {
        return Err(format!("`{value}` has no port; {expected}"));
    };
    match port.parse::<u16>() {
        Ok(p) if p != 0 => {}
        _ => {
            return Err(format!(
                "`{port}` is not a port (1-65535) in `{value}`; {expected}"
            ))
        }
    }
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        // A bare ':' in the host means an unbracketed IPv6 address, whose port is ambiguous.
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    };
    if !host_ok {
        return Err(format!(
            "`{host}` is not a host name or address in `{value}`; {expected}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_and_addresses() {
        for ok in [
            "localhost:4433",
            "radio.binhson.gov.vn:443",
            "10.0.0.5:1",
            "[::1]:4433",
        ] {
            assert_eq!(check_host_port(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_what_cannot_connect() {
        for bad in [
            "localhost",
            ":4433",
            "host:0",
            "host:99999",
            "::1:4433",
            "[::1:4433",
            "a b:1",
            "host:",
        ] {
            assert!(check_host_port(bad).is_err(), "{bad}");
        }
    }
}
