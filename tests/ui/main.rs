//! The UI at `/ui` in a real headless Chromium (Debian's `chromium`, driven through
//! `chromedriver` with fantoccini), against the afw binary: the list, live events, input to
//! a waiting long poll, a queued pause claimed by a poll, the stream resuming after its
//! connection drops, a delete, an archived session, and a login with a key. Screenshots of
//! the main pages go to `target/ui-screenshots/` on every run.
//!
//! One test at a time (a lock): each starts its own afw and browser, and two Chromiums at
//! once on two cores only make every wait longer.

#[allow(dead_code)]
#[path = "../support/binary.rs"]
mod binary;
mod browser;

use std::time::Duration;

use serde_json::{Value, json};

use binary::Binary;
use browser::Browser;

/// The `seq`s of the events the session page shows, in order.
const SEQS: &str =
    "return [...document.querySelectorAll('.stream li')].map(li => li.dataset.seq).join(',')";

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// This test's turn, and a fresh afw for it (memory storage, a directory archive in a
/// temporary directory).
async fn setup(
    name: &str,
    extra: &[(&str, String)],
) -> (tokio::sync::MutexGuard<'static, ()>, Binary, tempdir::Dir) {
    let turn = ONE_AT_A_TIME.lock().await;
    let dir = tempdir::Dir::new(name);
    let mut env = vec![("AFW_ARCHIVE", format!("dir:{}", dir.path()))];
    env.extend(extra.iter().cloned());
    (turn, Binary::start(name, &env), dir)
}

mod tempdir {
    /// A directory under the system's temporary one, removed when dropped.
    pub struct Dir(std::path::PathBuf);

