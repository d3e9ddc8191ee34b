//! The link to the agents: the QUIC endpoint, each agent's control session and audio stream.
//!
//! # Layout
//! - `server.rs` — [`server::run`]: accepts agents, checks identity, drives each control session
//!   and audio stream; shutdown notifies then drains.
//! - `udp_socket.rs` — the QUIC sockets, their kernel buffers sized for bursts from thousands of
//!   agents.

pub mod server;
pub mod udp_socket;
