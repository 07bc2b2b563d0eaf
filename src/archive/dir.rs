//! The directory archive: `<root>/<UTC date>/<session id>.json`, the zero-setup default for
//! a single instance.
//!
//! A snapshot is written to a temporary file in its date's directory, synced, renamed over
//! the old one and the directory synced, so a reader or a crash sees the old snapshot or
//! the new one, never a torn one. A second incarnation of a session filed under the same
//! date is `<session id>@<epoch>.json` (`@` is never part of a session id). Names are built
//! only from a [`Date`] and a [`SessionId`], both validated, so nothing outside `root` is
//! ever read or written. This adapter must not serve HTTP or read the live store.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use super::{
    Archive, ArchiveError, ArchiveFuture, Cleaned, Date, Listing, Page, Put, Snapshot, Stats,
};
use crate::domain::model::{SessionId, Timestamp};
use crate::ports::IdGen;

pub(crate) struct DirArchive {
    root: PathBuf,
    /// Names temporary files (seeded in tests like every other id).
    ids: Arc<IdGen>,
}

/// What a stored snapshot says about itself (read back before it is replaced).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    epoch: String,
    saved_at: Timestamp,
}

impl DirArchive {
    pub(crate) fn new(root: impl Into<PathBuf>, ids: Arc<IdGen>) -> Self {
        Self {
            root: root.into(),
            ids,
        }
    }

    fn date_dir(&self, date: Date) -> PathBuf {
        self.root.join(date.to_string())
    }
}

fn unavailable(what: &str, path: &Path, e: &std::io::Error) -> ArchiveError {
    ArchiveError::Unavailable(format!("{what} {}: {e}", path.display()))
}

/// The session id a file name files, if it is a snapshot's name.
fn session_of(name: &str) -> Option<SessionId> {
    let stem = name.strip_suffix(".json")?;
    let id = stem.split_once('@').map_or(stem, |(id, _)| id);
    SessionId::parse(id).ok()
}

/// Every file of `dir` that holds a snapshot of `id`: `<id>.json`, `<id>@<epoch>.json`.
fn files_of(dir: &Path, id: &SessionId) -> Result<Vec<PathBuf>, ArchiveError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(unavailable("cannot list", dir, &e)),
    };
    let plain = format!("{id}.json");
    let prefix = format!("{id}@");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == plain || (name.starts_with(&prefix) && name.ends_with(".json")) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

fn read(path: &Path) -> Result<Option<Vec<u8>>, ArchiveError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(unavailable("cannot read", path, &e)),
    }
}

fn head(path: &Path, bytes: &[u8]) -> Result<Head, ArchiveError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ArchiveError::Corrupt(format!("{}: {e}", path.display())))
}

