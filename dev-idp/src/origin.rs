//! Refuses a form POST that another site made the browser send (login CSRF).
//!
//! `Sec-Fetch-Site`, when present, must be `same-origin` (or `none`: typed by the user); an
//! `Origin`, when present, must name the host the request was sent to (`Host`). A request with
//! neither header (curl, scripts) is accepted: no browser sends a cross-site POST without them.
//! `Origin: null` is accepted only beside `Sec-Fetch-Site: same-origin`: a browser sends a form
//! POST from a page with `Referrer-Policy: no-referrer` (ours, and the keys page) with a `null`
//! origin, and a page cannot forge the fetch metadata.

use axum::http::HeaderMap;
use axum::http::header::{HOST, ORIGIN};

/// Why a POST was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrossSite {
    /// `Sec-Fetch-Site` says another site (or another origin of this site) sent it.
    FetchSite,
    /// `Origin` names another host than `Host`, or `null`, or cannot be read.
    Origin,
}

pub fn check(headers: &HeaderMap) -> Result<(), CrossSite> {
    let site = headers.get("sec-fetch-site").map(|site| site.as_bytes());
    if let Some(site) = site
        && !matches!(site, b"same-origin" | b"none")
    {
        return Err(CrossSite::FetchSite);
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let origin = origin.to_str().map_err(|_| CrossSite::Origin)?;
        if origin == "null" && site == Some(b"same-origin".as_slice()) {
            return Ok(());
        }
        let host = headers
            .get(HOST)
            .and_then(|host| host.to_str().ok())
            .ok_or(CrossSite::Origin)?;
        if !same_host(origin, host) {
            return Err(CrossSite::Origin);
        }
    }
    Ok(())
}

/// Whether `origin` (`scheme://host[:port]`) names `host` (`host[:port]`), case-insensitively,
/// with the scheme's default port written or not.
fn same_host(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false; // `null`, or not an origin.
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let normalise = |value: &str| {
        let value = value.to_ascii_lowercase();
        match value.strip_suffix(default_port) {
            Some(bare) => bare.to_owned(),
            None => value,
        }
    };
    !authority.is_empty()
        && !authority.contains(['/', '@', '?', '#'])
        && normalise(authority) == normalise(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn same_origin_and_headerless_posts_are_accepted() {
        let accepted: &[&[(&str, &str)]] = &[
            &[],
            &[("host", "127.0.0.1:10000")],
            &[("sec-fetch-site", "same-origin")],
            &[("sec-fetch-site", "none")],
            &[("sec-fetch-site", "same-origin"), ("origin", "null")],
            &[
                ("origin", "http://127.0.0.1:10000"),
                ("host", "127.0.0.1:10000"),
            ],
            &[
                ("origin", "http://LOCALHOST:10000"),
                ("host", "localhost:10000"),
            ],
            &[
                ("origin", "http://example.test"),
                ("host", "example.test:80"),
            ],
            &[
                ("origin", "https://example.test:443"),
                ("host", "example.test"),
            ],
            &[
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://127.0.0.1:10000"),
                ("host", "127.0.0.1:10000"),
            ],
        ];
        for case in accepted {
            assert_eq!(check(&headers(case)), Ok(()), "{case:?}");
        }
    }

    #[test]
    fn cross_site_posts_are_refused() {
        let refused: &[(&[(&str, &str)], CrossSite)] = &[
            (&[("sec-fetch-site", "cross-site")], CrossSite::FetchSite),
            (&[("sec-fetch-site", "same-site")], CrossSite::FetchSite),
            (&[("sec-fetch-site", "")], CrossSite::FetchSite),
            (
                &[
                    ("origin", "http://evil.example"),
                    ("host", "127.0.0.1:10000"),
                ],
                CrossSite::Origin,
            ),
            (
                &[
                    ("origin", "http://127.0.0.1:8080"),
                    ("host", "127.0.0.1:10000"),
                ],
                CrossSite::Origin,
            ),
            (
                &[("origin", "http://127.0.0.1"), ("host", "127.0.0.1:10000")],
                CrossSite::Origin,
            ),
            (
                &[("origin", "null"), ("host", "127.0.0.1:10000")],
                CrossSite::Origin,
            ),
            (&[("origin", "http://127.0.0.1:10000")], CrossSite::Origin),
            (
                &[
                    ("origin", "http://a@127.0.0.1:10000"),
                    ("host", "127.0.0.1:10000"),
                ],
                CrossSite::Origin,
            ),
            (
                &[
                    ("origin", "ftp://127.0.0.1:10000"),
                    ("host", "127.0.0.1:10000"),
                ],
                CrossSite::Origin,
            ),
            (&[("origin", "http://"), ("host", "")], CrossSite::Origin),
            (
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "http://127.0.0.1:10000"),
                    ("host", "127.0.0.1:10000"),
                ],
                CrossSite::FetchSite,
            ),
        ];
        for (case, why) in refused {
            assert_eq!(check(&headers(case)), Err(*why), "{case:?}");
        }
    }
}
