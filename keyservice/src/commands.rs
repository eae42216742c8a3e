//! The commands other than `serve`: they work on the database directly, not over HTTP.

use std::io::{self, Read, Write};
use std::process::ExitCode;

use keygate::text::Escaped;
use thiserror::Error;

use crate::args::{
    ConfigError, ImportArgs, IssueArgs, ListArgs, RevokeArgs, Secret, SetLimitsArgs, UsageArgs,
};
use crate::keys::{
    ImportError, IssueError, KeyView, NewKey, Signer, ValidationError, check_text, expiry_note,
};
use crate::pagination;
use crate::rate_limits;
use crate::store::{self, Condition, Cursor, KeyFilter, KeyRecord, LimitsChange, Page, StoreError};
use crate::time::{now, rfc3339, today};
use crate::usage::UsageView;

#[derive(Debug, Error)]
pub enum CommandError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Issue(#[from] IssueError),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error("no key with id {0}")]
    UnknownId(String),
    #[error("this key was already imported (id {0}); nothing changed")]
    AlreadyImported(String),
    #[error("key {0} is revoked: its rate limits can no longer change")]
    Revoked(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl CommandError {
    /// 2 for configuration mistakes, as for clap's own usage errors; 1 for everything else.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Config(_) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

pub async fn issue(database: &str, secret: &Secret, args: IssueArgs) -> Result<(), CommandError> {
    let new = NewKey {
        user_id: args.user,
        org_id: args.org,
        name: args.name,
        // Sub-second or absurd lifetimes become 0 / i64::MAX and fail validation.
        expires_in_seconds: args
            .expires_in
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        scopes: args.scopes,
        rate_limits: args.rate_limits,
    };
    let (record, key) = Signer::new(secret.expose().as_bytes()).issue(new, now())?;
    let store = store::open(database).await?;
    store.insert(&record).await?;
    store.close().await;
    writeln!(io::stdout().lock(), "{key}")?;
    eprintln!(
        "issued key {} for user {} (expires: {}; scopes: {}; rate limits: {})",
        record.id,
        record.user_id,
        record.expires_at.map_or_else(|| "never".into(), rfc3339),
        if record.scopes.is_empty() {
            "none".to_owned()
        } else {
            record.scopes.join(" ")
        },
        limits_text(&record.rate_limits)
    );
    Ok(())
}

pub async fn revoke(database: &str, args: RevokeArgs) -> Result<(), CommandError> {
    let store = store::open(database).await?;
    let record = store.revoke(&args.id, &KeyFilter::all(), now()).await?;
    store.close().await;
    let record = record.ok_or(CommandError::UnknownId(args.id))?.record;
    let revoked_at = rfc3339(record.revoked_at.unwrap_or_default());
    writeln!(io::stdout().lock(), "revoked {} at {revoked_at}", record.id)?;
    if let Some(expires_at) = record.expires_at {
        eprintln!("note: {}", expiry_note(expires_at));
    }
    Ok(())
}

/// Pages through the store ([`pagination::MAX_LIMIT`] keys per query), so a listing of any
/// size is a series of bounded queries; JSON lines are written as each page arrives.
pub async fn list(database: &str, args: ListArgs) -> Result<(), CommandError> {
    let mut filter = KeyFilter::all();
    if let Some(user) = &args.user {
        filter = filter.and(Condition::UserIs(user));
    }
    if let Some(org) = &args.org {
        filter = filter.and(Condition::OrgIs(org));
    }
    let mut after = args.after;
    let mut wanted = args.limit.map(|limit| limit.get());
    let store = store::open(database).await?;
    let mut out = io::stdout().lock();
    let mut table = Vec::new();
    let mut more = None;
    loop {
        let limit = wanted.map_or(pagination::MAX_LIMIT, |w| w.min(pagination::MAX_LIMIT));
        let page = Page {
            after: after.clone(),
            limit: limit.saturating_add(1),
        };
        let mut records = match store.list(&filter, &page).await {
            Ok(records) => records,
            Err(e) => {
                store.close().await;
                return Err(e.into());
            }
        };
        let next = pagination::next_cursor(&mut records, limit);
        for view in records.iter().map(KeyView::from) {
            if args.json {
                let line = serde_json::to_string(&view).map_err(io::Error::other)?;
                writeln!(out, "{line}")?;
            } else {
                table.push(view);
            }
        }
        after = records.last().map(Cursor::of);
        if let Some(w) = &mut wanted {
            *w = w.saturating_sub(limit);
        }
        match next {
            Some(cursor) if wanted == Some(0) => {
                more = Some(cursor);
                break;
            }
            Some(_) => {}
            None => break,
        }
    }
    store.close().await;
    if !args.json {
        write_table(&mut out, &table)?;
    }
    out.flush()?;
    if let Some(cursor) = more {
        eprintln!("more keys follow: keyservice list --after {cursor}");
    }
    Ok(())
}

fn write_table(out: &mut impl Write, views: &[KeyView]) -> io::Result<()> {
    const HEADER: [&str; 10] = [
        "ID",
        "NAME",
        "HINT",
        "USER_ID",
        "ORG_ID",
        "SCOPES",
        "CREATED_AT",
        "EXPIRES_AT",
        "REVOKED_AT",
        "LAST_USED_AT",
    ];
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            vec![
                Escaped(&v.id).to_string(),
                Escaped(&v.name).to_string(),
                v.hint
                    .as_deref()
                    .map_or_else(|| "-".into(), |hint| format!("…{}", Escaped(hint))),
                Escaped(&v.user_id).to_string(),
                v.org_id
                    .as_deref()
                    .map_or_else(|| "-".into(), |org| Escaped(org).to_string()),
                if v.scopes.is_empty() {
                    "-".to_owned()
                } else {
                    v.scopes.join(",")
                },
                v.created_at.clone(),
                dash(&v.expires_at),
                dash(&v.revoked_at),
                dash(&v.last_used_at),
            ]
        })
        .collect();
    write_columns(out, &HEADER, &rows, &[])
}

/// Columns padded to their widest cell, two spaces apart; the columns in `right` (numbers) are
/// aligned to the right.
fn write_columns(
    out: &mut impl Write,
    header: &[&str],
    rows: &[Vec<String>],
    right: &[usize],
) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(column, (cell, &width))| {
                if right.contains(&column) {
                    format!("{cell:>width$}")
                } else {
                    format!("{cell:width$}")
                }
            })
            .collect();
        writeln!(out, "{}", cells.join("  ").trim_end())?;
    }
    Ok(())
}

