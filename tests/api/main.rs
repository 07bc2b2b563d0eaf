//! Integration tests of the afw service. One binary (linked once) with a module per area.

mod commands;
mod connections;
mod dashboard;
mod docs_links;
mod errors;
mod events;
mod fuzz_findings;
mod helpers;
mod history;
mod input;
mod layout;
mod limits;
mod openapi;
mod operations;
mod real_clients;
mod security;
mod sessions;
mod snapshots;
mod strict;
mod ttl;
mod turmoil_seam;
mod ui;
mod ws;
