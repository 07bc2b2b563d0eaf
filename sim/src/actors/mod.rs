//! The simulated clients, one module each: hooks posting events and polling commands,
//! dashboards following sessions over the WebSocket, the commander, the typist and input
//! pollers, and the checker that reads the final state. This module holds what they share:
//! HTTP with a bound, the load balancer's pick, the WebSocket dial.
//!
//! Actors only record what they see; nothing here may judge it.

use std::time::Duration;

use rand::RngExt;
use serde_json::Value;

use crate::client::{self, WsClient};
use crate::plan::{REQUEST_BOUND, SeededRng, instance_name};

use crate::faults::Down;

mod checker;
mod cleaner;
mod commander;
mod dashboard;
mod hook;
mod input;
mod script;

pub(crate) use checker::checker;
pub(crate) use cleaner::cleaner;
pub(crate) use commander::commander;
pub(crate) use dashboard::{dashboard, viewer};
pub(crate) use hook::hook;
pub(crate) use input::{input_poller, typist, waiter};

pub(crate) async fn http(
    instance: usize,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    http_within(REQUEST_BOUND, instance, method, path, body).await
}

/// [`http`] with its own bound (long polls wait longer than a request may take).
pub(crate) async fn http_within(
    bound: Duration,
    instance: usize,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let addr = format!("{}:3001", instance_name(instance));
    let fut = client::http(&addr, method, path, body);
    match tokio::time::timeout(bound, fut).await {
        Ok(r) => r,
        Err(_) => Err("timeout".into()),
    }
}

/// An instance that is not crashed right now (the load balancer's health check).
pub(crate) fn pick_up(rng: &mut SeededRng, instances: usize, down: &Down) -> usize {
    for _ in 0..16 {
        let i = rng.random_range(0..instances);
        if !down.borrow().get(&i).copied().unwrap_or(false) {
            return i;
        }
    }
    rng.random_range(0..instances)
}

pub(crate) async fn ws_connect(instance: usize) -> Result<WsClient, String> {
    client::ws_connect(&format!("{}:3001", instance_name(instance))).await
}

/// Retries a write for a few seconds (every fault has healed by now); true once it got 2xx.
pub(crate) async fn write(instance: usize, path: &str, body: &Value) -> bool {
    for _ in 0..20 {
        if let Ok((status, _)) = http(instance, "POST", path, Some(body)).await
            && (200..300).contains(&status)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}
