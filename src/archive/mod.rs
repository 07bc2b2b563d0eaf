//! The archive port: where a session's snapshot goes so that nothing a user cares about is
//! lost to the TTL, and where the history routes read it back (contract §5).
//!
//! A snapshot is one incarnation of a session (`session id` + `epoch`) as one JSON document
//! `{session, events, chains, epoch, savedAt}`, filed under the UTC date the incarnation
//! started. Writing it again replaces it only with a newer `savedAt`, so retries and
//! several writers converge on one snapshot per incarnation. Adapters: [`dir`] (files, the
//! default) and [`postgres`]. This module must not know HTTP, Redis or the live store:
//! [`archiver`] builds snapshots from the store and [`crate::http`] serves them.

pub(crate) mod archiver;
pub(crate) mod dir;
pub mod postgres;

use std::future::Future;
use std::pin::Pin;

use std::sync::Arc;

use bytes::Bytes;

use crate::config::ArchiveSetting;
use crate::domain::model::{SessionId, Timestamp};
use crate::ports::IdGen;

pub type ArchiveFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ArchiveError>> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive cannot be reached or answered too late: retry later (HTTP 503).
    #[error("archive unavailable: {0}")]
    Unavailable(String),
    /// What the archive holds cannot be read back (a torn or foreign file): a bug or
    /// tampering, never a client's fault (HTTP 500).
    #[error("archive corrupt: {0}")]
    Corrupt(String),
}

/// A UTC calendar date, `YYYY-MM-DD` (an RFC 3339 full-date: years 0000–9999, a real day):
/// the only shape a date takes in a path, a file name or a query. Nothing is archived
/// before 1970, so earlier dates are valid and simply empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(time::Date);

impl Date {
    /// Parses exactly `YYYY-MM-DD` of a real day; anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<u16> {
            b[r].iter().try_fold(0u16, |n, c| {
                c.is_ascii_digit().then(|| n * 10 + u16::from(c - b'0'))
            })
        };
        let year = num(0..4)?;
        let month = time::Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?;
        let day = u8::try_from(num(8..10)?).ok()?;
        time::Date::from_calendar_date(i32::from(year), month, day)
            .ok()
            .map(Self)
    }

    /// The UTC date of an instant.
    pub fn of(at: Timestamp) -> Self {
        Self::parse(&at.date()).unwrap_or(Self(time::Date::MAX))
    }

    /// The date `days` earlier (1970-01-01 at the earliest).
    pub fn minus_days(self, days: u32) -> Self {
        let julian =
            (self.0.to_julian_day() - i32::try_from(days).unwrap_or(i32::MAX)).max(UNIX_JULIAN_DAY);
        Self(time::Date::from_julian_day(julian).unwrap_or(self.0))
    }
}

impl utoipa::PartialSchema for Date {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
            .pattern(Some("^[0-9]{4}-[0-9]{2}-[0-9]{2}$"))
            .description(Some("A UTC calendar date, YYYY-MM-DD"))
            .into()
    }
}

impl utoipa::ToSchema for Date {}

/// The Julian day number of 1970-01-01.
const UNIX_JULIAN_DAY: i32 = 2_440_588;

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}",
            d.year(),
            u8::from(d.month()),
            d.day()
        )
    }
}

/// One incarnation of a session, ready to file.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub session_id: SessionId,
    pub epoch: String,
    /// The UTC date the incarnation started: its place in the history.
    pub date: Date,
    pub saved_at: Timestamp,
    /// The document `{session, events, chains, epoch, savedAt}`.
    pub body: Bytes,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created,
    Updated,
    /// The archive already held this incarnation saved at the same time or later.
    Stale,
}

/// A page of a listing.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub offset: usize,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub total: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub dates: usize,
    pub sessions: usize,
    pub oldest: Option<Date>,
    pub newest: Option<Date>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cleaned {
    pub dates: usize,
    pub sessions: usize,
}

pub trait Archive: Send + Sync + 'static {
    /// `dir` or `postgres`.
    fn kind(&self) -> &'static str;
    /// Whether the archive answers (a cheap probe for `/health`).
    fn ping(&self) -> ArchiveFuture<'_, ()>;
    /// Files the snapshot, replacing the same incarnation's only if this one is newer.
    fn put<'a>(&'a self, snapshot: &'a Snapshot) -> ArchiveFuture<'a, Put>;
    /// Dates holding snapshots, newest first.
    fn dates(&self, page: Page) -> ArchiveFuture<'_, Listing<Date>>;
    /// Session ids filed under a date, in order, each once.
    fn sessions(&self, date: Date, page: Page) -> ArchiveFuture<'_, Listing<SessionId>>;
    /// The newest snapshot of a session (under `date` only, when given).
    fn get<'a>(&'a self, id: &'a SessionId, date: Option<Date>)
    -> ArchiveFuture<'a, Option<Bytes>>;
    fn stats(&self) -> ArchiveFuture<'_, Stats>;
    /// Removes every date before `before`.
    fn cleanup(&self, before: Date) -> ArchiveFuture<'_, Cleaned>;
}

/// The archive `AFW_ARCHIVE` names, if any (nothing is dialled or written yet).
pub fn open(
    setting: &ArchiveSetting,
    ids: &Arc<IdGen>,
) -> Result<Option<Arc<dyn Archive>>, postgres::PgUrlError> {
    Ok(match setting {
        ArchiveSetting::Off => None,
        ArchiveSetting::Dir(path) => Some(Arc::new(Arc::new(dir::DirArchive::new(
            path.clone(),
            Arc::clone(ids),
        )))),
        ArchiveSetting::Postgres(url) => {
            Some(Arc::new(Arc::new(postgres::PgArchive::new(&url.0)?)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_days_parse() {
        assert_eq!(
            Date::parse("2026-02-28").map(|d| d.to_string()).as_deref(),
            Some("2026-02-28")
        );
        assert!(Date::parse("2024-02-29").is_some());
        assert!(Date::parse("0000-01-01").is_some());
        assert!(Date::parse("1969-12-31").is_some());
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-04-31",
            "0000-00-00",
            "2026-1-01",
            "2026/01/01",
            "..",
            "2026-01-01x",
            "+026-01-01",
            "",
            "2026-01-0\0",
        ] {
            assert_eq!(Date::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn dates_of_instants_and_day_numbers_agree() {
        assert_eq!(Date::of(Timestamp(0)).to_string(), "1970-01-01");
        assert_eq!(
            Date::of(Timestamp(1_796_220_735_000)).to_string(),
            "2026-12-02"
        );
        assert_eq!(
            Date::of(Timestamp(253_402_300_799_999)).to_string(),
            "9999-12-31"
        );
        assert_eq!(
            Date::of(Timestamp(951_782_400_000)).to_string(),
            "2000-02-29"
        );
        let d = Date::parse("2026-03-01").unwrap();
        assert_eq!(d.minus_days(1).to_string(), "2026-02-28");
        assert_eq!(d.minus_days(0), d);
        assert_eq!(d.minus_days(u32::MAX).to_string(), "1970-01-01");
    }
}
