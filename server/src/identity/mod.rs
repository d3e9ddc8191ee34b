//! Who may connect: the district CA and the certificates it issues to stations, the register of
//! every certificate issued, revocation and expiry, the server's side of mutual TLS, and the key
//! that lets a restarted server reset its agents' old connections at once.
//!
//! # Layout
//! - `certificate_authority.rs` — the district CA, server certificates and agent enrolment.
//! - `enrolment_register.rs` — every certificate issued to each station (`data_dir/ca/enrolled/`).
//! - `revocation_list.rs` — revoked certificates (`data_dir/ca/revoked.toml`), refused at the
//!   handshake and their open connections closed.
//! - `certificate_expiry.rs` — valid, expiring, expired or revoked (`radio-server certificates`).
//! - `tls.rs` — the server's TLS configuration; an agent's identity comes from its certificate.
//! - `reset_key.rs` — the QUIC stateless-reset key, kept in the data directory.

pub mod certificate_authority;
pub mod certificate_expiry;
pub mod enrolment_register;
pub(crate) mod reset_key;
pub mod revocation_list;
pub mod tls;