    impl Dir {
        pub fn new(name: &str) -> Self {
            let path = std::env::temp_dir().join(format!("afw-ui-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        pub fn path(&self) -> String {
            self.0.display().to_string()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Posts one event of `kind` to `session` (with the fields of `extra`); its seq.
fn post(afw: &Binary, kind: &str, session: &str, extra: Value) -> u64 {
    let (status, body) = afw.request(
        "POST",
        "/api/events",
        &event(kind, session, extra).to_string(),
    );
    assert_eq!(status, 201, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["seq"]
        .as_u64()
        .unwrap()
}

fn event(kind: &str, session: &str, extra: Value) -> Value {
    let mut ev =
        json!({"type": kind, "sessionId": session, "timestamp": "2026-12-03T09:00:00.000Z"});
    if let (Some(ev), Some(extra)) = (ev.as_object_mut(), extra.as_object()) {
        ev.extend(extra.clone());
    }
    ev
}

fn started(afw: &Binary, session: &str, user: &str) {
    let who = json!({"cwd": format!("/home/{user}/project"), "user": user, "hostname": "laptop"});
    post(afw, "session:started", session, who);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_shows_sessions_and_an_event_posted_over_http_appears_live() {
    let (_one, afw, _dir) = setup("list", &[]).await;
    started(&afw, "ui-list-1", "alice");
    started(&afw, "ui-list-2", "bob");
    post(
        &afw,
        "chain:compiled",
        "ui-list-1",
        json!({"chainId": "c-1", "title": "Fix rounding", "steps": [{"stepNumber": 1, "action": "code"}]}),
    );
    let b = Browser::open(&afw.url("/ui")).await;
    let count = r#"return document.querySelector('tr[data-session="ui-list-1"] td[data-count]')?.textContent ?? null"#;
    b.until("the listed session", count, |v| v == "2").await;
    b.until(
        "the other session",
        r#"return !!document.querySelector('tr[data-session="ui-list-2"]')"#,
        |v| v == true,
    )
    .await;
    b.until_live().await;
    b.screenshot("sessions").await;
    post(
        &afw,
        "file:modified",
        "ui-list-1",
        json!({"path": "/home/alice/project/src/lib.rs"}),
    );
    b.until("the row to count the new event", count, |v| v == "3")
        .await;
    // Filter by user: only bob's session is left.
    b.run("const s = document.getElementById('f-user'); s.value = 'bob'; s.dispatchEvent(new Event('change'));").await;
    b.until(
        "the user filter",
        "return [...document.querySelectorAll('tr[data-session]')].map(r => r.dataset.session).join(',')",
        |v| v == "ui-list-2",
    )
    .await;
    // It follows what it lists, no more.
    let followed = "return [...window.afw.live.subs.keys()].join(',')";
    b.until("the subscriptions", followed, |v| v == "ui-list-2")
        .await;
    // Health: the instance's storage and live figures from /metrics.
    b.run("location.hash = '#/health'").await;
    b.until(
        "the storage",
        r#"return document.querySelector('[data-fact="Storage"]')?.textContent ?? ''"#,
        |v| v == "memory",
    )
    .await;
    b.until(
        "the events stored",
        r#"return document.querySelector('[data-figure="Events stored"]')?.textContent ?? ''"#,
        |v| {
            v.as_str()
                .and_then(|t| t.parse::<u64>().ok())
                .is_some_and(|n| n >= 4)
        },
    )
    .await;
    b.until(
        "a chart",
        "return document.querySelectorAll('.chart polyline').length",
        |v| v == 1,
    )
    .await;
    b.screenshot("health").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_sent_from_the_page_reaches_a_waiting_long_poll_and_a_pause_is_claimed() {
    let (_one, afw, _dir) = setup("input", &[]).await;
    started(&afw, "ui-input", "alice");
    post(
        &afw,
        "interaction:awaiting-input",
        "ui-input",
        json!({"question": "Go on?", "inputType": "text", "quickResponses": ["yes", "no"]}),
    );
    let b = Browser::open(&afw.url("/ui#/session/ui-input")).await;
    b.until(
        "the prompt",
        "return document.querySelector('.prompt')?.textContent ?? null",
        |v| v == "Go on?",
    )
    .await;
    b.screenshot("session").await;
    // The input-inject hook's long poll, waiting before anything is queued.
    let port = afw.port;
    let poll = tokio::task::spawn_blocking(move || {
        binary::http(
            port,
            "GET",
            "/api/sessions/ui-input/input?timeout=20000",
            &[],
            "",
        )
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.run("document.getElementById('input-text').value = 'run the tests';")
        .await;
    b.click("form button[type=submit]").await;
    let (status, body) = poll.await.unwrap();
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["available"], true, "{body}");
    assert_eq!(body["input"]["input"], "run the tests", "{body}");
    // A quick response is input too.
    b.click("button.quick").await;
    b.until_api(&afw, "/api/sessions/ui-input/input?timeout=5000", |v| {
        v["input"]["input"] == "yes"
    })
    .await;

    b.click("button[data-command=pause]").await;
    b.until(
        "the notice",
        "return [...document.querySelectorAll('[data-notice=info]')].map(n => n.textContent).join(' | ')",
        |v| v.as_str().is_some_and(|t| t.contains("pause queued")),
    )
    .await;
    let (status, body) = afw.get("/api/sessions/ui-input/commands");
    assert_eq!(status, 200);
    let claimed: Value = serde_json::from_str(&body).unwrap();
    let types: Vec<&str> = claimed["commands"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["type"].as_str())
        .collect();
    assert_eq!(types, vec!["pause"], "{claimed}");
    // retry needs a step number: the page says so and queues nothing.
    b.run("document.getElementById('cmd-step').value = '';")
        .await;
    b.click("button[data-command=retry]").await;
    b.until(
        "the refusal",
        "return [...document.querySelectorAll('[data-notice=error]')].map(n => n.textContent).join(' | ')",
        |v| {
            v.as_str()
                .is_some_and(|t| t.contains("needs a step number"))
        },
    )
    .await;
    let (_, body) = afw.get("/api/sessions/ui-input/commands");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["count"],
        0,
        "{body}"
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_resumes_without_a_gap_when_its_connection_drops() {
    let (_one, afw, _dir) = setup("resume", &[]).await;
    started(&afw, "ui-resume", "alice");
    for i in 0..4 {
        post(
            &afw,
            "terminal:output",
            "ui-resume",
            json!({"output": format!("line {i}\n"), "stream": "stdout"}),
        );
    }
    let b = Browser::open(&afw.url("/ui#/session/ui-resume")).await;
    b.until("the first events", SEQS, |v| v == "1,2,3,4,5")
        .await;
    b.until_live().await;
    b.run("window.afw.live.drop();").await;
    // Written while the page is disconnected: it must get them when it is back.
    for i in 4..8 {
        post(
            &afw,
            "terminal:output",
            "ui-resume",
            json!({"output": format!("line {i}\n"), "stream": "stdout"}),
        );
    }
    b.until("the resumed stream", SEQS, |v| v == "1,2,3,4,5,6,7,8,9")
        .await;
    let reconnects = b.run("return window.afw.live.reconnects").await;
    assert!(reconnects.as_u64().unwrap_or(0) >= 1, "{reconnects}");
    post(
        &afw,
        "terminal:output",
        "ui-resume",
        json!({"output": "line 8\n", "stream": "stdout"}),
    );
    b.until("a live event after the resume", SEQS, |v| {
        v == "1,2,3,4,5,6,7,8,9,10"
    })
    .await;
    let terminal = b
        .run("return document.querySelector('.terminal').textContent")
        .await;
    assert_eq!(
        terminal,
        (0..9).map(|i| format!("line {i}\n")).collect::<String>()
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_deleted_after_a_confirmation() {
    let (_one, afw, _dir) = setup("delete", &[]).await;
    started(&afw, "ui-delete", "alice");
    let b = Browser::open(&afw.url("/ui#/session/ui-delete")).await;
    b.until(
        "the page",
        "return document.querySelector('h1')?.textContent ?? ''",
        |v| v.as_str().is_some_and(|t| t.starts_with("ui-delete")),
    )
    .await;
    b.click("button.danger").await;
    let text = b.client.get_alert_text().await.unwrap();
    assert!(text.contains("Delete session ui-delete"), "{text}");
    b.client.accept_alert().await.unwrap();
    b.until("the list", "return location.hash", |v| v == "#/sessions")
        .await;
    assert_eq!(afw.get("/api/sessions/ui-delete").0, 404);
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archived_session_opens_read_only_from_the_history() {
    let (_one, afw, _dir) = setup("history", &[]).await;
    started(&afw, "ui-archived", "alice");
    post(
        &afw,
        "terminal:output",
        "ui-archived",
        json!({"output": "done\n", "stream": "stdout"}),
    );
    post(
        &afw,
        "session:ended",
        "ui-archived",
        json!({"status": "completed", "reason": "done"}),
    );
    let b = Browser::open(&afw.url("/ui#/history")).await;
    b.until_api(&afw, "/api/history/dates", |v| {
        v["dates"][0] == "2026-12-03"
    })
    .await;
    b.run("location.reload()").await;
    b.until(
        "the date",
        "return document.querySelector('.dates a')?.textContent ?? ''",
        |v| v == "2026-12-03",
    )
    .await;
    b.screenshot("history").await;
    b.click(".dates a").await;
    b.until(
        "the session of that date",
        "return document.querySelector('.dates a')?.textContent ?? ''",
        |v| v == "ui-archived",
    )
    .await;
    b.click(".dates a").await;
    b.until(
        "the archived session",
        "return document.querySelector('.badge.s-archived')?.textContent ?? ''",
        |v| v.as_str().is_some_and(|t| t.starts_with("archived")),
    )
    .await;
    let state = b
        .run("return [document.querySelectorAll('.stream li').length, !!document.querySelector('button[data-command]'), document.querySelector('.terminal').textContent]")
        .await;
    assert_eq!(
        state,
        json!([3, false, "done\n"]),
        "events shown, no commands, its output"
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_on_the_page_asks_for_the_key_once_and_uses_it() {
    let (_one, afw, _dir) = setup("login", &[("AFW_API_KEY", "ui-secret-key".into())]).await;
    let (status, _) = afw.request_with(
        "POST",
        "/api/events",
        &[("authorization", "Bearer ui-secret-key")],
        &event(
            "session:started",
            "ui-login",
            json!({"cwd": "/w", "user": "alice"}),
        )
        .to_string(),
    );
    assert_eq!(status, 201);
    let b = Browser::open(&afw.url("/ui")).await;
    b.until(
        "the key dialog",
        "return document.getElementById('login').open",
        |v| v == true,
    )
    .await;
    b.screenshot("login").await;
    b.run("document.getElementById('login-key').value = 'wrong';")
        .await;
    b.click("#login-form button[type=submit]").await;
    b.until(
        "the refusal",
        "return document.getElementById('login-error').textContent",
        |v| v.as_str().is_some_and(|t| t.contains("not valid")),
    )
    .await;
    b.run("document.getElementById('login-key').value = 'ui-secret-key';")
        .await;
    b.click("#login-form button[type=submit]").await;
    b.until(
        "the list",
        r#"return !!document.querySelector('tr[data-session="ui-login"]')"#,
        |v| v == true,
    )
    .await;
    b.until(
        "the WebSocket with ?apiKey=",
        "return document.getElementById('conn').textContent",
        |v| v == "live",
    )
    .await;
    let kept = b
        .run("return [sessionStorage.getItem('afw.apiKey'), localStorage.length, document.cookie]")
        .await;
    assert_eq!(
        kept,
        json!(["ui-secret-key", 0, ""]),
        "the key is kept in this tab only"
    );
    // Once: a reload finds it and asks again for nothing.
    b.run("location.reload()").await;
    b.until(
        "the list after a reload",
        r#"return !!document.querySelector('tr[data-session="ui-login"]')"#,
        |v| v == true,
    )
    .await;
    assert_eq!(
        b.run("return document.getElementById('login').open").await,
        false
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_cannot_resume_says_so_and_reloads() {
    let (_one, afw, _dir) = setup("recover", &[]).await;
    started(&afw, "ui-recover", "alice");
    post(
        &afw,
        "file:created",
        "ui-recover",
        json!({"path": "/w/a.rs"}),
    );
    let b = Browser::open(&afw.url("/ui#/session/ui-recover")).await;
    b.until("the events", SEQS, |v| v == "1,2").await;
    b.until_live().await;
    // While the page is away the session is deleted and begins again: a new incarnation,
    // which the page's cursor (seq 2 of the old one) cannot continue.
    b.run("window.afw.live.drop();").await;
    assert_eq!(afw.request("DELETE", "/api/sessions/ui-recover", "").0, 204);
    started(&afw, "ui-recover", "alice");
    b.until(
        "the notice",
        "return document.querySelector('[data-notice=recovered-false]')?.textContent ?? ''",
        |v| v.as_str().is_some_and(|t| t.contains("recovered: false")),
    )
    .await;
    b.until("the reloaded stream", SEQS, |v| v == "1").await;
    b.close().await;
}
