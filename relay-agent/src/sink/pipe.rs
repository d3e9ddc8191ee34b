//! Pipe sink: raw s16le 48 kHz mono PCM into the stdin of `sh -c COMMAND` (an `aplay`, an
//! `ffmpeg` re-encoder, a vendor amplifier tool...).
//!
//! `play` only pushes the slot into a bounded queue; a writer thread owns the child's stdin, so
//! a slow or dead command costs dropped slots, never a late playout clock. The command is
//! restarted with exponential backoff when it exits or its pipe breaks.

use std::io::{self, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{frame_samples, LogLimiter, Sink, SinkError, SinkStats, Slot, FRAME_SAMPLES};

/// Tuning of a [`PipeSink`]; the defaults suit production.
#[derive(Debug, Clone)]
pub struct PipeOptions {
    /// Slots queued between `play` and the writer thread (50 = 1 s).
    pub queue_slots: usize,
    /// First restart delay after the command dies; doubles on each further failure.
    pub backoff_initial: Duration,
    /// Upper bound of the restart delay. A command that ran at least this long before dying
    /// restarts after `backoff_initial` again.
    pub backoff_max: Duration,
    /// How long `finish` lets the command drain after closing its stdin before killing it.
    pub exit_grace: Duration,
}

impl Default for PipeOptions {
    fn default() -> Self {
        Self {
            queue_slots: 50,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            exit_grace: Duration::from_secs(2),
        }
    }
}

/// State shared between the sink and its writer thread.
#[derive(Debug, Default)]
struct Shared {
    written: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
    spawns: AtomicU64,
    /// The running command. Kept here rather than in the writer so `finish` can kill it even
    /// while the writer is stuck in a write to a command that stopped reading.
    child: Mutex<Option<Child>>,
}

impl Shared {
    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        // A poisoned lock only means a thread panicked while holding it; the Child inside is
        // still the right one to reap or kill.
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Feeds slots to a shell command's stdin.
#[derive(Debug)]
pub struct PipeSink {
    command: String,
    options: PipeOptions,
    tx: Option<SyncSender<Vec<u8>>>,
    writer: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    slots: u64,
    dropped: u64,
    errors: u64,
    finished: bool,
    queue_full: LogLimiter,
}

impl PipeSink {
    /// Starts `sh -c command` with the default [`PipeOptions`].
    pub fn spawn(command: &str) -> Result<Self, SinkError> {
        Self::spawn_with(command, PipeOptions::default())
    }

    /// Starts `sh -c command`; fails only if the shell cannot be started at all. A command
    /// that fails later is restarted in the background.
    pub fn spawn_with(command: &str, options: PipeOptions) -> Result<Self, SinkError> {
        let name = describe(command);
        if command.trim().is_empty() {
            return Err(SinkError::Config {
                sink: name,
                reason: "empty command".into(),
            });
        }
        let shared = Arc::new(Shared::default());
        let stdin = start(command, &shared).map_err(|e| SinkError::io(&name, e))?;
        let (tx, rx) = mpsc::sync_channel(options.queue_slots.max(1));
        let writer = Writer {
            name: name.clone(),
            command: command.to_owned(),
            options: options.clone(),
            shared: Arc::clone(&shared),
            #[cfg(debug_assertions)]
            panic_after: crate::test_panic::armed("pipe-sink"),
        };
        let handle = std::thread::Builder::new()
            .name("pipe-sink".into())
            .spawn(move || writer.run(rx, stdin))
            .map_err(|e| {
                let mut child = shared.child().take();
                if let Some(c) = child.as_mut() {
                    kill(c);
                }
                SinkError::io(&name, format!("cannot start writer thread: {e}"))
            })?;
        Ok(Self {
            command: command.to_owned(),
            options,
            tx: Some(tx),
            writer: Some(handle),
            shared,
            slots: 0,
            dropped: 0,
            errors: 0,
            finished: false,
            queue_full: LogLimiter::per_minute(),
        })
    }

    /// How many times the command was started again after dying.
    pub fn restarts(&self) -> u64 {
        self.shared.spawns.load(Ordering::Relaxed).saturating_sub(1)
    }

    /// How the writer thread ended, which it does only by panicking while the sink is open
    /// (its queue is gone). Its panic message goes into the error that ends the agent.
    fn writer_death(&mut self) -> String {
        let Some(handle) = self.writer.take() else {
            return "writer thread is gone".into();
        };
        // The queue closes as the thread unwinds, a moment before it has ended.
        if !wait_finished(&handle, Duration::from_millis(500)) {
            self.writer = Some(handle);
            return "writer thread is gone".into();
        }
        match handle.join() {
            Ok(()) => "writer thread ended".into(),
            Err(payload) => format!(
                "writer thread panicked: {}",
                crate::supervise::panic_message(payload.as_ref())
            ),
        }
    }
}

impl Sink for PipeSink {
    fn describe(&self) -> String {
        describe(&self.command)
    }

    fn play(&mut self, slot: &Slot<'_>) -> Result<(), SinkError> {
        let Some(tx) = self.tx.as_ref().filter(|_| !self.finished) else {
            return Err(SinkError::Closed {
                sink: self.describe(),
            });
        };
        self.slots += 1;
        if !super::valid_slot_len(slot.pcm.len()) {
            self.errors += 1;
        }
        let mut bytes = Vec::with_capacity(slot.pcm.len().max(FRAME_SAMPLES) * 2);
        for s in frame_samples(slot.pcm) {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        match tx.try_send(bytes) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                if let Some(n) = self.queue_full.allow() {
                    tracing::warn!(
                        "{}: command is not keeping up, dropping slots ({n} more since last report)",
                        self.describe()
                    );
                }
                Ok(())
            }
            Err(TrySendError::Disconnected(_)) => {
                self.dropped += 1;
                self.errors += 1;
                Err(SinkError::Dead {
                    sink: self.describe(),
                    reason: self.writer_death(),
                })
            }
        }
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.finished = true;
        // Closing the queue tells the writer to deliver what is queued, close stdin and stop.
        drop(self.tx.take());
        let Some(handle) = self.writer.take() else {
            return Ok(());
        };
        // The writer itself bounds its wait for the command by exit_grace; the extra second
        // covers writing out the queue.
        if !wait_finished(&handle, self.options.exit_grace + Duration::from_secs(1)) {
            tracing::warn!(
                "{}: command stopped reading its input; killing it",
                self.describe()
            );
            if let Some(c) = self.shared.child().as_mut() {
                kill(c);
            }
            if !wait_finished(&handle, Duration::from_secs(1)) {
                // Leave the thread behind rather than hang the shutdown of every other sink.
                self.errors += 1;
                return Err(SinkError::io(
                    self.describe(),
                    "writer thread did not stop; abandoned",
                ));
            }
        }
        handle.join().map_err(|_| {
            self.errors += 1;
            SinkError::io(self.describe(), "writer thread panicked")
        })
    }

    fn stats(&self) -> SinkStats {
        SinkStats {
            slots: self.slots,
            packets_sent: self.shared.written.load(Ordering::Relaxed),
            dropped: self.dropped + self.shared.dropped.load(Ordering::Relaxed),
            errors: self.errors + self.shared.errors.load(Ordering::Relaxed),
        }
    }
}

fn describe(command: &str) -> String {
    format!("pipe:{command}")
}

fn wait_finished(handle: &JoinHandle<()>, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while !handle.is_finished() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Starts the command, stores the child in `shared` and returns its stdin.
fn start(command: &str, shared: &Shared) -> io::Result<ChildStdin> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        // A command that mistakenly writes audio to stdout must not flood the daemon's log;
        // its stderr diagnostics do belong there.
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        // Its own process group: a Ctrl-C aimed at the daemon does not kill the command
        // behind finish()'s back, and the whole pipeline can be killed as one.
        cmd.process_group(0);
    }
    let mut child = cmd.spawn()?;
    let Some(stdin) = child.stdin.take() else {
        kill(&mut child);
        return Err(io::Error::other("child has no stdin"));
    };
    shared.spawns.fetch_add(1, Ordering::Relaxed);
    *shared.child() = Some(child);
    Ok(stdin)
}

