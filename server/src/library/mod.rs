//! The console's audio library: recordings staff upload from a PC or a phone (MP3, M4A from an
//! iPhone, Ogg or WebM Opus from a browser's recorder, WAV, FLAC), kept on the server to be
//! aired by schedule entries, bulletins and emergencies.
//!
//! - `store.rs` — the items: files in `data_dir/library/<id>.<ext>`, records in the store's
//!   `library` tree ([`Library`], [`LibraryItem`]).
//! - `check.rs` — what an upload must pass to become an item: decoded to the end with the
//!   pipeline's decoder, measured (duration, peak and RMS level), refused with a message in
//!   Vietnamese that says what to do ([`check_file`], [`Refusal`]).
//! - `tts.rs` — text-to-speech: an announcement typed in the console spoken by espeak-ng's
//!   Vietnamese voice or the config's `tts_command`, to preview or to keep as an item
//!   ([`synthesize`], [`TtsSettings`], [`TtsError`]).
//!
//! The HTTP side is `operator/library_routes.rs` (and `operator/tts_routes.rs`); an item is aired by its `path`, like any
//! other file on the server.

pub mod check;
pub mod store;
pub mod tts;

pub use check::{check_file, content_type, AudioCheck, Refusal};
pub use store::{valid_name, Library, LibraryError, LibraryItem, LIBRARY_DIR, NAME_MAX};
pub use tts::{synthesize, TtsError, TtsSettings};
