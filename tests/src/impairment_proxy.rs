//! A userspace UDP proxy that impairs the link between agents and the server: the test machines
//! have no `tc netem`, so tests put this between the two instead.
//!
//! Every client (one UDP 4-tuple, as a QUIC endpoint uses) gets its own upstream socket, so the
//! server's replies find their way back and several agents can share one proxy. Each direction
//! has its own seeded random stream: the same seed and the same datagrams give the same
//! decisions, run after run. Delayed datagrams wait in one bounded queue served by a timer
//! thread, so a delay never holds up the datagrams behind it.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How often the socket threads look at the stop flag: bounds how long a drop takes.
const POLL: Duration = Duration::from_millis(20);
const MAX_DATAGRAM: usize = 65_535;
/// Delays beyond this are clamped, so that no configuration can overflow an `Instant`.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);
/// Default cap on datagrams waiting in the delay queue.
pub const DEFAULT_MAX_QUEUED: usize = 10_000;
/// Clients beyond this many are refused (their datagrams count as overflow): each costs a socket
/// and a thread.
pub const MAX_CLIENTS: usize = 64;

/// The Gilbert–Elliott two-state loss model: losses come in bursts while the link is "bad".
/// The state changes (maybe) before each datagram; a bad spell lasts on average
/// `1 / p_bad_to_good` datagrams.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// Probability of going from the good to the bad state, per datagram.
    pub p_good_to_bad: f64,
    /// Probability of going from the bad to the good state, per datagram.
    pub p_bad_to_good: f64,
    /// Loss probability in the good state.
    pub loss_good: f64,
    /// Loss probability in the bad state.
    pub loss_bad: f64,
}

impl GilbertElliott {
    /// The simple Gilbert model: nothing lost while good, everything while bad.
    pub fn new(p_good_to_bad: f64, p_bad_to_good: f64) -> GilbertElliott {
        GilbertElliott {
            p_good_to_bad,
            p_bad_to_good,
            loss_good: 0.0,
            loss_bad: 1.0,
        }
    }
}

/// Extra delay on top of [`LinkImpairment::delay`], drawn per datagram; never negative, so
/// `delay` is a floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// No extra delay.
    #[default]
    None,
    /// Uniform in `[0, max)`.
    Uniform(Duration),
    /// The absolute value of a normal draw with this standard deviation, capped at 4σ.
    Normal(Duration),
}

/// What happens to the datagrams of one direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkImpairment {
    /// Independent loss probability.
    pub loss: f64,
    /// Burst loss, on top of `loss`.
    pub burst: Option<GilbertElliott>,
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Random extra delay.
    pub jitter: Jitter,
    /// Whether a datagram may leave before one that arrived earlier on the same client's flow.
    /// When false, jitter and holds delay the datagrams behind them instead (netem's behaviour
    /// with a rate limit); when true (the default), jitter reorders as it does on real links.
    pub reorder: bool,
    /// Probability that a datagram is held back by `reorder_hold`, letting later ones overtake.
    pub reorder_probability: f64,
    /// How long a datagram picked by `reorder_probability` is held back.
    pub reorder_hold: Duration,
    /// Probability that a datagram is sent twice.
    pub duplicate: f64,
}

impl Default for LinkImpairment {
    fn default() -> LinkImpairment {
        LinkImpairment {
            loss: 0.0,
            burst: None,
            delay: Duration::ZERO,
            jitter: Jitter::None,
            reorder: true,
            reorder_probability: 0.0,
            reorder_hold: Duration::from_millis(10),
            duplicate: 0.0,
        }
    }
}

impl LinkImpairment {
    /// With independent loss probability `p`.
    pub fn with_loss(mut self, p: f64) -> Self {
        self.loss = p;
        self
    }

    /// With Gilbert–Elliott burst loss.
    pub fn with_burst(mut self, model: GilbertElliott) -> Self {
        self.burst = Some(model);
        self
    }

    /// With a fixed delay.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// With jitter; `reorder` says whether it may reorder.
    pub fn with_jitter(mut self, jitter: Jitter, reorder: bool) -> Self {
        self.jitter = jitter;
        self.reorder = reorder;
        self
    }

    /// Holds back a fraction `p` of the datagrams by `hold`.
    pub fn with_reordering(mut self, p: f64, hold: Duration) -> Self {
        self.reorder_probability = p;
        self.reorder_hold = hold;
        self
    }

    /// Duplicates a fraction `p` of the datagrams.
    pub fn with_duplication(mut self, p: f64) -> Self {
        self.duplicate = p;
        self
    }
}