/// Kills the command and everything it started, then reaps it.
fn kill(child: &mut Child) {
    #[cfg(unix)]
    {
        // `sh -c "a | b"` forks; killing only the shell would leave `a` and `b` holding the
        // pipe (and maybe a sound card). The group id equals the child's pid, which cannot be
        // reused before the wait() below.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -KILL -{} 2>/dev/null", child.id()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let _ = child.kill();
    let _ = child.wait();
}

enum State {
    Running { stdin: ChildStdin, since: Instant },
    Waiting { until: Instant },
}

struct Writer {
    name: String,
    command: String,
    options: PipeOptions,
    shared: Arc<Shared>,
    #[cfg(debug_assertions)]
    panic_after: Option<u64>,
}

impl Writer {
    fn run(self, rx: Receiver<Vec<u8>>, stdin: ChildStdin) {
        let mut backoff = self.options.backoff_initial;
        let mut state = State::Running {
            stdin,
            since: Instant::now(),
        };
        loop {
            let timeout = match &state {
                // Wake up now and then so a command that dies while no slot arrives is
                // still noticed.
                State::Running { .. } => Duration::from_millis(500),
                State::Waiting { until } => until.saturating_duration_since(Instant::now()),
            };
            let received = if timeout.is_zero() {
                Err(RecvTimeoutError::Timeout)
            } else {
                rx.recv_timeout(timeout)
            };
            state = match (state, received) {
                (state, Err(RecvTimeoutError::Disconnected)) => {
                    self.shutdown(state);
                    return;
                }
                (State::Running { mut stdin, since }, Ok(bytes)) => {
                    if let Some(why) = self.exited() {
                        self.count_dropped();
                        self.restart_later(&why, since, &mut backoff)
                    } else {
                        match stdin.write_all(&bytes) {
                            Ok(()) => {
                                let _written =
                                    self.shared.written.fetch_add(1, Ordering::Relaxed) + 1;
                                #[cfg(debug_assertions)]
                                crate::test_panic::check("pipe-sink", self.panic_after, _written);
                                State::Running { stdin, since }
                            }
                            Err(e) => {
                                self.count_dropped();
                                self.shared.errors.fetch_add(1, Ordering::Relaxed);
                                drop(stdin);
                                self.restart_later(&format!("pipe broke: {e}"), since, &mut backoff)
                            }
                        }
                    }
                }
                (State::Running { stdin, since }, Err(RecvTimeoutError::Timeout)) => {
                    match self.exited() {
                        Some(why) => {
                            drop(stdin);
                            self.restart_later(&why, since, &mut backoff)
                        }
                        None => State::Running { stdin, since },
                    }
                }
                (State::Waiting { until }, Ok(_)) => {
                    // Draining the queue while waiting keeps the audio fresh when the command
                    // comes back, instead of replaying a second of stale slots.
                    self.count_dropped();
                    State::Waiting { until }
                }
                (State::Waiting { until }, Err(RecvTimeoutError::Timeout)) => {
                    if Instant::now() < until {
                        State::Waiting { until }
                    } else {
                        self.try_start(&mut backoff)
                    }
                }
            };
        }
    }

    fn count_dropped(&self) {
        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// How the command ended, once it has (it is then reaped); `None` while it runs.
    fn exited(&self) -> Option<String> {
        let mut guard = self.shared.child();
        let child = guard.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                *guard = None;
                Some(format!("exited ({status})"))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("{}: cannot poll command: {e}", self.name);
                None
            }
        }
    }

    /// Gets rid of what is left of the command and schedules the next start.
    fn restart_later(&self, why: &str, since: Instant, backoff: &mut Duration) -> State {
        if let Some(mut child) = self.shared.child().take() {
            kill(&mut child);
        }
        if since.elapsed() >= self.options.backoff_max {
            *backoff = self.options.backoff_initial;
        }
        let delay = *backoff;
        *backoff = (*backoff * 2).min(self.options.backoff_max);
        tracing::warn!(
            "{}: command {why}; restarting in {:.1} s, dropping slots meanwhile",
            self.name,
            delay.as_secs_f64()
        );
        State::Waiting {
            until: Instant::now() + delay,
        }
    }

    fn try_start(&self, backoff: &mut Duration) -> State {
        match start(&self.command, &self.shared) {
            Ok(stdin) => {
                tracing::info!("{}: command restarted", self.name);
                State::Running {
                    stdin,
                    since: Instant::now(),
                }
            }
            Err(e) => {
                self.shared.errors.fetch_add(1, Ordering::Relaxed);
                self.restart_later(&format!("could not start: {e}"), Instant::now(), backoff)
            }
        }
    }

    fn shutdown(&self, state: State) {
        // Closing stdin is the command's end-of-stream.
        drop(state);
        let deadline = Instant::now() + self.options.exit_grace;
        loop {
            let mut guard = self.shared.child();
            let Some(child) = guard.as_mut() else {
                return;
            };
            match child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        tracing::warn!("{}: command ended with {status}", self.name);
                    }
                    *guard = None;
                    return;
                }
                Ok(None) if Instant::now() < deadline => {}
                _ => {
                    tracing::warn!(
                        "{}: command still running {:.1} s after end of input; killing it",
                        self.name,
                        self.options.exit_grace.as_secs_f64()
                    );
                    kill(child);
                    *guard = None;
                    return;
                }
            }
            drop(guard);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot_pcm(i: usize) -> Vec<i16> {
        (0..FRAME_SAMPLES)
            .map(|k| (i as i32 * 1000 + k as i32 - 30_000) as i16)
            .collect()
    }

    fn play(sink: &mut PipeSink, pcm: &[i16]) -> Duration {
        let t = Instant::now();
        sink.play(&Slot {
            opus: None,
            pcm,
            silent: false,
        })
        .expect("play never fails while open");
        t.elapsed()
    }

    /// How long a test waits for the writer thread or the command: far longer than they take,
    /// so that only a sink that never gets there fails, not a loaded machine.
    const WAIT: Duration = Duration::from_secs(60);

    fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        cond()
    }

    #[test]
    fn cat_receives_exact_s16le_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out.raw");
        let command = format!("cat > '{}'", out.display());
        let mut sink = PipeSink::spawn(&command).expect("spawn");
        assert_eq!(sink.describe(), format!("pipe:{command}"));
        let mut expected = Vec::new();
        for i in 0..40 {
            let pcm = slot_pcm(i);
            for s in &pcm {
                expected.extend_from_slice(&s.to_le_bytes());
            }
            play(&mut sink, &pcm);
            // Paces the slots a little, as the playout clock would; the 50-slot queue holds
            // all 40 even if `cat` is slow.
            std::thread::sleep(Duration::from_millis(2));
        }
        sink.finish().expect("finish");
        let got = std::fs::read(&out).expect("output");
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes differ");
        assert_eq!(
            sink.stats(),
            SinkStats {
                slots: 40,
                packets_sent: 40,
                dropped: 0,
                errors: 0
            }
        );
        assert_eq!(sink.restarts(), 0);
        assert!(matches!(
            sink.play(&Slot {
                opus: None,
                pcm: &[0; FRAME_SAMPLES],
                silent: true
            }),
            Err(SinkError::Closed { .. })
        ));
        sink.finish().expect("second finish is harmless");
    }

    #[test]
    fn dying_command_never_blocks_play_and_is_restarted() {
        let mut sink = PipeSink::spawn("true").expect("spawn");
        let pcm = slot_pcm(1);
        // 200 slots while the command is dead for the 1 s of the default backoff: a play that
        // waited for the command (or the writer) would take seconds each; in total they take
        // milliseconds, and far less than the generous bound even on a loaded machine.
        let took: Duration = (0..200).map(|_| play(&mut sink, &pcm)).sum();
        assert!(took < WAIT, "200 plays took {took:?}");
        // Every slot ends up either written into the (dead) pipe or dropped, and most are
        // dropped: a pipe nobody reads holds at most 64 KiB (34 slots).
        assert!(wait_for(|| {
            let s = sink.stats();
            s.packets_sent + s.dropped == 200
        }));
        let stats = sink.stats();
        assert_eq!(stats.slots, 200);
        assert!(stats.dropped >= 150, "{stats:?}");
        // The default backoff restarts after 1 s; keep playing meanwhile, paced as the
        // playout clock plays.
        let start = Instant::now();
        while sink.restarts() == 0 {
            assert!(start.elapsed() < WAIT, "never restarted");
            play(&mut sink, &pcm);
            std::thread::sleep(Duration::from_millis(20));
        }
        // Its bounded waits end `finish` in seconds; one that waited on the command would hang.
        let t = Instant::now();
        sink.finish().expect("finish");
        assert!(t.elapsed() < WAIT, "finish took {:?}", t.elapsed());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let options = PipeOptions {
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_millis(80),
            ..PipeOptions::default()
        };
        let mut sink = PipeSink::spawn_with("exit 3", options).expect("spawn");
        let pcm = slot_pcm(2);
        // Delays 20, 40, 80, 80, 80...: each restart waits its delay, so the first three take
        // at least 20 + 40 + 80 ms (a fixed 20 ms would take 60, an unthrottled loop next to
        // nothing), however fast or slow the machine. (A command that ran for the cap's 80 ms,
        // which a loaded machine can make of `exit 3`, restarts after 20 ms again; but those
        // 80 ms count too.) Twelve restarts come within seconds because the delay stops
        // growing at 80 ms: doubling on, the twelfth alone would wait 40 s.
        let start = Instant::now();
        let mut first_three = None;
        while sink.restarts() < 12 {
            assert!(
                start.elapsed() < WAIT,
                "{} restarts in {WAIT:?}",
                sink.restarts()
            );
            if first_three.is_none() && sink.restarts() >= 3 {
                first_three = Some(start.elapsed());
            }
            play(&mut sink, &pcm);
            // Paces the slots, as the playout clock would (faster, to keep the test short).
            std::thread::sleep(Duration::from_millis(5));
        }
        let first_three = first_three.unwrap_or_else(|| start.elapsed());
        assert!(
            first_three >= Duration::from_millis(140),
            "three restarts within {first_three:?}"
        );
        sink.finish().expect("finish");
        assert!(sink.stats().dropped > 0);
    }

    #[test]
    fn stuck_command_is_killed_on_finish() {
        let options = PipeOptions {
            exit_grace: Duration::from_millis(200),
            ..PipeOptions::default()
        };
        // Never reads stdin, and `; true` keeps the shell from exec'ing sleep, so the pipe is
        // held by a grandchild that only a process-group kill reaches. It sleeps for longer
        // than the bounds below, so that a sink waiting for it to end fails them.
        let mut sink = PipeSink::spawn_with("sleep 300; true", options).expect("spawn");
        let pcm = slot_pcm(3);
        // The writer is stuck in a write after 34 slots: a play that waited for it would
        // never return.
        let took: Duration = (0..200).map(|_| play(&mut sink, &pcm)).sum();
        assert!(took < WAIT, "200 plays took {took:?}");
        // An `Ok` means the writer thread ended, which its stuck write allows only once the
        // grandchild is dead; the bound fails a finish that waited for the sleep instead.
        let t = Instant::now();
        sink.finish().expect("finish kills the stuck command");
        assert!(t.elapsed() < WAIT, "{:?}", t.elapsed());
        let stats = sink.stats();
        assert_eq!(stats.slots, 200);
        assert!(stats.dropped > 0, "{stats:?}");
    }

    #[test]
    fn empty_command_is_rejected() {
        assert!(matches!(PipeSink::spawn(""), Err(SinkError::Config { .. })));
    }
}
