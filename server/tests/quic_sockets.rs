//! Several UDP sockets on the QUIC port (`quic_sockets`, `SO_REUSEPORT`): the kernel spreads the
//! agents over them, and every one of them must be served. The real server in process on
//! loopback; every Bình Sơn station connects from its own port.

use support::raw_agent::RawAgent;

mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_socket_of_the_port_takes_agents() {
    let running = support::start(|config| config.quic_sockets = 4).await;
    let stations: Vec<String> = running
        .server
        .district()
        .stations
        .iter()
        .map(|s| s.id.clone())
        .collect();
    let sessions = stations.iter().map(|id| {
        let client = running.client(id);
        let (addr, id) = (running.addr, id.clone());
        async move { (id.clone(), RawAgent::welcomed(addr, client, &id).await) }
    });
    // 22 agents over 4 sockets: were any socket not served, about a quarter of them would never
    // be welcomed.
    let agents = futures_join_all(sessions).await;
    for (id, welcomed) in &agents {
        assert!(welcomed.is_ok(), "{id}: {:?}", welcomed.as_ref().err());
    }
    // An agent is welcomed a moment before the server counts its session (seen: 21 of 22 on a
    // loaded machine): wait for the count itself, every agent still holding its session.
    let counted = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        running.server.wait_connected(stations.len()),
    )
    .await;
    assert!(
        counted.is_ok(),
        "{} of {} sessions counted",
        running.server.connected(),
        stations.len()
    );
    assert_eq!(running.server.connected(), stations.len());
    drop(agents);
}

/// Runs the futures concurrently, each on its own task; their outputs in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}
