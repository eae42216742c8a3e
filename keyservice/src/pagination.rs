//! Listing keys a page at a time: how many per page, and the cursor that says where the next
//! page starts. A cursor is opaque to clients (base64url of `created_at:id`); keyset paging on
//! (`created_at`, `id`) stays stable while keys are issued and revoked between pages.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use thiserror::Error;

use crate::store::{Cursor, KeyRecord, Page};

/// Keys per page when the client does not say.
pub const DEFAULT_LIMIT: u32 = 100;
/// The most keys one page may hold.
pub const MAX_LIMIT: u32 = 1000;
/// Longest id a cursor may carry, in characters (as stored names and identities).
const MAX_CURSOR_ID_CHARS: usize = 256;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PageError {
    #[error("limit must be between 1 and 1000")]
    Limit,
    #[error("after is not a cursor keyservice returned (use the `next` of a previous page)")]
    Cursor,
}

/// The page a client asks for: `limit` (default [`DEFAULT_LIMIT`]) and `after`, a cursor.
pub fn page(limit: Option<u32>, after: Option<&str>) -> Result<Page, PageError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(PageError::Limit);
    }
    let after = after.map(decode).transpose()?;
    Ok(Page { after, limit })
}

/// The cursor of the page after `records`, when there may be one: a page is fetched with one
/// record more than asked for, and that extra one (dropped here) says another page follows.
pub fn next_cursor(records: &mut Vec<KeyRecord>, limit: u32) -> Option<String> {
    let limit = usize::try_from(limit).ok()?;
    if records.len() <= limit {
        return None;
    }
    records.truncate(limit);
    records.last().map(|last| encode(&Cursor::of(last)))
}

pub fn encode(cursor: &Cursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", cursor.created_at, cursor.id))
}

/// A cursor this service made; anything else is refused before it reaches a query (an id with
/// a NUL would make PostgreSQL fail, SQLite not).
pub fn decode(text: &str) -> Result<Cursor, PageError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| PageError::Cursor)?;
    let text = String::from_utf8(bytes).map_err(|_| PageError::Cursor)?;
    let (created_at, id) = text.split_once(':').ok_or(PageError::Cursor)?;
    let created_at: i64 = created_at.parse().map_err(|_| PageError::Cursor)?;
    let id_ok = !id.is_empty()
        && id.chars().count() <= MAX_CURSOR_ID_CHARS
        && !id.chars().any(keygate::text::is_invisible);
    if !id_ok {
        return Err(PageError::Cursor);
    }
    Ok(Cursor {
        created_at,
        id: id.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_as_itself() {
        for cursor in [
            Cursor {
                created_at: 1_700_000_000,
                id: "3f1c2b9e-0000-4000-8000-000000000000".into(),
            },
            Cursor {
                created_at: -1,
                id: "legacy:id with spaces".into(),
            },
        ] {
            assert_eq!(decode(&encode(&cursor)), Ok(cursor));
        }
    }

    #[test]
    fn anything_else_is_refused() {
        let b64 = |text: &str| URL_SAFE_NO_PAD.encode(text);
        for bad in [
            String::new(),
            "not base64!".into(),
            b64("1700000000"),
            b64("x:id"),
            b64("1:"),
            b64("1:a\u{0}b"),
            b64("1:a\u{202e}b"),
            b64(&format!("1:{}", "x".repeat(257))),
            URL_SAFE_NO_PAD.encode([b'1', b':', 0xff]),
        ] {
            assert_eq!(decode(&bad), Err(PageError::Cursor), "{bad:?}");
        }
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(page(None, None).unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(page(Some(MAX_LIMIT), None).unwrap().limit, MAX_LIMIT);
        assert_eq!(page(Some(0), None), Err(PageError::Limit));
        assert_eq!(page(Some(MAX_LIMIT + 1), None), Err(PageError::Limit));
    }
}
