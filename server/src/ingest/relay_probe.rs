//! Checks, ahead of their slots, that the streams the schedule relays can be reached.
//!
//! A relay slot whose stream is down airs the fallback (or silence) at every station it
//! targets, and on an install where the embedded schedule still names a placeholder stream that
//! is every morning and evening without anyone noticing. So the server probes each distinct
//! relay URL of its schedule once at start, off the start-up path, again every
//! [`PROBE_INTERVAL`] and whenever the schedule changes, with the relay's own code
//! ([`probe_stream`]): one WARN line when a stream cannot be reached (naming the URL, the slots
//! that use it, the error and how to set the real stream), one INFO line when it can again, and
//! the last result of each in `GET /api/v1/status` (`radio-server status`, "relay streams").

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::ingest::relay::probe_stream;
use crate::ingest::stream_url::mask;
use crate::schedule::scheduler::Scheduler;
use crate::schedule::{Schedule, SourceSpec};

/// How often every relay stream of the schedule is probed again: a stream that went away is
/// known well before its next slot, for the cost of one short request per stream.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(600);

/// Budget of each step of a probe (see [`probe_stream`]): a stream that takes longer to answer
/// would also fail the relay's own connection attempt soon enough to matter.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// One stream the schedule relays, as last probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayStreamStatus {
    /// The URL, its password masked.
    pub url: String,
    /// The entries that relay it, e.g. `tiep-song-sang (daily 05:00–07:00)`.
    pub slots: Vec<String>,
    /// `None` until the first probe has ended.
    pub reachable: Option<bool>,
    /// When the last probe ended.
    pub checked: Option<Timestamp>,
    /// Why it could not be reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How to set the real stream, for the warning: where the URL of the schedule in force comes
/// from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamOrigin {
    /// The embedded schedule relays the config's `provincial_stream` (this URL).
    Config { provincial_stream: String },
    /// A stored schedule or a schedule file: its entries name the URL.
    Schedule,
}

impl StreamOrigin {
    fn how_to_set(&self, url: &str) -> String {
        match self {
            StreamOrigin::Config { provincial_stream } if provincial_stream == url => {
                "set the real stream with `provincial_stream = \"http://…\"` in the server's \
                 config (or RADIO_SERVER_PROVINCIAL_STREAM)"
                    .to_owned()
            }
            _ => "set the real stream in the schedule entries that relay it (`radio-server \
                  schedule list`, then `schedule remove ID` and `schedule add`; \
                  docs/SCHEDULING.md)"
                .to_owned(),
        }
    }
}

/// The relay streams' last probes, shared by the prober and the admin endpoint.
#[derive(Debug, Clone, Default)]
pub struct RelayProbes {
    streams: Arc<Mutex<Vec<RelayStreamStatus>>>,
}

