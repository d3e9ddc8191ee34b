//! The central server of the smart radio broadcast system ("truyền thanh thông minh").
//!
//! It ingests programmes, encodes each **once** to Opus and streams the frames over QUIC (mutual
//! TLS, certificates from its own district CA) to the relay agents at the commune stations.
//!
//! # Layout
//! `ls server/src` draws the architecture (`docs/ARCHITECTURE.md`): one folder per concern, each
//! with a `mod.rs` that names its files.
//! - `pipeline/` — file to Opus: decode (symphonia; Opus through libopus), resample (rubato,
//!   to 48 kHz), encode (libopus, 20 ms frames) ([`pipeline::ProgrammeEncoder`]).
//! - `ingest/` — real-time audio from outside (live studio RTP or pipe, SRTP, relayed streams,
//!   upstream servers), as PCM.
//! - `schedule/` — the schedule in local time (jiff), its validation, occurrences, and the TT39
//!   priority ladder deciding what each station airs (`docs/SCHEDULING.md`).
//! - `broadcast/` — the on-air controller's 20 ms tick, playbacks, the router, each station's
//!   output stream, the live input and the media clock.
//! - `link/` — the QUIC endpoint: [`link::server::run`] accepts agents, drives each control
//!   session and audio stream; its sockets.
//! - `health/` — the stations' box health: warnings from the `[health]` thresholds (log, audit,
//!   `/metrics`, dashboard) and the months' aggregates for the report.
//! - `prefetch/` — recordings sent to agents ahead of their airtime.
//! - `identity/` — the district CA, enrolment register, revocation, expiry, TLS, reset key.
//! - `library/` — the console's audio library: uploaded recordings, checked by decoding them
//!   to the end, stored with their duration and level.
//! - `backup/` — `radio-server backup` and `restore`: a consistent archive of the data
//!   directory taken while the server runs, restored only into an empty directory.
//! - `records/` — the durable store, the uptime journals, group commit, the clusters' state.
//! - `report/` — `radio-server report uptime|plays` from the stored journals (`docs/REPORTS.md`).
//! - `operator/` — the admin endpoint and its client, authentication limits, audit log,
//!   dashboard and `/metrics`.
//! - `demo.rs` — `radio-server demo`: server plus one agent per station on loopback.
//! - `main.rs` — the `radio-server` command line.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod backup;
pub mod broadcast;
pub mod demo;
pub mod health;
pub mod identity;
pub mod ingest;
pub mod library;
pub mod link;
pub mod operator;
pub mod pipeline;
pub mod prefetch;
pub mod records;
pub mod report;
pub mod schedule;
