//! The memory backend's listing indexes: every session, the sessions of each status and of
//! each user, and the users by their newest session, each in listing order (newest activity first, ties by id descending), so a
//! page of `GET /api/sessions` reads one page, as the Redis backend's sorted sets do.
//!
//! Plain ordered sets of keys: nothing here may lock a slot, read a clock or know where
//! sessions are stored. The memory store keeps them in step with its slots.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use crate::domain::model::{Session, SessionId, SessionStatus};
use crate::domain::session::{ListingKey, SessionFilter, UserKey, listing_key};

/// What the indexes know of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    key: ListingKey,
    status: SessionStatus,
    user: Option<String>,
}

impl Entry {
    pub(crate) fn of(s: &Session) -> Self {
        Self {
            key: listing_key(s),
            status: s.status,
            user: s.user.clone(),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Listing {
    all: BTreeSet<ListingKey>,
    by_status: BTreeMap<&'static str, BTreeSet<ListingKey>>,
    by_user: BTreeMap<String, BTreeSet<ListingKey>>,
    /// Users by their newest session's activity, and where each one stands in it.
    users: BTreeSet<UserKey>,
    user_keys: BTreeMap<String, UserKey>,
}

impl Listing {
    /// Moves a session from its `old` place to its `new` one (either may be `None`: created,
    /// removed).
    pub(crate) fn update(&mut self, old: Option<&Entry>, new: Option<&Entry>) {
        if old == new {
            return;
        }
        if let Some(e) = old {
            self.all.remove(&e.key);
            remove_from(&mut self.by_status, e.status.as_str(), &e.key);
            if let Some(u) = &e.user {
                remove_from(&mut self.by_user, u, &e.key);
            }
        }
        let touched = [old, new]
            .into_iter()
            .flatten()
            .filter_map(|e| e.user.clone());
        let touched: BTreeSet<String> = touched.collect();
        if let Some(e) = new {
            self.all.insert(e.key.clone());
            self.by_status
                .entry(e.status.as_str())
                .or_default()
                .insert(e.key.clone());
            if let Some(u) = &e.user {
                self.by_user
                    .entry(u.clone())
                    .or_default()
                    .insert(e.key.clone());
            }
        }
        for user in touched {
            self.restand(&user);
        }
    }

    /// Re-files a user by their newest session (or drops them: none left).
    fn restand(&mut self, user: &str) {
        if let Some(old) = self.user_keys.remove(user) {
            self.users.remove(&old);
        }
        let newest = self.by_user.get(user).and_then(|set| set.first());
        if let Some((activity, _)) = newest {
            let key = (*activity, std::cmp::Reverse(user.to_owned()));
            self.users.insert(key.clone());
            self.user_keys.insert(user.to_owned(), key);
        }
    }

    /// Up to `n` users after `after`, newest activity first.
    pub(crate) fn users_after(&self, after: Option<&UserKey>, n: usize) -> Vec<UserKey> {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.users
            .range((from, Bound::Unbounded))
            .take(n)
            .cloned()
            .collect()
    }

    /// How many sessions of `user` are indexed.
    pub(crate) fn user_count(&self, user: &str) -> usize {
        self.by_user.get(user).map_or(0, BTreeSet::len)
    }

    /// Up to `n` session ids after `after` in the index `filter` picks (the user's, else
    /// the status's, else all), in listing order. The caller checks the rest of the filter.
    pub(crate) fn ids_after(
        &self,
        filter: &SessionFilter,
        after: Option<&ListingKey>,
        n: usize,
    ) -> Vec<(ListingKey, SessionId)> {
        let set = match (&filter.user, filter.status) {
            (Some(u), _) => self.by_user.get(u),
            (None, Some(st)) => self.by_status.get(st.as_str()),
            (None, None) => Some(&self.all),
        };
        let Some(set) = set else {
            return Vec::new();
        };
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        set.range((from, Bound::Unbounded))
            .take(n)
            .map(|k| (k.clone(), k.1.0.clone()))
            .collect()
    }
}

fn remove_from<K: Ord + std::borrow::Borrow<str>>(
    map: &mut BTreeMap<K, BTreeSet<ListingKey>>,
    name: &str,
    key: &ListingKey,
) {
    if let Some(set) = map.get_mut(name) {
        set.remove(key);
        if set.is_empty() {
            map.remove(name);
        }
    }
}
