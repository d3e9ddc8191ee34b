//! The central server of the smart radio broadcast system ("truyền thanh thông minh").
//!
//! It ingests programmes, encodes each **once** to Opus and streams the frames over QUIC (mutual
//! TLS, certificates from its own district CA) to the relay agents at the commune stations.
//!
//! # Layout
//! - `pipeline/` — file to Opus: `decoder.rs` (symphonia, downmix), `resampler.rs` (rubato, to
//!   48 kHz), `encoder.rs` (libopus, 20 ms voice frames), `mod.rs` ([`pipeline::ProgrammeEncoder`]).
//! - `broadcast.rs` — [`broadcast::Channel`]: plays a programme into the fan-out on a 20 ms clock,
//!   numbering frames and marking programme start and end.
//! - `fanout.rs` — one serialised frame queued for every agent; bounded queues that drop the
//!   oldest frames of a slow agent instead of blocking the publisher.
//! - `server.rs` — [`server::run`]: accepts agents, checks identity, drives each control session
//!   and audio stream; shutdown notifies then drains.
//! - `tls.rs` — the server's side of mutual TLS; identity from the client certificate.
//! - `certificate_authority.rs` — the district CA, server certificates and agent enrolment.
//! - `demo.rs` — `radio-server demo`: server plus one agent per station on loopback.
//! - `main.rs` — the `radio-server` command line.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod broadcast;
pub mod certificate_authority;
pub mod demo;
pub mod fanout;
pub mod pipeline;
pub mod server;
pub mod tls;
