//! The people's side: the admin endpoint (HTTP + JSON) with its roles per route, the command-line
//! client of it, who may authenticate and how often, the audit log of every on-air change, the
//! web dashboard and `/metrics`.
//!
//! # Layout
//! - `accounts.rs` — [`accounts::Accounts`]: the console's accounts (argon2id password hashes)
//!   and sign-in sessions.
//! - `account_routes.rs` — sign-in, sign-out, the session, and the accounts an admin manages.
//! - `admin.rs` — [`admin::serve`]: every route with the roles that may call it.
//! - `admin_client.rs` — [`admin_client::AdminClient`]: the operator commands' side of it, and
//!   how their answers are printed.
//! - `library_routes.rs` — the audio library's routes: upload (checked by decoding it all),
//!   list, play, rename, delete (`library/`).
//! - `live_routes.rs` — going live from the console: a WebSocket that carries the browser's
//!   Opus into the live input (`broadcast/console_live.rs`), and who is live now.
//! - `backup_routes.rs` — `POST /api/v1/backup`: the data directory's archive, streamed
//!   (`backup/`).
//! - `tts_routes.rs` — text-to-speech: a typed announcement previewed, or kept as a library
//!   item (`library/tts.rs`).
//! - `auth_limiter.rs` — failed authentications per source address; too many lock it out (429).
//! - `audit_log.rs` — who asked for which on-air change, when, from where, and how it ended.
//! - `https.rs` — the console's HTTPS listener and its certificate; plain HTTP only from the
//!   machine itself.
//! - `dashboard.rs` — the web dashboard (`server/assets/`) served at `/`.
//! - `openapi.rs` — the API's OpenAPI description, generated from the route table.
//! - `timeline_routes.rs` — planned beside aired, per station and day: the week grid's data.
//! - `metrics.rs` — `/metrics` in the Prometheus text format.

pub mod account_routes;
pub mod accounts;
pub mod admin;
pub mod admin_client;
pub mod audit_log;
pub mod auth_limiter;
pub(crate) mod backup_routes;
pub(crate) mod dashboard;
pub mod https;
pub mod library_routes;
pub(crate) mod live_routes;
pub(crate) mod metrics;
pub mod openapi;
pub(crate) mod timeline_routes;
pub mod tts_routes;
