//! `synshield serve`: puts the pieces together. Attach the XDP program with its
//! configuration and secrets, start the data path, serve the application on what it accepts,
//! keep the secrets rotating, show status and metrics, and stop cleanly on SIGINT/SIGTERM.

use std::io::IsTerminal as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use tcp_common::{Config, ConfigFlags, PortSet};
use tokio::signal::unix::{SignalKind, signal};

use crate::app::{App, AppKind, HttpConfig};
use crate::datapath::run::{DataPath, DataPathConfig, OpenDataPath, StatsHandle};
use crate::loader::{CounterReader, Shield, ShieldOptions, SynModeChoice, XdpModeChoice};
use crate::logging::say;
use crate::secrets::{FleetArgs, Keeper, SecretsSchedule};
use crate::xsk::{XskConfig, XskMode};

/// Options of `synshield serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Read options from this TOML file (keys are the long option names); options given on
    /// the command line or in their environment variable win over the file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Interface to attach to (e.g. eth0).
    #[arg(long, env = "SYNSHIELD_IFACE")]
    pub iface: String,
    /// Ports to protect, comma separated (at most 64).
    #[arg(long = "port", required = true, value_delimiter = ',', num_args = 1..)]
    pub ports: Vec<u16>,
    /// Application served on the accepted connections.
    #[arg(long, value_enum, default_value_t = AppKind::Echo)]
    pub app: AppKind,
    /// Backend for `--app proxy` (HOST:PORT).
    #[arg(long, required_if_eq("app", "proxy"))]
    pub upstream: Option<SocketAddr>,
    /// Body of the `--app http` response.
    #[arg(long, default_value = "synshield\n")]
    pub http_body: String,
    /// `--app http`: seconds a request's header block may take from its first byte (and the
    /// first request from the connection): slow clients are closed.
    #[arg(long, default_value_t = 10)]
    pub http_header_timeout: u64,
    /// `--app http`: seconds a keep-alive connection may wait for its next request.
    #[arg(long, default_value_t = 60)]
    pub http_idle_timeout: u64,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = XdpModeChoice::Auto)]
    pub xdp_mode: XdpModeChoice,
    /// AF_XDP mode.
    #[arg(long, value_enum, default_value_t = XskMode::Auto)]
    pub xsk_mode: XskMode,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics.
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// Addresses to answer SYNs for besides the interface's own, comma separated.
    #[arg(long = "address", value_delimiter = ',', num_args = 1..)]
    pub addresses: Vec<std::net::IpAddr>,
    /// How SYNs are answered: cookies from XDP, statefully by userspace, or adaptive (stateful
    /// below --syn-threshold, cookies above). Default: adaptive; cookies with --key-file, so
    /// that any host of the fleet completes any handshake (a stateful one lives on one host).
    #[arg(long, value_enum)]
    pub mode: Option<SynModeChoice>,
    /// Most half-open connections (SYN-RECEIVED, answered statefully) at once; beyond it
    /// SYNs get cookies (adaptive) or are dropped (stateful).
    #[arg(long, default_value_t = tcp_common::flow::DEFAULT_MAX_HALF_OPEN,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_half_open: u32,
    /// SYN-ACK retransmissions of a stateful handshake before it is dropped (Linux's
    /// tcp_synack_retries: 1 s, doubling, 5 retries, 63 s in all).
    #[arg(long, default_value_t = 5)]
    pub synack_retries: u8,
    /// SYNs per second (all CPUs) above which adaptive mode answers with cookies.
    #[arg(long, default_value_t = tcp_common::adaptive::DEFAULT_SYN_THRESHOLD)]
    pub syn_threshold: u32,
    /// Most connections held at once; beyond it new ones are reset.
    #[arg(long, default_value_t = 100_000,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_conns: usize,
    /// Our MSS (default: what the interface MTU allows).
    #[arg(long)]
    pub mss: Option<u16>,
    /// Cookie counter period in seconds (a cookie is valid for one to two periods).
    #[arg(long, default_value_t = 64)]
    pub cookie_period: u64,
    /// Cookie key rotation period in seconds (the previous key stays valid for one rotation).
    #[arg(long, default_value_t = 3600)]
    pub key_rotation: u64,
    /// Answer ACKs with an invalid cookie with RST (off: under an ACK flood it is reflection).
    #[arg(long)]
    pub rst_invalid_ack: bool,
    /// Keepalive: idle seconds before the first probe (0 turns keepalive off).
    #[arg(long, default_value_t = 7200)]
    pub keepalive_idle: u64,
    /// Keepalive: seconds between probes.
    #[arg(long, default_value_t = 75, value_parser = clap::value_parser!(u64).range(1..))]
    pub keepalive_interval: u64,
    /// Keepalive: unanswered probes before the connection is reset.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub keepalive_probes: u32,
    /// Maximum segment lifetime in seconds (TIME-WAIT lasts twice this).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub msl: u64,
    /// Seconds a stop waits for connections to close with FIN before resetting them.
    #[arg(long, default_value_t = 5)]
    pub grace: u64,
    /// Do not print the status line every second.
    #[arg(long)]
    pub quiet: bool,
    /// Most open connections one source address may hold (default: no limit beyond
    /// --max-conns); beyond it, its new connections are refused with RST.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_conns_per_source: Option<u32>,
    /// Test only: seconds between walks of the flow map for orphan entries (30).
    #[arg(long, hide = true)]
    pub test_reconcile_every: Option<u64>,
    /// Test only: the first shard panics after this many frames (how a failed data path
    /// ends the process is tested with it).
    #[arg(long, hide = true)]
    pub test_fail_after_frames: Option<u64>,
    /// The fleet's shared cookie keys (`--key-file`).
    #[command(flatten)]
    pub fleet: FleetArgs,
}