/// `100/60, 1000/86400`, or `none`.
fn limits_text(limits: &[rate_limits::RateLimit]) -> String {
    rate_limits::header_value(limits).unwrap_or_else(|| "none".to_owned())
}

/// A key's usage per day (`keyservice usage ID`): a table of the days with counts and their
/// total, or the API's JSON object; when the key was last used goes to stderr.
pub async fn usage(database: &str, args: UsageArgs) -> Result<(), CommandError> {
    let since = today() - i64::from(args.days.saturating_sub(1));
    let store = store::open(database).await?;
    let result = store.usage(&args.id, &KeyFilter::all(), since).await;
    store.close().await;
    let usage = result?.ok_or(CommandError::UnknownId(args.id))?;
    let view = UsageView::from(&usage);
    let mut out = io::stdout().lock();
    if args.json {
        let line = serde_json::to_string(&view).map_err(io::Error::other)?;
        writeln!(out, "{line}")?;
    } else {
        write_usage(&mut out, &view)?;
    }
    out.flush()?;
    if !args.json {
        match &view.last_used_at {
            Some(at) => eprintln!("key {} last used {at}", usage.record.id),
            None => eprintln!("key {}: no use reported yet", usage.record.id),
        }
    }
    Ok(())
}

fn write_usage(out: &mut impl Write, view: &UsageView) -> io::Result<()> {
    const HEADER: [&str; 4] = ["DAY", "ALLOWED", "FORBIDDEN", "RATE_LIMITED"];
    let row = |day: String, counts: &crate::usage::Counts| {
        vec![
            day,
            counts.allowed.to_string(),
            counts.forbidden.to_string(),
            counts.rate_limited.to_string(),
        ]
    };
    let mut rows: Vec<Vec<String>> = view
        .days
        .iter()
        .map(|day| row(day.day.clone(), &day.counts))
        .collect();
    rows.push(row("TOTAL".to_owned(), &view.totals));
    write_columns(out, &HEADER, &rows, &[1, 2, 3])
}

