//! Cross-site request forgery: a browser sends the session cookie with any request to our
//! origin, whichever site made it. A write authenticated by the cookie is taken only when the
//! browser says it comes from our own origin (`Sec-Fetch-Site: same-origin`, and an `Origin` that
//! is the request's own or an allowed one). Writes need a non-simple request besides (a JSON
//! `Content-Type`, or `DELETE`/`PATCH`), which a cross-site form cannot send.

use axum::http::{HeaderMap, Method, header};

/// Why a cookie-authenticated write was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossSite(pub String);

/// Origins allowed besides the request's own (`--allowed-origin`), as `scheme://host[:port]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins(Vec<String>);

impl AllowedOrigins {
    /// Each origin normalised: lowercase, no trailing `/`. `Err` names one that is not an
    /// origin (a path, a query, no scheme).
    pub fn new(origins: &[String]) -> Result<Self, String> {
        let mut out = Vec::new();
        for origin in origins {
            let normal = origin.trim_end_matches('/').to_ascii_lowercase();
            let authority = normal
                .strip_prefix("https://")
                .or_else(|| normal.strip_prefix("http://"));
            match authority {
                Some(a) if !a.is_empty() && !a.contains(['/', '?', '#', '@', ' ']) => {
                    out.push(normal)
                }
                _ => {
                    return Err(format!(
                        "--allowed-origin {origin:?} is not an origin: give scheme://host[:port], e.g. https://app.example.com"
                    ));
                }
            }
        }
        Ok(Self(out))
    }
}

/// `Ok` for a read, or a write that the browser says comes from our own (or an allowed) origin.
pub fn check(
    method: &Method,
    headers: &HeaderMap,
    allowed: &AllowedOrigins,
) -> Result<(), CrossSite> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let single = |name: &str| -> Result<Option<String>, CrossSite> {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(CrossSite(format!("more than one {name} header")));
        }
        value
            .to_str()
            .map(|v| Some(v.trim().to_ascii_lowercase()))
            .map_err(|_| CrossSite(format!("{name} is not ASCII")))
    };
    let fetch_site = single("sec-fetch-site")?;
    let origin = single(header::ORIGIN.as_str())?;
    if fetch_site.is_none() && origin.is_none() {
        return Err(CrossSite(
            "a write with the session cookie must come from the page: no Origin or Sec-Fetch-Site header".into(),
        ));
    }
    if let Some(site) = fetch_site
        && site != "same-origin"
    {
        return Err(CrossSite(format!(
            "the browser says this request comes from another site (Sec-Fetch-Site: {site})"
        )));
    }
    if let Some(origin) = origin {
        let host = single(header::HOST.as_str())?.unwrap_or_default();
        let own = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .is_some_and(|authority| !host.is_empty() && authority == host);
        if !own && !allowed.0.contains(&origin) {
            return Err(CrossSite(format!(
                "Origin {origin} is neither this site nor an allowed origin"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn writes_need_the_pages_own_origin() {
        let allowed = AllowedOrigins::new(&["https://app.example.com/".into()]).unwrap();
        let host = ("host", "keys.example.com");
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[host, ("origin", "https://keys.example.com")], true),
            (&[host, ("origin", "http://keys.example.com")], true),
            (&[host, ("origin", "https://KEYS.example.com")], true),
            (&[host, ("sec-fetch-site", "same-origin")], true),
            (
                &[
                    host,
                    ("sec-fetch-site", "same-origin"),
                    ("origin", "https://keys.example.com"),
                ],
                true,
            ),
            (&[host, ("origin", "https://app.example.com")], true),
            (&[host], false),
            (&[host, ("origin", "https://evil.example")], false),
            (&[host, ("origin", "null")], false),
            (
                &[host, ("origin", "https://keys.example.com.evil.example")],
                false,
            ),
            (&[host, ("sec-fetch-site", "cross-site")], false),
            (
                &[
                    host,
                    ("sec-fetch-site", "same-site"),
                    ("origin", "https://keys.example.com"),
                ],
                false,
            ),
            (&[host, ("sec-fetch-site", "none")], false),
            (
                &[
                    host,
                    ("origin", "https://keys.example.com"),
                    ("origin", "https://evil.example"),
                ],
                false,
            ),
            (&[("origin", "https://keys.example.com")], false),
        ];
        for (pairs, ok) in cases {
            let result = check(&Method::POST, &headers(pairs), &allowed);
            assert_eq!(result.is_ok(), *ok, "{pairs:?}: {result:?}");
            assert_eq!(
                check(&Method::DELETE, &headers(pairs), &allowed).is_ok(),
                *ok
            );
            assert!(check(&Method::GET, &headers(pairs), &allowed).is_ok());
        }
    }

    #[test]
    fn allowed_origins_must_be_origins() {
        for bad in [
            "app.example.com",
            "https://app.example.com/path",
            "ftp://x",
            "https://",
            "https://a@b",
        ] {
            assert!(AllowedOrigins::new(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