impl ServeArgs {
    /// How SYNs are answered: `--mode`, or its default (adaptive; cookies in a fleet).
    #[must_use]
    pub fn syn_mode(&self) -> SynModeChoice {
        self.mode.unwrap_or(if self.fleet.key_file.is_some() {
            SynModeChoice::Cookies
        } else {
            SynModeChoice::Adaptive
        })
    }
}

/// Runs `synshield serve` until SIGINT or SIGTERM.
///
/// In three steps: the privileged setup (ports, metrics listener, XDP program, AF_XDP
/// sockets) on this, the only thread; then every capability is dropped
/// ([`crate::privileges`]); then the shard threads and the async runtime start, and inherit
/// the empty set.
pub fn serve(args: ServeArgs) -> Result<()> {
    let started = std::time::SystemTime::now();
    let http = HttpConfig {
        body: Arc::from(args.http_body.as_bytes()),
        header_timeout: tcp_engine::Duration::from_secs(args.http_header_timeout),
        idle_timeout: tcp_engine::Duration::from_secs(args.http_idle_timeout),
    };
    let app = App::new(args.app, &http, args.upstream)
        .context("--app proxy needs --upstream HOST:PORT")?;
    for &p in &args.ports {
        check_port_free(p)?;
    }
    // Bound before anything is attached: a taken address fails with nothing to undo.
    let metrics_listener = match args.metrics {
        Some(addr) => {
            let l = TcpListener::bind(addr).with_context(|| {
                format!(
                    "--metrics {addr}: cannot listen there (in use, or not an address of this host)"
                )
            })?;
            l.set_nonblocking(true).context("making the metrics listener non-blocking")?;
            Some(l)
        }
        None => None,
    };
    let schedule = SecretsSchedule {
        counter_period: Duration::from_secs(args.cookie_period),
        key_rotation: Duration::from_secs(args.key_rotation),
    };
    let keeper = Keeper::start(&args.fleet, schedule)?;
    let mtu = crate::loader::interface_mtu(&args.iface);
    let mut config = xdp_config(&args, mtu)?;
    config.secrets = keeper.secrets();
    // Subscribed before the loader reads the addresses: no change after that read is missed.
    let address_watch = crate::addresses::AddressWatch::open()
        .context("subscribing to the interface's address changes (netlink)")?;
    let shield = Shield::attach_with(&args.iface, args.xdp_mode, &config, &shield_options(&args))?;
    let addresses = crate::addresses::Follower::new(
        address_watch,
        shield.local_addrs_writer()?,
        shield.local_addrs(),
        (shield.ifindex(), mtu),
    );
    let engine = Arc::new(engine_config(&args, &config));
    let open = OpenDataPath::open(
        shield.ebpf(),
        &DataPathConfig {
            iface: args.iface.clone(),
            engine,
            app,
            xsk: XskConfig { mode: args.xsk_mode, ..XskConfig::default() },
            grace: tcp_engine::Duration::from_secs(args.grace),
            max_conns: args.max_conns,
            max_conns_per_source: args.max_conns_per_source,
            max_half_open: if args.syn_mode() == SynModeChoice::Cookies {
                0
            } else {
                usize::try_from(args.max_half_open).unwrap_or(usize::MAX)
            },
            reconcile_every: Duration::from_secs(args.test_reconcile_every.unwrap_or(30)),
            fail_after_frames: args.test_fail_after_frames,
        },
    )?;
    let writer = shield.config_writer()?;
    let counters = Arc::new(shield.counter_reader()?);
    let defense = Arc::new(shield.syn_defense_reader()?);

    let keep = crate::privileges::capabilities_to_keep();
    let effective = crate::privileges::drop_capabilities(&keep)
        .context("dropping capabilities after the setup")?;
    tracing::info!(effective = format_args!("{effective:#x}"), kept = ?keep, "capabilities dropped");

    let data_path = open.start()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let running =
        Running { args, shield, config, keeper, writer, counters, defense, addresses, started };
    runtime.block_on(running.run(data_path, metrics_listener))
}

