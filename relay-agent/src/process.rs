//! Process plumbing shared by both daemons (`relay-agent` and `radio-server`): logging set-up and
//! the shutdown signal.

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
