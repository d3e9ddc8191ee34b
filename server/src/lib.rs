//! The central server of the smart radio broadcast system ("truyền thanh thông minh").
//!
//! It ingests programmes, encodes each **once** to Opus and streams the frames over QUIC (mutual
//! TLS, certificates from its own district CA) to the relay agents at the commune stations.
//!
//! # Layout
//! - `pipeline/` — file to Opus: `decoder.rs` (symphonia, downmix), `resampler.rs` (rubato, to
//!   48 kHz), `encoder.rs` (libopus, 20 ms voice frames), `mod.rs` ([`pipeline::ProgrammeEncoder`]).
//! - `ingest/` — real-time audio from outside (live studio RTP or pipe, upstream relays), as PCM.
//! - `live_input.rs` — the studio's live RTP input, on air by itself while it sends.
//! - `playback.rs` — [`playback::Playback`]: one programme encoded once into 20 ms frames.
//! - `prefetch.rs` — [`prefetch::PrefetchPlanner`]: per station, the recordings scheduled within
//!   the prefetch horizon, each encoded once into a blob, kept current with the schedule.
//! - `prefetch_sender.rs` — an agent's prefetch streams: its manifest, then the blobs it lacks,
//!   paced and below the audio's priority.
//! - `router.rs` — [`router::Router`]: each tick, one frame of every playback to the stations
//!   switched to it.
//! - `media_clock.rs` — the process's media clock: frames are stamped and clock probes answered
//!   on it, the time base of synchronised playout.
//! - `on_air.rs` — [`on_air::OnAir`]: the 20 ms clock driving the router; all switching goes
//!   through its command channel.
//! - `schedule/` — the schedule in local time (jiff), its validation, occurrences, and the
//!   TT39 priority ladder deciding what each station airs (`docs/SCHEDULING.md`).
//! - `station_output.rs` — one station's unbroken stream: its own sequence numbers, programme
//!   markers at every switch, a bounded queue that drops a slow agent's oldest frames.
//! - `server.rs` — [`server::run`]: accepts agents, checks identity, drives each control session
//!   and audio stream; shutdown notifies then drains.
//! - `tls.rs` — the server's side of mutual TLS; identity from the client certificate.
//! - `udp_socket.rs` — the QUIC socket, its kernel buffers sized for bursts from thousands of agents.
//! - `reset_key.rs` — the QUIC stateless-reset key, kept in the data directory so that agents
//!   learn at once that a restarted server lost their connections.
//! - `certificate_authority.rs` — the district CA, server certificates and agent enrolment.
//! - `certificate_expiry.rs` — which station certificates are valid, expiring, expired or
//!   revoked (`radio-server certificates`), and the daily warnings.
//! - `enrolment_register.rs` — every certificate issued to each station (`data_dir/ca/enrolled/`).
//! - `group_commit.rs` — concurrent journal writers share one disk flush.
//! - `revocation_list.rs` — revoked certificates (`data_dir/ca/revoked.toml`, `radio-server
//!   revoke`), refused at the handshake and their open connections closed.
//! - `store.rs` — [`store::Store`]: the schedule, the admin token's hash and the audit log,
//!   durable (sled).
//! - `uptime_journal.rs` — [`uptime_journal::UptimeJournal`]: the agents' uploaded journals and
//!   the server's own view of their connections, stored once per record, flushed before the
//!   acknowledgement.
//! - `report/` — `radio-server report uptime|plays`: availability, outages, hours on air and
//!   programmes played per station and day, month or year (`docs/REPORTS.md`).
//! - `admin.rs` — [`admin::serve`]: the local admin endpoint (HTTP + JSON, bearer token), every
//!   route with the roles that may call it.
//! - `auth_limiter.rs` — [`auth_limiter::AuthLimiter`]: failed authentications per source
//!   address; too many lock the source out for a while (429).
//! - `audit_log.rs` — [`audit_log::AuditLog`]: every on-air change asked of the admin endpoint,
//!   who, when, from where and how it ended, durable in the store.
//! - `clusters.rs` — the loudspeaker clusters' live state: what each agent's journal last said
//!   of the clusters it watches; the others follow their station.
//! - `metrics.rs` — `/metrics` in the Prometheus text format.
//! - `dashboard.rs` — the web dashboard (`assets/dashboard.html`, `assets/dashboard.js`) served at
//!   `/` by the admin endpoint.
//! - `admin_client.rs` — [`admin_client::AdminClient`]: the operator commands' side of it.
//! - `demo.rs` — `radio-server demo`: server plus one agent per station on loopback.
//! - `main.rs` — the `radio-server` command line.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod admin;
pub mod admin_client;
pub mod audit_log;
pub mod auth_limiter;
pub mod certificate_authority;
pub mod certificate_expiry;
pub mod clusters;
pub mod dashboard;
pub mod demo;
pub mod enrolment_register;
pub mod group_commit;
pub mod ingest;
pub mod live_input;
pub mod media_clock;
pub mod metrics;
pub mod on_air;
pub mod pipeline;
pub mod playback;
pub mod prefetch;
pub mod prefetch_sender;
pub mod report;
pub mod reset_key;
pub mod revocation_list;
pub mod router;
pub mod schedule;
pub mod server;
pub mod station_output;
pub mod store;
pub mod tls;
pub mod udp_socket;
pub mod uptime_journal;
