//! What a client may send (`subscribe`, `unsubscribe`, `input`, `ping`) and how the
//! connection answers each: confirmations, replays on subscribe, error frames for bad
//! messages (the connection stays), close codes for what it cannot survive.
//!
//! Nothing here may own the socket or the inbox (that is [`super::conn`]).

use axum::extract::ws::Message;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::domain::model::{SessionId, StoredEvent};
use crate::http::error::ApiError;
use crate::storage::{EventPage, EventQuery};

use super::close;
use super::conn::{Conn, Cursor, End};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(super) enum ClientMessage {
    Subscribe {
        #[serde(rename = "sessionId")]
        session_id: String,
        after: Option<u64>,
        /// The epoch the client's `after` counts in (from its last confirmation).
        epoch: Option<String>,
    },
    Unsubscribe {
        #[serde(rename = "sessionId")]
        session_id: String,
    },
    Input {
        #[serde(rename = "sessionId")]
        session_id: String,
        payload: Value,
    },
    Ping,
}

/// Reads one client text frame; the error is the sentence of the error frame.
pub(super) fn parse(text: &str) -> Result<ClientMessage, String> {
    serde_json::from_str(text).map_err(|e| format!("Invalid message: {e}"))
}

impl Conn<'_> {
    pub(super) async fn confirm(
        &mut self,
        sid: &SessionId,
        last_seq: u64,
        recovered: Option<bool>,
        epoch: Option<&str>,
    ) -> Result<(), End> {
        let mut payload =
            json!({ "message": format!("Subscribed to session {sid}"), "lastSeq": last_seq });
        if let Some(r) = recovered {
            payload["recovered"] = Value::from(r);
        }
        if let Some(e) = epoch {
            payload["epoch"] = Value::from(e);
        }
        self.send_json(
            &json!({ "type": "subscription_confirmed", "sessionId": sid, "payload": payload }),
        )
        .await
    }

    pub(super) async fn handle(&mut self, msg: Message) -> Result<(), End> {
        let text = match msg {
            Message::Text(text) if text.len() > self.state.config().ws_max_message_bytes => {
                return Err(End::Close(close::TOO_BIG, "Message too big"));
            }
            Message::Text(text) => text,
            Message::Close(_) => return Err(End::Gone),
            // tungstenite answers pings itself; pongs need nothing.
            Message::Ping(_) | Message::Pong(_) => return Ok(()),
            Message::Binary(data) if data.len() > self.state.config().ws_max_message_bytes => {
                return Err(End::Close(close::TOO_BIG, "Message too big"));
            }
            Message::Binary(_) => {
                return self
                    .send_error(
                        "Binary messages are not supported; send JSON text",
                        None,
                        None,
                    )
                    .await;
            }
        };
        if !self.bucket.take() {
            let limit = self.state.config().ws_rate_limit;
            return self
                .send_error(
                    &format!(
                        "Rate limit exceeded: at most {limit} messages per second; message dropped"
                    ),
                    None,
                    None,
                )
                .await;
        }
        let msg = match parse(text.as_str()) {
            Ok(m) => m,
            Err(why) => return self.send_error(&why, None, None).await,
        };
        match msg {
            ClientMessage::Ping => self.send_json(&json!({ "type": "pong" })).await,
            ClientMessage::Subscribe {
                session_id,
                after,
                epoch,
            } => self.on_subscribe(&session_id, after, epoch).await,
            ClientMessage::Unsubscribe { session_id } => {
                self.unsubscribe(&session_id);
                Ok(())
            }
            ClientMessage::Input {
                session_id,
                payload,
            } => self.input(&session_id, payload).await,
        }
    }

    /// `subscribe`, within the cap on subscriptions per client.
    async fn on_subscribe(
        &mut self,
        session_id: &str,
        after: Option<u64>,
        epoch: Option<String>,
    ) -> Result<(), End> {
        match SessionId::parse(session_id) {
            Ok(sid) if self.at_subscription_cap(&sid) => {
                let limit = self.state.config().ws_max_subscriptions;
                let message = format!(
                    "Too many subscriptions: a client may follow {limit} sessions; unsubscribe from one first"
                );
                self.send_error(&message, Some(session_id), None).await
            }
            Ok(sid) => self.subscribe(sid, after, epoch).await,
            Err(e) => {
                self.send_error(&format!("Invalid sessionId: {e}"), Some(session_id), None)
                    .await
            }
        }
    }

    /// `unsubscribe`: a session not followed (or not valid) is nothing to undo.
    fn unsubscribe(&mut self, session_id: &str) {
        if let Ok(sid) = SessionId::parse(session_id) {
            let was_pending = self.pending_subscribe.remove(&sid).is_some();
            self.pending_resync.remove(&sid);
            if self.subscriptions.remove(&sid).is_some() || was_pending {
                self.state.shared().bus.unsubscribe(&sid, self.inbox.id);
            }
        }
    }

    /// `input`: queued as `POST .../input` would; a refusal is an error frame.
    async fn input(&mut self, session_id: &str, payload: Value) -> Result<(), End> {
        let sid = match SessionId::parse(session_id) {
            Ok(sid) => sid,
            Err(e) => {
                return self
                    .send_error(&format!("Invalid sessionId: {e}"), Some(session_id), None)
                    .await;
            }
        };
        if payload.is_null() {
            return self
                .send_error("Input payload is required", Some(session_id), None)
                .await;
        }
        match crate::http::actions::queue_input(self.state, &sid, payload, None, None).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let body = e.body();
                self.send_error(
                    &e.to_string(),
                    Some(session_id),
                    body.get("details").cloned(),
                )
                .await
            }
        }
    }

    /// Subscribes, confirms with the session's `lastSeq` and `epoch`, and with `after`
    /// replays what the client missed: everything after it, or, when `epoch` names
    /// another incarnation than the stored one, `recovered: false` and the new
    /// incarnation from seq 0.
    pub(super) async fn subscribe(
        &mut self,
        sid: SessionId,
        after: Option<u64>,
        epoch: Option<String>,
    ) -> Result<(), End> {
        // Subscribe first: events stored from now on are queued for us; anything both
        // queued and read below is dropped as a duplicate by its seq.
        self.state.shared().bus.subscribe(&sid, self.inbox);
        let limit = match after {
            Some(_) => self.state.config().max_events_per_session,
            None => 0,
        };
        let query = EventQuery {
            after,
            limit,
            ..EventQuery::default()
        };
        let page: EventPage = match self.state.store().read_events(&sid, query).await {
            Ok(page) => page,
            Err(e) => {
                // Keep the subscription and confirm it once storage answers (the retry
                // timer comes back to it): the client need not subscribe again. Events
                // stored meanwhile are at or below the cursor that read will return.
                let first_failure = self
                    .pending_subscribe
                    .insert(sid.clone(), (after, epoch))
                    .is_none();
                if first_failure {
                    let message = format!(
                        "{}; the subscription will be confirmed when it is back",
                        ApiError::from(e)
                    );
                    return self.send_error(&message, Some(sid.as_str()), None).await;
                }
                return Ok(());
            }
        };
        self.pending_subscribe.remove(&sid);
        let stored_epoch = page.epoch.as_deref();
        match after {
            None => {
                let last = self
                    .subscriptions
                    .entry(sid.clone())
                    .or_insert_with(|| Cursor::at(page.last_seq, stored_epoch))
                    .seq;
                self.confirm(&sid, last, None, stored_epoch).await
            }
            Some(_) if Cursor::at(0, epoch.as_deref()).other_epoch(stored_epoch) => {
                self.restart(&sid, stored_epoch).await
            }
            Some(after) => {
                let recovered = page.covers(after);
                let cursor = Cursor::at(page.last_seq, stored_epoch);
                self.subscriptions.insert(sid.clone(), cursor);
                self.confirm(&sid, page.last_seq, Some(recovered), stored_epoch)
                    .await?;
                if recovered {
                    let events: Vec<&StoredEvent> = page.events.iter().collect();
                    self.replay(&sid, &events).await?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod properties {
    //! Property tests of frame parsing: any text is answered (a message or the sentence of
    //! an error frame, never a panic), and every well-formed message reads back as sent,
    //! whatever the order of its fields and whatever extra fields it carries.

    use super::{ClientMessage, parse};
    use crate::domain::arbitrary::json_value;
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    /// A well-formed message and the value it must read as.
    fn message() -> impl Strategy<Value = (Map<String, Value>, ClientMessage)> {
        let sid = "[A-Za-z0-9_.:-]{1,40}";
        prop_oneof![
            Just((json!({"type": "ping"}), ClientMessage::Ping)),
            (
                sid,
                proptest::option::of(any::<u64>()),
                proptest::option::of("[a-z0-9]{1,12}")
            )
                .prop_map(|(sid, after, epoch)| {
                    let mut v = json!({"type": "subscribe", "sessionId": sid});
                    if let Some(a) = after {
                        v["after"] = json!(a);
                    }
                    if let Some(e) = &epoch {
                        v["epoch"] = json!(e);
                    }
                    let m = ClientMessage::Subscribe {
                        session_id: sid,
                        after,
                        epoch,
                    };
                    (v, m)
                }),
            sid.prop_map(|sid| (
                json!({"type": "unsubscribe", "sessionId": sid}),
                ClientMessage::Unsubscribe { session_id: sid }
            )),
            (sid, json_value()).prop_map(|(sid, payload)| (
                json!({"type": "input", "sessionId": sid, "payload": payload}),
                ClientMessage::Input {
                    session_id: sid,
                    payload
                }
            )),
        ]
        .prop_map(|(v, m)| match v {
            Value::Object(map) => (map, m),
            _ => unreachable!("every message is an object"),
        })
    }

    proptest! {
        #[test]
        fn any_text_is_a_message_or_an_error_sentence(text in ".{0,200}") {
            if let Err(why) = parse(&text) {
                prop_assert!(why.starts_with("Invalid message: "), "{why}");
            }
        }

        #[test]
        fn any_json_is_a_message_or_an_error_sentence(value in json_value()) {
            if let Err(why) = parse(&value.to_string()) {
                prop_assert!(why.starts_with("Invalid message: "), "{why}");
            }
        }

        #[test]
        fn well_formed_messages_read_as_sent_in_any_field_order_with_extra_fields(
            (fields, expected) in message(),
            extra in prop::collection::btree_map("x[a-z]{1,6}", json_value(), 0..3),
            rotate in 0usize..5,
        ) {
            let mut entries: Vec<(String, Value)> = fields.into_iter().chain(extra).collect();
            let n = entries.len();
            entries.rotate_left(rotate % n);
            let text = format!(
                "{{{}}}",
                entries
                    .iter()
                    .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            prop_assert_eq!(parse(&text), Ok(expected));
        }

        #[test]
        fn an_unknown_type_is_refused(kind in "[a-z]{1,10}", sid in "[a-z]{1,8}") {
            prop_assume!(!matches!(kind.as_str(), "ping" | "subscribe" | "unsubscribe" | "input"));
            let text = json!({"type": kind, "sessionId": sid}).to_string();
            prop_assert!(parse(&text).is_err());
        }
    }
}