/// Writes `body` to `path` through a synced temporary file and a rename.
fn write_atomically(dir: &Path, path: &Path, tmp_name: &str, body: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(body)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

impl DirArchive {
    fn put_blocking(&self, snap: &Snapshot) -> Result<Put, ArchiveError> {
        let dir = self.date_dir(snap.date);
        let mut target = None;
        let mut taken = false;
        for path in files_of(&dir, &snap.session_id)? {
            let Some(bytes) = read(&path)? else { continue };
            let held = head(&path, &bytes)?;
            if held.epoch == snap.epoch {
                if held.saved_at >= snap.saved_at {
                    return Ok(Put::Stale);
                }
                target = Some(path);
                break;
            }
            taken |= path.file_name().and_then(|n| n.to_str())
                == Some(&format!("{}.json", snap.session_id));
        }
        let created = target.is_none();
        let path = target.unwrap_or_else(|| {
            if taken {
                dir.join(format!("{}@{}.json", snap.session_id, snap.epoch))
            } else {
                dir.join(format!("{}.json", snap.session_id))
            }
        });
        let tmp = format!(".{:016x}.tmp", self.ids.next_u64());
        write_atomically(&dir, &path, &tmp, &snap.body)
            .map_err(|e| unavailable("cannot write", &path, &e))?;
        Ok(if created { Put::Created } else { Put::Updated })
    }

    fn all_dates(&self) -> Result<Vec<Date>, ArchiveError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(unavailable("cannot list", &self.root, &e)),
        };
        let mut dates: Vec<Date> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().and_then(Date::parse))
            .collect();
        dates.sort_unstable_by(|a, b| b.cmp(a));
        Ok(dates)
    }

    fn sessions_of(&self, date: Date) -> Result<Vec<SessionId>, ArchiveError> {
        let dir = self.date_dir(date);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(unavailable("cannot list", &dir, &e)),
        };
        let mut ids: Vec<SessionId> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(session_of))
            .collect();
        ids.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        ids.dedup();
        Ok(ids)
    }

    /// The newest snapshot of `id` under `date`.
    fn newest_in(&self, date: Date, id: &SessionId) -> Result<Option<Bytes>, ArchiveError> {
        let mut best: Option<(Timestamp, Vec<u8>)> = None;
        for path in files_of(&self.date_dir(date), id)? {
            let Some(bytes) = read(&path)? else { continue };
            let saved = head(&path, &bytes)?.saved_at;
            if best.as_ref().is_none_or(|(t, _)| saved > *t) {
                best = Some((saved, bytes));
            }
        }
        Ok(best.map(|(_, bytes)| Bytes::from(bytes)))
    }

    fn get_blocking(
        &self,
        id: &SessionId,
        date: Option<Date>,
    ) -> Result<Option<Bytes>, ArchiveError> {
        let dates = match date {
            Some(date) => vec![date],
            None => self.all_dates()?,
        };
        for date in dates {
            if let Some(found) = self.newest_in(date, id)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    fn stats_blocking(&self) -> Result<Stats, ArchiveError> {
        let dates = self.all_dates()?;
        let mut sessions = 0;
        for date in &dates {
            sessions += self.sessions_of(*date)?.len();
        }
        Ok(Stats {
            dates: dates.len(),
            sessions,
            oldest: dates.last().copied(),
            newest: dates.first().copied(),
        })
    }

    fn cleanup_blocking(&self, before: Date) -> Result<Cleaned, ArchiveError> {
        let mut cleaned = Cleaned::default();
        for date in self.all_dates()?.into_iter().filter(|d| *d < before) {
            let sessions = self.sessions_of(date)?.len();
            let dir = self.date_dir(date);
            std::fs::remove_dir_all(&dir).map_err(|e| unavailable("cannot remove", &dir, &e))?;
            cleaned.dates += 1;
            cleaned.sessions += sessions;
        }
        Ok(cleaned)
    }
}

fn page<T>(all: Vec<T>, page: Page) -> Listing<T> {
    let total = all.len();
    let items = all.into_iter().skip(page.offset).take(page.limit).collect();
    Listing { items, total }
}

/// Runs a file system call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ArchiveError> + Send + 'static,
) -> Result<T, ArchiveError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ArchiveError::Unavailable(format!("archive task failed: {e}")))?
}

impl Archive for Arc<DirArchive> {
    fn kind(&self) -> &'static str {
        "dir"
    }

    fn ping(&self) -> ArchiveFuture<'_, ()> {
        let this = Arc::clone(self);
        Box::pin(blocking(move || {
            std::fs::create_dir_all(&this.root)
                .map_err(|e| unavailable("cannot create", &this.root, &e))
        }))
    }

    fn put<'a>(&'a self, snapshot: &'a Snapshot) -> ArchiveFuture<'a, Put> {
        let (this, snap) = (Arc::clone(self), snapshot.clone());
        Box::pin(blocking(move || this.put_blocking(&snap)))
    }

    fn dates(&self, p: Page) -> ArchiveFuture<'_, Listing<Date>> {
        let this = Arc::clone(self);
        Box::pin(blocking(move || Ok(page(this.all_dates()?, p))))
    }

    fn sessions(&self, date: Date, p: Page) -> ArchiveFuture<'_, Listing<SessionId>> {
        let this = Arc::clone(self);
        Box::pin(blocking(move || Ok(page(this.sessions_of(date)?, p))))
    }

    fn get<'a>(
        &'a self,
        id: &'a SessionId,
        date: Option<Date>,
    ) -> ArchiveFuture<'a, Option<Bytes>> {
        let (this, id) = (Arc::clone(self), id.clone());
        Box::pin(blocking(move || this.get_blocking(&id, date)))
    }

    fn stats(&self) -> ArchiveFuture<'_, Stats> {
        let this = Arc::clone(self);
        Box::pin(blocking(move || this.stats_blocking()))
    }

    fn cleanup(&self, before: Date) -> ArchiveFuture<'_, Cleaned> {
        let this = Arc::clone(self);
        Box::pin(blocking(move || this.cleanup_blocking(before)))
    }
}