/// Replaces a key's rate limits (`--none` clears them), with a `limits_changed` event in the
/// feed, as `PATCH /v1/keys/{id}` does; takes any id the database holds, like `revoke`.
pub async fn set_limits(database: &str, args: SetLimitsArgs) -> Result<(), CommandError> {
    // `--none` and `--rate-limit` exclude each other (clap), so `--none` leaves this empty.
    let limits = rate_limits::normalize(args.rate_limits)?;
    let store = store::open(database).await?;
    let result = store
        .set_rate_limits(&args.id, &KeyFilter::all(), &limits)
        .await;
    store.close().await;
    let (record, changed) = match result?.ok_or(CommandError::UnknownId(args.id))? {
        LimitsChange::Changed(record) => (record, true),
        LimitsChange::Unchanged(record) => (record, false),
        LimitsChange::Revoked(record) => return Err(CommandError::Revoked(record.id)),
    };
    writeln!(
        io::stdout().lock(),
        "rate limits of {}: {}",
        record.id,
        limits_text(&record.rate_limits)
    )?;
    if !changed {
        eprintln!("unchanged: the key already had these limits");
    }
    Ok(())
}

pub async fn import(database: &str, secret: &Secret, args: ImportArgs) -> Result<(), CommandError> {
    check_text("name", &args.name)?;
    let mut input = String::new();
    io::stdin().read_to_string(&mut input)?;
    let imported = Signer::new(secret.expose().as_bytes()).verify_import(&input)?;

    let store = store::open(database).await?;
    if let Some(existing) = store.find_by_hash(&imported.key_sha256).await? {
        return Err(CommandError::AlreadyImported(existing.id));
    }
    // Keep the key's own jti as its id when free, so the id in the token matches the record.
    let id = match imported.jti {
        Some(jti) if store.get(&jti).await?.is_none() => jti,
        _ => uuid::Uuid::new_v4().to_string(),
    };
    let record = KeyRecord {
        id,
        key_sha256: imported.key_sha256,
        name: args.name,
        user_id: imported.user_id,
        org_id: imported.org_id,
        scopes: imported.scopes,
        // Limits are keyservice's, not the key's: an imported key starts without.
        rate_limits: Vec::new(),
        created_at: now(),
        expires_at: imported.expires_at,
        revoked_at: None,
        last_used_at: None,
        hint: Some(imported.hint),
    };
    store.insert(&record).await?;
    store.close().await;
    writeln!(io::stdout().lock(), "{}", record.id)?;
    eprintln!("imported key for user {} as {}", record.user_id, record.id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_dashes_missing_values() {
        let views = [KeyView {
            id: "id-1".into(),
            name: "a longer name".into(),
            user_id: "u".into(),
            org_id: None,
            scopes: vec![],
            rate_limits: vec![],
            created_at: "2025-01-01T00:00:00Z".into(),
            expires_at: None,
            revoked_at: None,
            last_used_at: Some("2025-01-02T03:04:05Z".into()),
            hint: Some("Ab3Z".into()),
        }];
        let mut out = Vec::new();
        write_table(&mut out, &views).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID    NAME           HINT   USER_ID  ORG_ID  SCOPES  CREATED_AT            EXPIRES_AT  REVOKED_AT  LAST_USED_AT\n\
             id-1  a longer name  …Ab3Z  u        -       -       2025-01-01T00:00:00Z  -           -           2025-01-02T03:04:05Z\n"
        );
    }

    #[test]
    fn the_usage_table_aligns_numbers_right_and_ends_with_the_total() {
        use crate::usage::{Counts, DayView};
        let counts = |allowed, forbidden, rate_limited| Counts {
            allowed,
            forbidden,
            rate_limited,
        };
        let view = UsageView {
            id: "k".into(),
            last_used_at: None,
            days: vec![
                DayView {
                    day: "2026-12-04".into(),
                    counts: counts(12, 0, 0),
                },
                DayView {
                    day: "2026-12-05".into(),
                    counts: counts(1400, 2, 5),
                },
            ],
            totals: counts(1412, 2, 5),
        };
        let mut out = Vec::new();
        write_usage(&mut out, &view).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "DAY         ALLOWED  FORBIDDEN  RATE_LIMITED\n\
             2026-12-04       12          0             0\n\
             2026-12-05     1400          2             5\n\
             TOTAL          1412          2             5\n"
        );
    }
}