impl RelayProbes {
    /// The streams of the schedule in force and their last probes, in the schedule's order.
    pub fn snapshot(&self) -> Vec<RelayStreamStatus> {
        self.streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Probes the relay streams of the schedule `schedule` follows, now and every `interval`,
    /// and at once after a schedule change, until the schedule's sender goes away. Returns
    /// at once: the first results come in the background.
    pub fn spawn(
        schedule: watch::Receiver<Arc<Scheduler>>,
        origin: StreamOrigin,
        interval: Duration,
        timeout: Duration,
    ) -> Self {
        let probes = RelayProbes::default();
        tokio::spawn(probes.clone().run(schedule, origin, interval, timeout));
        probes
    }

    async fn run(
        self,
        mut schedule: watch::Receiver<Arc<Scheduler>>,
        origin: StreamOrigin,
        interval: Duration,
        timeout: Duration,
    ) {
        loop {
            let streams = relay_streams(schedule.borrow_and_update().schedule());
            self.follow(&streams);
            for (url, slots) in streams {
                let probe = {
                    let url = url.clone();
                    tokio::task::spawn_blocking(move || probe_stream(&url, timeout)).await
                };
                let result = match probe {
                    Ok(Ok(_)) => Ok(()),
                    // The URL is said once, before the error, by whoever shows it.
                    Ok(Err(e)) => {
                        let text = e.to_string();
                        let prefix = format!("{}: ", mask(&url));
                        Err(text.strip_prefix(&prefix).unwrap_or(&text).to_owned())
                    }
                    Err(e) => Err(format!("the probe failed: {e}")),
                };
                self.record(&url, &slots, result, &origin);
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                changed = schedule.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Keeps the streams of the schedule in force, with what is known of each.
    fn follow(&self, streams: &[(String, Vec<String>)]) {
        let mut known = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let mut old: BTreeMap<String, RelayStreamStatus> =
            known.drain(..).map(|s| (s.url.clone(), s)).collect();
        *known = streams
            .iter()
            .map(|(url, slots)| {
                let masked = mask(url).into_owned();
                let mut status = old.remove(&masked).unwrap_or(RelayStreamStatus {
                    url: masked,
                    slots: Vec::new(),
                    reachable: None,
                    checked: None,
                    error: None,
                });
                status.slots = slots.clone();
                status
            })
            .collect();
    }

    /// Stores one probe's result; logs a stream that cannot be reached, once until it can again.
    fn record(
        &self,
        url: &str,
        slots: &[String],
        result: Result<(), String>,
        origin: &StreamOrigin,
    ) {
        let masked = mask(url).into_owned();
        let mut known = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(status) = known.iter_mut().find(|s| s.url == masked) else {
            // The schedule changed while it was probed; the next round probes the new one.
            return;
        };
        let was = status.reachable;
        status.checked = Some(Timestamp::now());
        match result {
            Ok(()) => {
                status.reachable = Some(true);
                status.error = None;
                if was == Some(false) {
                    tracing::info!("relay stream {masked} can be reached again");
                }
            }
            Err(error) => {
                status.reachable = Some(false);
                if was != Some(false) {
                    tracing::warn!(
                        "relay stream {masked} cannot be reached: {error}; {} will air the \
                         fallback instead until it can; {}",
                        slots.join(", "),
                        origin.how_to_set(url)
                    );
                }
                status.error = Some(error);
            }
        }
    }
}

/// The distinct relay URLs of `schedule` (as written, password included: the probe needs
/// it) in the order of their first entry, each with the entries that use it.
pub fn relay_streams(schedule: &Schedule) -> Vec<(String, Vec<String>)> {
    let mut streams: Vec<(String, Vec<String>)> = Vec::new();
    for entry in &schedule.entries {
        let SourceSpec::Relay { url } = &entry.source else {
            continue;
        };
        let slot = format!(
            "{} ({} {})",
            entry.id,
            crate::operator::admin_client::days(&entry.recurrence),
            crate::operator::admin_client::slot(entry)
        );
        match streams.iter_mut().find(|(known, _)| known == url) {
            Some((_, slots)) => slots.push(slot),
            None => streams.push((url.clone(), vec![slot])),
        }
    }
    streams
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_relay_url_once_with_the_slots_that_use_it() {
        let schedule = Schedule::binh_son_default();
        let streams = relay_streams(&schedule);
        assert_eq!(streams.len(), 1, "{streams:?}");
        assert_eq!(streams[0].0, Schedule::PROVINCIAL_RELAY_URL);
        assert_eq!(
            streams[0].1,
            [
                "tiep-song-sang (daily 05:00–07:00)",
                "tiep-song-chieu (daily 17:00–19:00)"
            ]
        );
    }

    #[test]
    fn the_embedded_schedule_relays_the_configured_stream() {
        let url = "http://radio.quangngai.example:8000/qng.mp3";
        let streams = relay_streams(&Schedule::binh_son_relaying(url));
        assert_eq!(streams.len(), 1, "{streams:?}");
        assert_eq!(streams[0].0, url);
        assert_eq!(streams[0].1.len(), 2);
    }

    #[test]
    fn a_password_is_probed_but_never_shown() {
        let probes = RelayProbes::default();
        let url = "http://source:hemmelig@127.0.0.1:9/x.mp3";
        let slots = vec!["x (daily 05:00–06:00)".to_owned()];
        probes.follow(&[(url.to_owned(), slots.clone())]);
        probes.record(url, &slots, Err("refused".into()), &StreamOrigin::Schedule);
        let shown = probes.snapshot();
        assert_eq!(shown.len(), 1);
        assert!(!shown[0].url.contains("hemmelig"), "{shown:?}");
        assert_eq!(shown[0].reachable, Some(false));
        assert_eq!(shown[0].error.as_deref(), Some("refused"));
    }
}