/// The proxy's whole configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Agent → server.
    pub client_to_server: LinkImpairment,
    /// Server → agent.
    pub server_to_client: LinkImpairment,
    /// Seed of both directions' random streams.
    pub seed: u64,
    /// Cap on datagrams waiting in the delay queue; beyond it they are dropped and counted.
    pub max_queued: usize,
}

impl Default for Impairment {
    fn default() -> Impairment {
        Impairment::none()
    }
}

impl Impairment {
    /// A perfect link.
    pub fn none() -> Impairment {
        Impairment::both(LinkImpairment::default())
    }

    /// The same impairment in both directions (each with its own random stream).
    pub fn both(link: LinkImpairment) -> Impairment {
        Impairment::split(link, link)
    }

    /// Different impairments per direction.
    pub fn split(client_to_server: LinkImpairment, server_to_client: LinkImpairment) -> Impairment {
        Impairment {
            client_to_server,
            server_to_client,
            seed: 0,
            max_queued: DEFAULT_MAX_QUEUED,
        }
    }

    /// With another seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// With another cap on the delay queue.
    pub fn with_max_queued(mut self, max_queued: usize) -> Self {
        self.max_queued = max_queued;
        self
    }

    fn link(&self, direction: Direction) -> &LinkImpairment {
        match direction {
            Direction::ClientToServer => &self.client_to_server,
            Direction::ServerToClient => &self.server_to_client,
        }
    }
}

/// Counters of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Datagrams that reached the proxy.
    pub received: u64,
    /// Datagrams sent on (duplicates included).
    pub forwarded: u64,
    /// Dropped by independent loss.
    pub dropped_loss: u64,
    /// Dropped by burst loss.
    pub dropped_burst: u64,
    /// Dropped by a blackhole, on arrival or while waiting in the delay queue.
    pub dropped_blackhole: u64,
    /// Dropped because the delay queue was full, or the client was one too many.
    pub dropped_overflow: u64,
    /// Datagrams sent twice.
    pub duplicated: u64,
    /// Datagrams that went through the delay queue.
    pub delayed: u64,
    /// Datagrams scheduled to leave before one that arrived earlier on the same flow.
    pub reordered: u64,
    /// Sends the operating system refused (e.g. the server's port was closed).
    pub send_errors: u64,
}

impl DirectionStats {
    /// Datagrams dropped for any reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_loss + self.dropped_burst + self.dropped_blackhole + self.dropped_overflow
    }
}

/// A snapshot of the proxy's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Agent → server.
    pub client_to_server: DirectionStats,
    /// Server → agent.
    pub server_to_client: DirectionStats,
    /// Clients seen so far.
    pub clients: usize,
    /// Datagrams waiting in the delay queue now.
    pub queued: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ClientToServer,
    ServerToClient,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 1,
        }
    }
}

/// Per-direction random state, kept across [`ImpairmentProxy::set_impairment`] unless the seed
/// changes, so a runtime change does not restart the pattern.
#[derive(Debug)]
struct RandomState {
    rng: StdRng,
    bad: bool,
}