/// What `serve` holds once set up.
struct Running {
    args: ServeArgs,
    shield: Shield,
    config: Config,
    keeper: Keeper,
    writer: crate::loader::ConfigWriter,
    counters: Arc<CounterReader>,
    defense: Arc<crate::loader::SynDefenseReader>,
    /// What follows the interface's addresses.
    addresses: crate::addresses::Follower,
    started: std::time::SystemTime,
}

impl Running {
    async fn run(self, data_path: DataPath, metrics_listener: Option<TcpListener>) -> Result<()> {
        let Running {
            args,
            shield,
            mut config,
            keeper,
            mut writer,
            counters,
            defense,
            addresses,
            started,
        } = self;
        let mut follower = addresses.spawn(shield.iface().to_owned(), args.addresses.clone());
        let mut secrets = tokio::spawn(
            keeper
                .run(move |s| {
                    config.secrets = *s;
                    writer.write(&config).map_err(std::io::Error::other)
                })
                .context("installing the SIGHUP handler")?,
        );
        let stats = data_path.stats_handle();
        let metrics = match metrics_listener {
            Some(l) => Some(spawn_metrics(
                tokio::net::TcpListener::from_std(l)
                    .context("serving metrics on the async runtime")?,
                &counters,
                &stats,
                &defense,
                metrics_info(&args, &shield, started),
            )),
            None => None,
        };
        // Before the readiness line: a SIGTERM sent as soon as it appears must stop cleanly.
        let mut sigint =
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut sigterm =
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        // One line that scripts and tests wait for, printed last: from here on SYNs are
        // answered, connections served and metrics listening.
        say(&format!(
            "synshield: attached to {} ({} XDP), protecting ports {:?}, serving {:?}",
            shield.iface(),
            shield.mode(),
            config.ports,
            args.app
        ));
        tracing::info!(
            iface = shield.iface(),
            xdp_mode = %shield.mode(),
            ports = ?config.ports,
            app = ?args.app,
            metrics = ?args.metrics,
            "attached"
        );

        let failure = data_path.failure();
        let signals = (&mut sigint, &mut sigterm);
        let watched = Watched {
            counters: &counters,
            stats: &stats,
            defense: (args.syn_mode(), &defense),
            secrets: &mut secrets,
        };
        tokio::select! {
            r = show_status_until_signal(args.quiet, watched, signals) => r?,
            r = &mut follower => {
                r.context("following the interface's addresses")?;
                bail!(
                    "{} is gone (deleted, or moved to another network namespace) and its XDP \
                     program with it: synshield exits rather than run protecting nothing; \
                     start it again once the interface is back (the systemd unit does)",
                    shield.iface()
                );
            }
            (queue, why) = failure.wait() => {
                // The process exits: its BPF link goes with it, so the XDP program is detached
                // and no SYN is answered for connections nobody would serve.
                bail!(
                    "the data path of RX queue {queue} stopped ({why}); synshield exits rather \
                     than answer SYNs for connections nobody would serve: restart it (the \
                     systemd unit does)"
                );
            }
        }
        // Close the open connections with FIN (RST after the grace period), then detach.
        say(&format!("synshield: stopping: closing connections (up to {} s)", args.grace));
        tracing::info!(grace_s = args.grace, "stopping");
        tokio::task::spawn_blocking(move || data_path.stop())
            .await
            .context("stopping the data path")?;
        secrets.abort();
        follower.abort();
        if let Some(m) = metrics {
            m.abort();
        }
        let iface = shield.iface().to_owned();
        drop(shield);
        say(&format!("synshield: detached from {iface}"));
        tracing::info!(iface, "detached");
        Ok(())
    }
}

