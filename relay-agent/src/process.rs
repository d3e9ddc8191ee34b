//! Process plumbing shared by both daemons (`relay-agent` and `radio-server`): logging set-up,
//! the panic report and the shutdown signal.

/// Logs to stderr with `filter` unless `RUST_LOG` says otherwise. Safe to call twice.
pub fn init_tracing(filter: &str) {
    // symphonia reports every byte of junk it skips in a damaged file as a warning; the pipeline
    // reports skipped packets itself, once, so symphonia itself stays quiet (its "errors" include ordinary probe misses).
    let filter = if filter.contains("symphonia") {
        filter.to_string()
    } else {
        format!("{filter},symphonia=off")
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Reports every panic as one error line in the log (thread, place, message), where the
/// standard report is several bare lines on stderr that the journal of a service manager keeps
/// apart from the rest. With `RUST_BACKTRACE=1` the backtrace follows the line.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        let message = crate::supervise::panic_message(info.payload());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            tracing::error!("thread '{name}' panicked{place}: {message}\n{backtrace}");
        } else {
            tracing::error!("thread '{name}' panicked{place}: {message}");
        }
    }));
}

/// Completes on SIGTERM (systemd, `kill`) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