impl RandomState {
    fn seeded(seed: u64, direction: Direction) -> RandomState {
        // Distinct streams per direction, so both do not lose the same datagram numbers.
        let salt = 0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(direction.index() as u64 + 1);
        RandomState {
            rng: StdRng::seed_from_u64(seed ^ salt),
            bad: false,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Flow {
    /// The latest send time scheduled so far.
    latest: Option<Instant>,
    /// Datagrams of this flow in the delay queue.
    pending: usize,
}

#[derive(Debug)]
struct Client {
    upstream: Arc<UdpSocket>,
    flows: [Flow; 2],
}

#[derive(Debug)]
struct Scheduled {
    due: Instant,
    seq: u64,
    direction: Direction,
    client: SocketAddr,
    payload: Vec<u8>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    // Reversed: `BinaryHeap` is a max-heap and the earliest send time must come out first; the
    // sequence number keeps equal times in arrival order.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

#[derive(Debug)]
struct State {
    config: Impairment,
    random: [RandomState; 2],
    blackhole_until: Option<Instant>,
    blackhole_forever: bool,
    clients: HashMap<SocketAddr, Client>,
    queue: BinaryHeap<Scheduled>,
    next_seq: u64,
    stats: [DirectionStats; 2],
}

impl State {
    fn blackholed(&self, now: Instant) -> bool {
        self.blackhole_forever || self.blackhole_until.is_some_and(|until| now < until)
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the timer thread: a new earliest datagram, or the stop.
    wake: Condvar,
    stop: AtomicBool,
    front: Arc<UdpSocket>,
    upstream: SocketAddr,
    client_threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not turn every later call into a second panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopping(&self) -> bool {
        self.stop.load(AtomicOrdering::Acquire)
    }
}

/// A UDP proxy on loopback that impairs both directions between its clients and `upstream`.
/// Dropping it stops its threads and closes its sockets.
pub struct ImpairmentProxy {
    shared: Arc<Shared>,
    local: SocketAddr,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for ImpairmentProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImpairmentProxy")
            .field("local", &self.local)
            .field("upstream", &self.shared.upstream)
            .finish_non_exhaustive()
    }
}

impl ImpairmentProxy {
    /// Binds a loopback port and starts forwarding to `upstream`.
    ///
    /// # Panics
    /// If the socket or a thread cannot be created; [`ImpairmentProxy::try_start`] returns the
    /// error instead.
    pub fn start(upstream: SocketAddr, config: Impairment) -> ImpairmentProxy {
        ImpairmentProxy::try_start(upstream, config).expect("start the impairment proxy")
    }

    /// Binds a loopback port (of `upstream`'s address family) and starts forwarding to
    /// `upstream`.
    pub fn try_start(upstream: SocketAddr, config: Impairment) -> io::Result<ImpairmentProxy> {
        let loopback: IpAddr = if upstream.is_ipv4() {
            Ipv4Addr::LOCALHOST.into()
        } else {
            Ipv6Addr::LOCALHOST.into()
        };
        let front = UdpSocket::bind(SocketAddr::new(loopback, 0))?;
        front.set_read_timeout(Some(POLL))?;
        let local = front.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                config,
                random: [
                    RandomState::seeded(config.seed, Direction::ClientToServer),
                    RandomState::seeded(config.seed, Direction::ServerToClient),
                ],
                blackhole_until: None,
                blackhole_forever: false,
                clients: HashMap::new(),
                queue: BinaryHeap::new(),
                next_seq: 0,
                stats: Default::default(),
            }),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            front: Arc::new(front),
            upstream,
            client_threads: Mutex::new(Vec::new()),
        });
        let mut proxy = ImpairmentProxy {
            shared: shared.clone(),
            local,
            threads: Vec::new(),
        };
        // Pushed one by one: if the second spawn fails, the drop still stops the first.
        proxy.threads.push(spawn("impairment-timer", {
            let shared = shared.clone();
            move || timer_loop(&shared)
        })?);
        proxy.threads.push(spawn("impairment-front", {
            let shared = shared.clone();
            move || front_loop(&shared)
        })?);
        Ok(proxy)
    }

    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The address datagrams are forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// The current configuration.
    pub fn impairment(&self) -> Impairment {
        self.shared.lock().config
    }

    /// Changes the impairment from now on; datagrams already in the delay queue keep their send
    /// times. The random streams go on where they were unless the seed changes.
    pub fn set_impairment(&self, config: Impairment) {
        let mut state = self.shared.lock();
        if config.seed != state.config.seed {
            state.random = [
                RandomState::seeded(config.seed, Direction::ClientToServer),
                RandomState::seeded(config.seed, Direction::ServerToClient),
            ];
        }
        state.config = config;
    }

    /// Drops everything, both directions, from now for `duration` — datagrams already waiting in
    /// the delay queue included, as on a link that went dead.
    pub fn blackhole(&self, duration: Duration) {
        let now = Instant::now();
        self.shared.lock().blackhole_until = Some(now + duration.min(MAX_DELAY));
    }

    /// Starts (`true`) or ends (`false`) an open-ended blackhole; ending one also ends a timed
    /// one.
    pub fn set_blackhole(&self, on: bool) {
        let mut state = self.shared.lock();
        state.blackhole_forever = on;
        if !on {
            state.blackhole_until = None;
        }
    }