/// What the status loop watches besides the signals.
struct Watched<'a> {
    counters: &'a CounterReader,
    stats: &'a StatsHandle,
    /// The configured mode and how the XDP program answers SYNs now.
    defense: (SynModeChoice, &'a crate::loader::SynDefenseReader),
    secrets: &'a mut tokio::task::JoinHandle<std::io::Result<()>>,
}

/// What the metrics page says of this instance.
fn metrics_info(
    args: &ServeArgs,
    shield: &Shield,
    started: std::time::SystemTime,
) -> crate::metrics::Info {
    crate::metrics::Info {
        iface: shield.iface().to_owned(),
        xdp_mode: shield.mode().to_string(),
        defense: match args.syn_mode() {
            SynModeChoice::Cookies => "cookies",
            SynModeChoice::Stateful => "stateful",
            SynModeChoice::Adaptive => "adaptive",
        }
        .to_owned(),
        start_time_seconds: started
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    }
}

/// Serves the metrics on `listener` until the task is aborted.
fn spawn_metrics(
    listener: tokio::net::TcpListener,
    counters: &Arc<CounterReader>,
    stats: &StatsHandle,
    defense: &Arc<crate::loader::SynDefenseReader>,
    info: crate::metrics::Info,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let (counters, stats, defense) = (Arc::clone(counters), stats.clone(), Arc::clone(defense));
    let source = move || {
        let (xdp, data, queues) =
            (counters.read().unwrap_or_default(), stats.sum(), stats.per_queue());
        let defense = defense.read().unwrap_or_default();
        crate::metrics::render(&crate::metrics::Sources {
            xdp: &xdp,
            data: &data,
            queues: &queues,
            defense: &defense,
            info: &info,
        })
    };
    let (listener, source) = (Arc::new(listener), Arc::new(source));
    // Supervised: a server that ends (an accept error that does not pass) starts again on the
    // same listener, so the port is never given up.
    tokio::spawn(async move {
        loop {
            let limits = crate::metrics::ServeLimits::default();
            let ended = crate::metrics::serve(Arc::clone(&listener), Arc::clone(&source), limits);
            if let Err(e) = ended.await {
                tracing::error!(error = %e, "metrics server failed; restarting it in 1 s");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// Prints the status line every second (unless `quiet`) until SIGINT or SIGTERM; fails if
/// the key rotation task stops.
async fn show_status_until_signal(
    quiet: bool,
    Watched { counters, stats, defense: (mode, defense), secrets }: Watched<'_>,
    (sigint, sigterm): (&mut tokio::signal::unix::Signal, &mut tokio::signal::unix::Signal),
) -> Result<()> {
    let terminal = std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = counters.read()?;
    let mut last_at = Instant::now();
    // Adaptive mode: every switch is counted by the XDP program; the first change of the
    // whole machine's state (some CPU on cookies or none) is logged once here.
    let mut flooded = false;
    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            r = &mut *secrets => bail!("the cookie key rotation stopped: {r:?}"),
            _ = tick.tick() => {
                let now = counters.read()?;
                let syn = defense.read().unwrap_or_default();
                if mode == SynModeChoice::Adaptive && syn.on_cookies() != flooded {
                    flooded = syn.on_cookies();
                    if flooded {
                        tracing::warn!(cpus_on_cookies = syn.cpus_on_cookies, to_cookies = syn.to_cookies, "SYN flood: answering SYNs with cookies");
                    } else {
                        tracing::info!(to_stateful = syn.to_stateful, "SYN rate back below the threshold: stateful handshakes again");
                    }
                }
                if !quiet {
                    let open = stats.sum().table.by_state.iter().sum::<usize>();
                    let answer = match mode {
                        SynModeChoice::Cookies => "cookies",
                        SynModeChoice::Stateful => "stateful",
                        SynModeChoice::Adaptive if flooded => "adaptive:cookies",
                        SynModeChoice::Adaptive => "adaptive:stateful",
                    };
                    let line = format!("mode {answer} | {} | conns {open}", now.status_line(&last, last_at.elapsed().as_secs_f64()));
                    if terminal {
                        // One line, rewritten in place (carriage return, clear line), cut to
                        // the terminal's width: a wrapped line would leave a trail.
                        let width = ratatui::crossterm::terminal::size().map_or(80, |(w, _)| usize::from(w));
                        crate::logging::show_status(&crate::stats::fit_to_width(&line, width));
                    } else {
                        say(&format!("status: {line}"));
                    }
                }
                last = now;
                last_at = Instant::now();
            }
        }
    }
    crate::logging::end_status();
    Ok(())
}

/// The XDP program's configuration from the options and the interface.
fn xdp_config(args: &ServeArgs, mtu: Option<u32>) -> Result<Config> {
    let mut config = Config::EMPTY;
    config.ports = port_set(&args.ports)?;
    if let Some(mtu) = mtu {
        config.clamp_mss_to_mtu(mtu);
    }
    if let Some(mss) = args.mss {
        if !(88..=9000).contains(&mss) {
            bail!("--mss {mss} is out of range: give a value from 88 to 9000");
        }
        config.mss_v4 = config.mss_v4.min(mss);
        config.mss_v6 = config.mss_v6.min(mss);
    }
    if args.rst_invalid_ack {
        config.flags |= ConfigFlags::RST_INVALID_ACK.0;
    }
    // The shards mark a TIME-WAIT tuple's entry: a new handshake for it comes as a reopen,
    // and a SYN for any other tuple we hold goes to the engine (RFC 5961 section 4).
    config.flags |= ConfigFlags::TIME_WAIT_MARKED.0;
    let (receivers, tick) =
        (crate::loader::receiving_cpus(&args.iface), crate::loader::kernel_tick_ns());
    config.set_syn_mode(args.syn_mode().into(), args.syn_threshold, receivers, tick);
    Ok(config)
}

/// How the loader sizes and fills the XDP program's maps.
fn shield_options(args: &ServeArgs) -> ShieldOptions {
    let max_conns = u32::try_from(args.max_conns).unwrap_or(u32::MAX);
    ShieldOptions {
        flow_table: Some(tcp_common::flow::FlowTableSize {
            max_half_open: if args.syn_mode() == SynModeChoice::Cookies {
                0
            } else {
                args.max_half_open
            },
            ..tcp_common::flow::FlowTableSize::for_max_conns(max_conns)
        }),
        addresses: args.addresses.clone(),
    }
}

/// The engine's configuration, consistent with what the XDP program advertises.
fn engine_config(args: &ServeArgs, xdp: &Config) -> tcp_engine::Config {
    let secs = tcp_engine::Duration::from_secs;
    tcp_engine::Config {
        mss: xdp.mss_v4,
        mss_v6: xdp.mss_v6,
        window_scale: xdp.wscale,
        msl: secs(args.msl),
        // Every application sends without Nagle's delay (see `crate::app`): a whole response,
        // an echo of what arrived, or what a backend handed over.
        nagle: false,
        syn_retries: args.synack_retries,
        keepalive: tcp_engine::KeepaliveConfig {
            enabled: args.keepalive_idle > 0,
            idle: secs(args.keepalive_idle),
            interval: secs(args.keepalive_interval),
            probes: args.keepalive_probes,
        },
        ..tcp_engine::Config::default()
    }
}

fn port_set(ports: &[u16]) -> Result<PortSet> {
    let mut set = PortSet::EMPTY;
    for &p in ports {
        anyhow::ensure!(p != 0, "port 0 cannot be protected: give ports from 1 to 65535");
        set.insert(p);
    }
    anyhow::ensure!(
        set.len() <= PortSet::MAX_PORTS,
        "at most {} ports can be protected, {} were given",
        PortSet::MAX_PORTS,
        set.len()
    );
    Ok(set)
}

/// Refuses a port that a process on this host already serves: the XDP program would take
/// its SYNs and the service would silently stop receiving connections.
fn check_port_free(port: u16) -> Result<()> {
    // One probe at a time: a dual-stack [::] bind would collide with our own 0.0.0.0 probe.
    let in_use = |r: std::io::Result<TcpListener>| matches!(r, Err(e) if e.kind() == std::io::ErrorKind::AddrInUse);
    if in_use(TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))
        || in_use(TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)))
    {
        bail!(
            "port {port} is already served by a process on this host (see `ss -ltnp sport = :{port}`): stop it, or put synshield in front of it with `--app proxy --upstream` on another port"
        );
    }
    Ok(())
}