    /// Whether a blackhole is in force now.
    pub fn is_blackholed(&self) -> bool {
        self.shared.lock().blackholed(Instant::now())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ProxyStats {
        let state = self.shared.lock();
        ProxyStats {
            client_to_server: state.stats[Direction::ClientToServer.index()],
            server_to_client: state.stats[Direction::ServerToClient.index()],
            clients: state.clients.len(),
            queued: state.queue.len(),
        }
    }
}

impl Drop for ImpairmentProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, AtomicOrdering::Release);
        {
            // Under the lock, so the timer thread cannot miss the wake-up between its check of
            // the flag and its wait.
            let _state = self.shared.lock();
            self.shared.wake.notify_all();
        }
        // The front thread first: it is the one that starts client threads.
        for handle in self.threads.drain(..).rev() {
            let _ = handle.join();
        }
        let clients = std::mem::take(
            &mut *self
                .shared
                .client_threads
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for handle in clients {
            let _ = handle.join();
        }
        // Queued datagrams hold no sockets but may be large: free them now rather than with the
        // last `Arc`.
        self.shared.lock().queue.clear();
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(f)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Reads the clients' datagrams.
fn front_loop(shared: &Arc<Shared>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !shared.stopping() {
        match shared.front.recv_from(&mut buf) {
            Ok((n, from)) => {
                if add_client(shared, from) {
                    process(shared, Direction::ClientToServer, from, &buf[..n]);
                }
            }
            Err(e) if is_timeout(&e) => {}
            // Anything else (an ICMP error left by a client that went away) concerns one client
            // at most: keep serving the others, without spinning on a persistent error (a
            // back-off, not a wait for anything).
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// Makes sure `client` has its upstream socket and reader thread; false if it cannot have one
/// (counted as overflow).
fn add_client(shared: &Arc<Shared>, client: SocketAddr) -> bool {
    let mut state = shared.lock();
    if state.clients.contains_key(&client) {
        return true;
    }
    let upstream = if state.clients.len() < MAX_CLIENTS {
        upstream_socket(shared.upstream).ok()
    } else {
        None
    };
    let Some(upstream) = upstream else {
        let stats = &mut state.stats[Direction::ClientToServer.index()];
        stats.received += 1;
        stats.dropped_overflow += 1;
        return false;
    };
    let thread = spawn("impairment-client", {
        let shared = shared.clone();
        let upstream = upstream.clone();
        move || client_loop(&shared, &upstream, client)
    });
    let Ok(thread) = thread else {
        let stats = &mut state.stats[Direction::ClientToServer.index()];
        stats.received += 1;
        stats.dropped_overflow += 1;
        return false;
    };
    state.clients.insert(
        client,
        Client {
            upstream,
            flows: Default::default(),
        },
    );
    drop(state);
    shared
        .client_threads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(thread);
    true
}

fn upstream_socket(upstream: SocketAddr) -> io::Result<Arc<UdpSocket>> {
    let any: IpAddr = if upstream.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let socket = UdpSocket::bind(SocketAddr::new(any, 0))?;
    // Connected: the kernel then delivers only the server's datagrams to this socket.
    socket.connect(upstream)?;
    socket.set_read_timeout(Some(POLL))?;
    Ok(Arc::new(socket))
}

/// Reads the server's datagrams to one client.
fn client_loop(shared: &Arc<Shared>, upstream: &UdpSocket, client: SocketAddr) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !shared.stopping() {
        match upstream.recv(&mut buf) {
            Ok(n) => process(shared, Direction::ServerToClient, client, &buf[..n]),
            Err(e) if is_timeout(&e) => {}
            // ECONNREFUSED while the server is down: it may come back on the same port (a
            // back-off, not a wait for anything).
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

fn extra_delay(jitter: Jitter, u1: f64, u2: f64) -> Duration {
    match jitter {
        Jitter::None => Duration::ZERO,
        Jitter::Uniform(max) => max.min(MAX_DELAY).mul_f64(u1),
        Jitter::Normal(sigma) => {
            // Box–Muller; `1 - u1` is in (0, 1], so the logarithm is finite.
            let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            sigma.min(MAX_DELAY).mul_f64(z.abs().min(4.0))
        }
    }
}

/// Decides the fate of one datagram and sends or queues it.
fn process(shared: &Shared, direction: Direction, client: SocketAddr, payload: &[u8]) {
    let Some((route, copies)) = decide(shared, direction, client, payload) else {
        return;
    };
    // Sent outside the lock: the other direction must not wait for this send.
    let errors = (0..copies).filter(|_| route.send(payload).is_err()).count() as u64;
    if errors > 0 {
        shared.lock().stats[direction.index()].send_errors += errors;
    }
}

/// Counts the datagram, then drops or queues it, or returns where to send it now and how many
/// times.
fn decide(
    shared: &Shared,
    direction: Direction,
    client: SocketAddr,
    payload: &[u8],
) -> Option<(Route, u64)> {
    let d = direction.index();
    let now = Instant::now();
    let mut guard = shared.lock();
    let state = &mut *guard;
    state.stats[d].received += 1;
    let link = *state.config.link(direction);
    // A fixed number of draws per datagram, whatever the outcome: changing one impairment then
    // leaves the pattern of the others as it was.
    let random = &mut state.random[d];
    let draws: [f64; 7] = std::array::from_fn(|_| random.rng.gen::<f64>());
    let bad = match link.burst {
        Some(model) => {
            random.bad = if random.bad {
                draws[1] >= model.p_bad_to_good
            } else {
                draws[1] < model.p_good_to_bad
            };
            random.bad
        }
        None => false,
    };
    if state.blackholed(now) {
        state.stats[d].dropped_blackhole += 1;
        return None;
    }
    let stats = &mut state.stats[d];
    if draws[0] < link.loss {
        stats.dropped_loss += 1;
        return None;
    }
    if let Some(model) = link.burst {
        let p = if bad { model.loss_bad } else { model.loss_good };
        if draws[2] < p {
            stats.dropped_burst += 1;
            return None;
        }
    }
    let entry = state.clients.get_mut(&client)?;
    let mut wait = link.delay.min(MAX_DELAY) + extra_delay(link.jitter, draws[3], draws[4]);
    if draws[5] < link.reorder_probability {
        wait += link.reorder_hold.min(MAX_DELAY);
    }
    let mut due = now + wait;
    let flow = &mut entry.flows[d];
    if !link.reorder {
        due = flow.latest.map_or(due, |latest| due.max(latest));
    }
    if flow.latest.is_some_and(|latest| due < latest) {
        stats.reordered += 1;
    }
    flow.latest = Some(flow.latest.map_or(due, |latest| latest.max(due)));
    let copies = if draws[6] < link.duplicate {
        stats.duplicated += 1;
        2
    } else {
        1
    };
    if due <= now && (link.reorder || flow.pending == 0) {
        stats.forwarded += copies;
        let upstream = entry.upstream.clone();
        return Some((Route::of(shared, direction, client, upstream), copies));
    }
    stats.delayed += 1;
    for _ in 0..copies {
        if state.queue.len() >= state.config.max_queued {
            state.stats[d].dropped_overflow += 1;
            continue;
        }
        entry.flows[d].pending += 1;
        let seq = state.next_seq;
        state.next_seq += 1;
        state.queue.push(Scheduled {
            due,
            seq,
            direction,
            client,
            payload: payload.to_vec(),
        });
    }
    shared.wake.notify_one();
    None
}

/// Where a datagram goes: to the server through its client's socket, or to the client.
enum Route {
    Upstream(Arc<UdpSocket>),
    Client(Arc<UdpSocket>, SocketAddr),
}

impl Route {
    fn of(
        shared: &Shared,
        direction: Direction,
        client: SocketAddr,
        upstream: Arc<UdpSocket>,
    ) -> Route {
        match direction {
            Direction::ClientToServer => Route::Upstream(upstream),
            Direction::ServerToClient => Route::Client(shared.front.clone(), client),
        }
    }

    fn send(&self, payload: &[u8]) -> io::Result<usize> {
        match self {
            Route::Upstream(socket) => socket.send(payload),
            Route::Client(socket, to) => socket.send_to(payload, to),
        }
    }
}

/// Sends the delayed datagrams when their time comes.
fn timer_loop(shared: &Shared) {
    let mut due = Vec::new();
    loop {
        let mut state = shared.lock();
        loop {
            if shared.stopping() {
                return;
            }
            let now = Instant::now();
            let wait = match state.queue.peek() {
                Some(next) if next.due <= now => break,
                Some(next) => next.due - now,
                // Woken by the next push or the stop; the timeout only guards against a missed
                // notification.
                None => Duration::from_millis(200),
            };
            state = shared
                .wake
                .wait_timeout(state, wait)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        let now = Instant::now();
        let blackholed = state.blackholed(now);
        while state.queue.peek().is_some_and(|next| next.due <= now) {
            let Some(next) = state.queue.pop() else {
                break;
            };
            let d = next.direction.index();
            let Some(client) = state.clients.get_mut(&next.client) else {
                continue;
            };
            client.flows[d].pending = client.flows[d].pending.saturating_sub(1);
            let upstream = client.upstream.clone();
            if blackholed {
                state.stats[d].dropped_blackhole += 1;
                continue;
            }
            state.stats[d].forwarded += 1;
            let route = Route::of(shared, next.direction, next.client, upstream);
            due.push((d, route, next.payload));
        }
        drop(state);
        let mut errors = [0u64; 2];
        for (d, route, payload) in due.drain(..) {
            if route.send(&payload).is_err() {
                errors[d] += 1;
            }
        }
        if errors.iter().any(|e| *e > 0) {
            let mut state = shared.lock();
            for (d, e) in errors.into_iter().enumerate() {
                state.stats[d].send_errors += e;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    const LONG: Duration = Duration::from_secs(10);

    /// A UDP server on loopback, echoing or collecting, until dropped.
    struct Peer {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        arrivals: Arc<Mutex<Vec<u32>>>,
        count: Arc<AtomicUsize>,
        thread: Option<JoinHandle<()>>,
    }

    impl Peer {
        fn start(echo: bool) -> Peer {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind peer");
            socket.set_read_timeout(Some(POLL)).expect("timeout");
            let addr = socket.local_addr().expect("peer address");
            let stop = Arc::new(AtomicBool::new(false));
            let arrivals = Arc::new(Mutex::new(Vec::new()));
            let count = Arc::new(AtomicUsize::new(0));
            let thread = std::thread::spawn({
                let (stop, arrivals, count) = (stop.clone(), arrivals.clone(), count.clone());
                move || {
                    let mut buf = [0u8; 2048];
                    while !stop.load(AtomicOrdering::Acquire) {
                        let Ok((n, from)) = socket.recv_from(&mut buf) else {
                            continue;
                        };
                        if echo {
                            let _ = socket.send_to(&buf[..n], from);
                        }
                        if let Ok(seq) = <[u8; 4]>::try_from(&buf[..n.min(4)]) {
                            if let Ok(mut a) = arrivals.lock() {
                                a.push(u32::from_be_bytes(seq));
                            }
                        }
                        count.fetch_add(1, AtomicOrdering::AcqRel);
                    }
                }
            });
            Peer {
                addr,
                stop,
                arrivals,
                count,
                thread: Some(thread),
            }
        }

        fn count(&self) -> u64 {
            self.count.load(AtomicOrdering::Acquire) as u64
        }

        fn arrivals(&self) -> Vec<u32> {
            self.arrivals.lock().map(|a| a.clone()).unwrap_or_default()
        }
    }

    impl Drop for Peer {
        fn drop(&mut self) {
            self.stop.store(true, AtomicOrdering::Release);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn client() -> UdpSocket {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind client");
        socket.set_read_timeout(Some(LONG)).expect("timeout");
        socket
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + LONG;
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            // A poll of the condition.
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// Sends `n` numbered datagrams one way through an undelayed proxy, a window at a time so
    /// that no socket buffer overflows; returns the numbers in arrival order and the counters.
    fn one_way(config: Impairment, n: u32) -> (Vec<u32>, ProxyStats) {
        let sink = Peer::start(false);
        let proxy = ImpairmentProxy::start(sink.addr, config);
        let socket = client();
        let mut sent = 0u64;
        for start in (0..n).step_by(64) {
            for seq in start..(start + 64).min(n) {
                socket
                    .send_to(&seq.to_be_bytes(), proxy.local_addr())
                    .expect("send");
                sent += 1;
            }
            wait_until("the window to pass", || {
                let s = proxy.stats().client_to_server;
                s.received == sent && sink.count() == s.forwarded
            });
        }
        (sink.arrivals(), proxy.stats())
    }

    fn echo_round_trip(socket: &UdpSocket, proxy: &ImpairmentProxy, payload: &[u8]) -> Vec<u8> {
        socket.send_to(payload, proxy.local_addr()).expect("send");
        let mut buf = [0u8; 2048];
        let (n, from) = socket.recv_from(&mut buf).expect("echo");
        assert_eq!(from, proxy.local_addr());
        buf[..n].to_vec()
    }

    #[test]
    fn passes_every_datagram_in_order_both_ways() {
        let echo = Peer::start(true);
        let proxy = ImpairmentProxy::start(echo.addr, Impairment::none());
        let socket = client();
        let mut buf = [0u8; 2048];
        for start in (0..2000u32).step_by(16) {
            for seq in start..start + 16 {
                socket
                    .send_to(&seq.to_be_bytes(), proxy.local_addr())
                    .expect("send");
            }
            for seq in start..start + 16 {
                let (n, _) = socket.recv_from(&mut buf).expect("echo");
                assert_eq!(&buf[..n], seq.to_be_bytes());
            }
        }
        assert_eq!(echo.arrivals(), (0..2000).collect::<Vec<_>>());
        let s = proxy.stats();
        for d in [s.client_to_server, s.server_to_client] {
            assert_eq!(
                (d.received, d.forwarded, d.dropped()),
                (2000, 2000, 0),
                "{s:?}"
            );
        }
        assert_eq!(s.clients, 1);
    }

    #[test]
    fn seeded_loss_has_its_rate_and_repeats_with_the_seed() {
        let config = Impairment::both(LinkImpairment::default().with_loss(0.1)).with_seed(7);
        let (first, stats) = one_way(config, 20_000);
        let lost = 20_000 - first.len();
        assert!((1700..=2300).contains(&lost), "lost {lost} of 20000");
        assert_eq!(stats.client_to_server.dropped_loss, lost as u64);
        let (second, _) = one_way(config, 20_000);
        assert_eq!(first, second, "same seed, different drops");
        let (other, _) = one_way(config.with_seed(8), 20_000);
        assert_ne!(first, other, "another seed, same drops");
    }

    #[test]
    fn gilbert_elliott_loses_in_bursts() {
        let model = GilbertElliott::new(0.02, 0.25);
        let config = Impairment::both(LinkImpairment::default().with_burst(model)).with_seed(3);
        let (arrived, stats) = one_way(config, 20_000);
        let mut received = vec![false; 20_000];
        for seq in arrived {
            received[seq as usize] = true;
        }
        let lost = received.iter().filter(|r| !**r).count();
        let bursts =
            received.windows(2).filter(|w| w[0] && !w[1]).count() + usize::from(!received[0]);
        let mean = lost as f64 / bursts as f64;
        // A bad spell lasts 1 / 0.25 = 4 datagrams on average; independent loss at the same
        // rate (about 7 %) would give runs of about 1.08.
        assert!(
            (3.2..=4.8).contains(&mean),
            "mean burst {mean} ({lost} in {bursts})"
        );
        assert_eq!(stats.client_to_server.dropped_burst, lost as u64);
    }

    #[test]
    fn delay_holds_each_datagram_without_blocking_the_others() {
        let echo = Peer::start(true);
        let link = |ms| LinkImpairment::default().with_delay(Duration::from_millis(ms));
        let proxy = ImpairmentProxy::start(echo.addr, Impairment::split(link(200), link(100)));
        let socket = client();
        let start = Instant::now();
        for seq in 0..20u32 {
            socket
                .send_to(&seq.to_be_bytes(), proxy.local_addr())
                .expect("send");
        }
        let mut buf = [0u8; 16];
        for seq in 0..20u32 {
            let (n, _) = socket.recv_from(&mut buf).expect("echo");
            assert_eq!(&buf[..n], seq.to_be_bytes());
        }
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
        // One after the other they would take 20 × 300 ms.
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
        let s = proxy.stats();
        assert_eq!(s.client_to_server.delayed, 20);
        assert_eq!(s.server_to_client.delayed, 20);
        let before = Instant::now();
        echo_round_trip(&socket, &proxy, b"again");
        assert!(before.elapsed() >= Duration::from_millis(300));
    }

    #[test]
    fn jitter_reorders_unless_told_to_keep_order() {
        let jitter = Jitter::Uniform(Duration::from_millis(30));
        for keep in [false, true] {
            let sink = Peer::start(false);
            let link = LinkImpairment::default().with_jitter(jitter, !keep);
            let proxy = ImpairmentProxy::start(sink.addr, Impairment::both(link).with_seed(1));
            let socket = client();
            for seq in 0..200u32 {
                socket
                    .send_to(&seq.to_be_bytes(), proxy.local_addr())
                    .expect("send");
            }
            wait_until("all 200", || sink.count() == 200);
            let arrived = sink.arrivals();
            let in_order = arrived.windows(2).all(|w| w[0] < w[1]);
            let reordered = proxy.stats().client_to_server.reordered;
            if keep {
                assert!(in_order, "{arrived:?}");
                assert_eq!(reordered, 0);
            } else {
                assert!(!in_order && reordered > 0, "{reordered}: {arrived:?}");
            }
        }
    }

    #[test]
    fn explicit_reordering_lets_later_datagrams_overtake() {
        let sink = Peer::start(false);
        let link = LinkImpairment::default().with_reordering(0.2, Duration::from_millis(20));
        let proxy = ImpairmentProxy::start(sink.addr, Impairment::both(link).with_seed(5));
        let socket = client();
        for seq in 0..100u32 {
            socket
                .send_to(&seq.to_be_bytes(), proxy.local_addr())
                .expect("send");
            // Paced, so that there is a later datagram to overtake an earlier one.
            std::thread::sleep(Duration::from_millis(1));
        }
        wait_until("all 100", || sink.count() == 100);
        let arrived = sink.arrivals();
        assert!(arrived.windows(2).any(|w| w[0] > w[1]), "{arrived:?}");
        let mut sorted = arrived.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn duplicates_a_fraction() {
        let config =
            Impairment::both(LinkImpairment::default().with_duplication(0.3)).with_seed(11);
        let (arrived, stats) = one_way(config, 5_000);
        let extra = arrived.len() - 5_000;
        assert!((1200..=1800).contains(&extra), "{extra} duplicates");
        assert_eq!(stats.client_to_server.duplicated, extra as u64);
        let mut unique = arrived;
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 5_000);
    }

    #[test]
    fn blackhole_drops_everything_then_forwarding_resumes() {
        let echo = Peer::start(true);
        let proxy = ImpairmentProxy::start(echo.addr, Impairment::none());
        let socket = client();
        assert_eq!(echo_round_trip(&socket, &proxy, b"before"), b"before");

        let hole = Duration::from_millis(800);
        proxy.blackhole(hole);
        let started = Instant::now();
        assert!(proxy.is_blackholed());
        for seq in 0..5u32 {
            socket
                .send_to(&seq.to_be_bytes(), proxy.local_addr())
                .expect("send");
        }
        socket
            .set_read_timeout(Some(hole.saturating_sub(started.elapsed()).max(POLL)))
            .expect("timeout");
        let mut buf = [0u8; 16];
        assert!(socket.recv_from(&mut buf).is_err(), "through a blackhole");
        while proxy.is_blackholed() {
            // A poll of the condition.
            std::thread::sleep(POLL);
        }
        assert!(started.elapsed() >= hole);
        socket.set_read_timeout(Some(LONG)).expect("timeout");
        assert_eq!(echo_round_trip(&socket, &proxy, b"after"), b"after");
        assert_eq!(proxy.stats().client_to_server.dropped_blackhole, 5);

        // Open-ended, and it takes what was already in flight.
        let mut slow = Impairment::none();
        slow.server_to_client.delay = Duration::from_millis(300);
        proxy.set_impairment(slow);
        socket
            .send_to(b"in flight", proxy.local_addr())
            .expect("send");
        wait_until("the echo to be queued", || proxy.stats().queued == 1);
        proxy.set_blackhole(true);
        wait_until("the queue to drain", || proxy.stats().queued == 0);
        let s = proxy.stats();
        assert_eq!(s.server_to_client.dropped_blackhole, 1, "{s:?}");
        proxy.set_blackhole(false);
        assert_eq!(echo_round_trip(&socket, &proxy, b"open"), b"open");
    }

    #[test]
    fn impairment_changes_at_runtime() {
        let sink = Peer::start(false);
        let proxy = ImpairmentProxy::start(sink.addr, Impairment::none());
        let socket = client();
        socket.send_to(b"1", proxy.local_addr()).expect("send");
        wait_until("the first", || sink.count() == 1);
        let mut cut = Impairment::none();
        cut.client_to_server.loss = 1.0;
        proxy.set_impairment(cut);
        assert_eq!(proxy.impairment(), cut);
        for _ in 0..10 {
            socket.send_to(b"x", proxy.local_addr()).expect("send");
        }
        wait_until("ten drops", || {
            proxy.stats().client_to_server.dropped_loss == 10
        });
        proxy.set_impairment(Impairment::none());
        socket.send_to(b"2", proxy.local_addr()).expect("send");
        wait_until("the second", || sink.count() == 2);
    }

    #[test]
    fn overflowing_the_delay_queue_is_counted() {
        let sink = Peer::start(false);
        let link = LinkImpairment::default().with_delay(Duration::from_secs(30));
        let proxy = ImpairmentProxy::start(sink.addr, Impairment::both(link).with_max_queued(10));
        let socket = client();
        for _ in 0..50 {
            socket.send_to(b"x", proxy.local_addr()).expect("send");
        }
        wait_until("all 50", || proxy.stats().client_to_server.received == 50);
        let s = proxy.stats();
        assert_eq!((s.queued, s.client_to_server.dropped_overflow), (10, 40));
        // Dropping a proxy with 30 s of queue must not wait for it.
        let before = Instant::now();
        drop(proxy);
        assert!(before.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn each_client_gets_its_own_replies() {
        let echo = Peer::start(true);
        let proxy = ImpairmentProxy::start(echo.addr, Impairment::none());
        let sockets: Vec<UdpSocket> = (0..3).map(|_| client()).collect();
        for round in 0..20u8 {
            for (i, socket) in sockets.iter().enumerate() {
                socket
                    .send_to(&[i as u8, round], proxy.local_addr())
                    .expect("send");
            }
            for (i, socket) in sockets.iter().enumerate() {
                let mut buf = [0u8; 16];
                let (n, _) = socket.recv_from(&mut buf).expect("echo");
                assert_eq!(&buf[..n], [i as u8, round]);
            }
        }
        assert_eq!(proxy.stats().clients, 3);
    }

    #[test]
    fn drop_stops_the_threads_and_frees_the_port() {
        let echo = Peer::start(true);
        for _ in 0..10 {
            let proxy = ImpairmentProxy::start(echo.addr, Impairment::none());
            let socket = client();
            echo_round_trip(&socket, &proxy, b"hi");
            let port = proxy.local_addr();
            drop(proxy);
            // The socket closes with its last reference, which the threads held.
            UdpSocket::bind(port).expect("the port is free again");
        }
    }
}
