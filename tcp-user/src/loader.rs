//! Loads the XDP program, attaches it to an interface, and gives access to its maps.
//!
//! Attachment goes through a BPF link owned by [`Shield`]: dropping the `Shield` (on exit,
//! SIGINT, SIGTERM, or even when the process is killed and its fds are closed) detaches the
//! program, so synshield never leaves a stale program on an interface.

use std::io;
use std::net::IpAddr;

use std::borrow::Borrow;
use std::os::fd::AsFd as _;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, Map, MapData, PerCpuArray},
    programs::{ProgramError, Xdp, XdpMode},
};
use tcp_common::adaptive::{SynDefense, SynRate};
use tcp_common::flow::FlowTableSize;
use tcp_common::local::LocalAddrs;
use tcp_common::{Config, Counter, maps};

use crate::stats::CounterSnapshot;

/// The XDP object, embedded at build time (empty when built without `cargo xtask build`).
pub static XDP_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/synshield.bpf.o"));

/// How to attach the program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpModeChoice {
    /// Native (driver) mode if the driver supports it, else generic.
    #[default]
    Auto,
    /// Native (driver) mode only: fastest, needs driver support.
    Native,
    /// Generic (skb) mode: works on every interface, slower.
    Generic,
}

/// How SYNs are answered (`--mode`; `tcp_common::adaptive`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SynModeChoice {
    /// Stateful (userspace, SYN-ACK retransmission, exact options) while the SYN rate is below
    /// --syn-threshold and the half-open table has room; SYN cookies from XDP otherwise.
    #[default]
    Adaptive,
    /// Every SYN gets a SYN cookie from XDP.
    Cookies,
    /// Every SYN is answered by userspace; dropped when the half-open table is full.
    Stateful,
}

impl From<SynModeChoice> for tcp_common::SynMode {
    fn from(m: SynModeChoice) -> Self {
        match m {
            SynModeChoice::Adaptive => tcp_common::SynMode::Adaptive,
            SynModeChoice::Cookies => tcp_common::SynMode::Cookies,
            SynModeChoice::Stateful => tcp_common::SynMode::Stateful,
        }
    }
}

/// The CPUs that run the XDP program for `iface`, for each CPU's share of `--syn-threshold`:
/// the interface's RX queues, at most the online CPUs (at least 1).
#[must_use]
pub fn receiving_cpus(iface: &str) -> u32 {
    let queues = std::fs::read_dir(format!("/sys/class/net/{iface}/queues")).map_or(1, |d| {
        d.filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
            .count()
    });
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    u32::try_from(queues.min(cpus).max(1)).unwrap_or(1)
}

/// The kernel's timer tick (`1 / HZ`) in ns, which the adaptive mode's windows count in:
/// the resolution of `CLOCK_MONOTONIC_COARSE`. The default tick if it cannot be read.
#[must_use]
pub fn kernel_tick_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to write.
    if unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &raw mut ts) } != 0 {
        return tcp_common::adaptive::DEFAULT_TICK_NS;
    }
    let ns = u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000
        + u64::try_from(ts.tv_nsec).unwrap_or(0);
    if ns == 0 { tcp_common::adaptive::DEFAULT_TICK_NS } else { ns }
}

/// The mode the program ended up attached in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    /// Native (driver) mode.
    Native,
    /// Generic (skb) mode.
    Generic,
}

impl std::fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachedMode::Native => "native",
            AttachedMode::Generic => "generic",
        })
    }
}

/// Why the shield could not be loaded or attached: each a sentence saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not root.
    #[error(
        "synshield needs root (CAP_BPF and CAP_NET_ADMIN) to load its XDP program: run it as root, e.g. with sudo"
    )]
    NotRoot,
    /// Built without the XDP object.
    #[error(
        "this synshield binary was built without its XDP program: build it with `cargo xtask build`"
    )]
    NoObject,
    /// No such interface.
    #[error("there is no network interface named {0:?}: pick one that `ip link` lists")]
    NoSuchInterface(String),
    /// Someone else's XDP program is on the interface.
    #[error(
        "{0} already has an XDP program attached by another tool: detach it (`ip link set dev {0} xdp off`) or choose another interface"
    )]
    XdpBusy(String),
    /// The driver cannot run XDP natively.
    #[error("the driver of {0} does not support native XDP: use `--xdp-mode generic` (or `auto`)")]
    NativeUnsupported(String),
    /// The kernel's verifier refused the program.
    #[error(
        "the kernel refused the XDP program ({0}); this is a synshield bug or an unsupported kernel: please report it with the full log from `RUST_LOG=debug`"
    )]
    Rejected(String),
    /// Anything else, with its cause.
    #[error("{0}")]
    Other(String),
}

/// What the loader sets up besides the configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShieldOptions {
    /// What the flow table must hold: `max_entries` of `SYNSHIELD_FLOWS` is set from it
    /// (`tcp_common::flow`). `None`: the object's own size (tests).
    pub flow_table: Option<FlowTableSize>,
    /// Addresses whose SYNs are answered besides the interface's (`--address`).
    pub addresses: Vec<IpAddr>,
}

/// The XDP program, loaded and attached; detached when dropped.
pub struct Shield {
    ebpf: Ebpf,
    iface: String,
    /// The interface's index when the program was attached: gone from the namespace, the
    /// program is gone with it.
    ifindex: u32,
    mode: AttachedMode,
    /// The address list written when attaching.
    local: LocalAddrs,
}

impl std::fmt::Debug for Shield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shield")
            .field("iface", &self.iface)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Shield {
    /// Loads the embedded program, writes `config`, and attaches to `iface` (in the calling
    /// thread's network namespace), with default [`ShieldOptions`].
    pub fn attach(iface: &str, mode: XdpModeChoice, config: &Config) -> Result<Shield, LoadError> {
        Shield::attach_with(iface, mode, config, &ShieldOptions::default())
    }

    /// As [`Shield::attach`], with the maps set up as `options` say.
    pub fn attach_with(
        iface: &str,
        mode: XdpModeChoice,
        config: &Config,
        options: &ShieldOptions,
    ) -> Result<Shield, LoadError> {
        Shield::attach_object(XDP_OBJECT, iface, mode, config, options)
    }

    /// As [`Shield::attach_with`], with the object given (tests, benchmarks).
    pub fn attach_object(
        object: &[u8],
        iface: &str,
        mode: XdpModeChoice,
        config: &Config,
        options: &ShieldOptions,
    ) -> Result<Shield, LoadError> {
        // First: a mistyped name gets its one sentence, not a warning about its addresses.
        let ifindex =
            interface_index(iface).ok_or_else(|| LoadError::NoSuchInterface(iface.to_owned()))?;
        let mut ebpf = load_with(object, options.flow_table)?;
        write_config(&mut ebpf, config)?;
        let local = local_addrs(&interface_addresses(iface)?, &options.addresses)?;
        if local.is_empty() {
            log::warn!(
                "{iface} has no IP address and none was given with --address: no SYN will be answered"
            );
        }
        write_local_addrs(&mut ebpf, &local)?;
        let program: &mut Xdp = program(&mut ebpf)?;
        program.load().map_err(|e| program_error(&e, iface))?;
        let mode = match mode {
            XdpModeChoice::Native => attach_in(program, iface, XdpMode::Driver)?,
            XdpModeChoice::Generic => attach_in(program, iface, XdpMode::Skb)?,
            XdpModeChoice::Auto => match attach_in(program, iface, XdpMode::Driver) {
                Err(LoadError::NativeUnsupported(_)) => attach_in(program, iface, XdpMode::Skb)?,
                other => other?,
            },
        };
        Ok(Shield { ebpf, iface: iface.to_owned(), ifindex, mode, local })
    }

    /// The interface the program is attached to.
    #[must_use]
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The index of the interface the program is attached to.
    #[must_use]
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The mode the program is attached in.
    #[must_use]
    pub fn mode(&self) -> AttachedMode {
        self.mode
    }

    /// Replaces the configuration the program reads.
    pub fn set_config(&mut self, config: &Config) -> Result<(), LoadError> {
        write_config(&mut self.ebpf, config)
    }

    /// Reads the counters, summed over CPUs.
    pub fn counters(&self) -> Result<CounterSnapshot, LoadError> {
        read_counters(&self.ebpf)
    }

    /// The loaded object, for maps that other modules own (flow table, AF_XDP sockets).
    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }

    /// The loaded object, mutably.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}

/// Loads (but does not attach) the object: for `BPF_PROG_TEST_RUN` tests and benchmarks. The
/// flow table has the object's own size.
pub fn load(object: &[u8]) -> Result<Ebpf, LoadError> {
    load_with(object, None)
}

/// Loads (but does not attach) the object, the flow table sized for `flow_table` on this
/// machine's possible CPUs ([`flow_table_entries`]), or the object's own size for `None`.
pub fn load_with(object: &[u8], flow_table: Option<FlowTableSize>) -> Result<Ebpf, LoadError> {
    if object.is_empty() {
        return Err(LoadError::NoObject);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LoadError::NotRoot);
    }
    let mut loader = EbpfLoader::new();
    let entries = flow_table.map(|t| flow_table_entries(&t)).transpose()?;
    if let Some(n) = entries {
        loader.map_max_entries(maps::FLOWS, n);
    }
    loader.load(object).map_err(|e| match &e {
        aya::EbpfError::MapError(aya::maps::MapError::CreateError { io_error, .. })
            if io_error.kind() == io::ErrorKind::PermissionDenied =>
        {
            LoadError::NotRoot
        }
        aya::EbpfError::MapError(aya::maps::MapError::CreateError { name, io_error, .. })
            if name == maps::FLOWS && io_error.raw_os_error() == Some(libc::ENOMEM) =>
        {
            let n = u64::from(entries.unwrap_or(tcp_common::flow::FLOW_TABLE_SIZE));
            LoadError::Other(format!(
                "the kernel has no memory for a flow table of {n} entries (about {} MiB, sized \
                 from --max-conns): give a smaller --max-conns",
                n * 128 / (1 << 20)
            ))
        }
        _ => other(&e),
    })
}

/// `max_entries` of the flow table for `size` on this machine (its possible CPUs, for the
/// LRU's per-CPU free lists): `tcp_common::flow::FlowTableSize::entries`.
pub fn flow_table_entries(size: &FlowTableSize) -> Result<u32, LoadError> {
    let cpus = aya::util::nr_cpus().map_err(|(what, e)| {
        LoadError::Other(format!("counting this machine's CPUs ({what}): {e}"))
    })?;
    Ok(size.entries(u32::try_from(cpus).unwrap_or(u32::MAX)))
}

/// The XDP program in a loaded object.
pub fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp, LoadError> {
    ebpf.program_mut(tcp_common::XDP_PROGRAM)
        .ok_or_else(|| {
            LoadError::Other(format!("the XDP object has no program {:?}", tcp_common::XDP_PROGRAM))
        })?
        .try_into()
        .map_err(|e: ProgramError| other(&e))
}

/// Writes the single `Config` entry.
pub fn write_config(ebpf: &mut Ebpf, config: &Config) -> Result<(), LoadError> {
    let map = ebpf
        .map_mut(maps::CONFIG)
        .ok_or_else(|| LoadError::Other(format!("the XDP object has no map {}", maps::CONFIG)))?;
    let mut array: Array<_, Config> = Array::try_from(map).map_err(|e| other(&e))?;
    array.set(0, config, 0).map_err(|e| other(&e))
}

/// Writes the addresses whose SYNs the program answers (`tcp_common::local`).
pub fn write_local_addrs(ebpf: &mut Ebpf, local: &LocalAddrs) -> Result<(), LoadError> {
    let map = ebpf.map_mut(maps::LOCAL_ADDRS).ok_or_else(|| {
        LoadError::Other(format!("the XDP object has no map {}", maps::LOCAL_ADDRS))
    })?;
    let mut array: Array<_, LocalAddrs> = Array::try_from(map).map_err(|e| other(&e))?;
    array.set(0, local, 0).map_err(|e| other(&e))
}

/// The list the program answers for: the interface's unicast addresses (`interface`; others,
/// such as a loopback's, are left out) and the `extra` ones (`--address`, which must be
/// unicast).
pub fn local_addrs(interface: &[IpAddr], extra: &[IpAddr]) -> Result<LocalAddrs, LoadError> {
    let mut local = LocalAddrs::default();
    let push = |l: &mut LocalAddrs, a: &IpAddr| match a {
        IpAddr::V4(a) => l.push_v4(a.octets()),
        IpAddr::V6(a) => l.push_v6(a.octets()),
    };
    for a in extra {
        push(&mut local, a).map_err(|e| LoadError::Other(format!("--address {a}: {e}")))?;
    }
    for a in interface {
        match push(&mut local, a) {
            Ok(()) | Err(tcp_common::local::LocalAddrError::NotUnicast) => {}
            Err(e) => return Err(LoadError::Other(format!("the interface's address {a}: {e}"))),
        }
    }
    Ok(local)
}

/// Whether interface `ifindex` exists in the calling thread's network namespace.
#[must_use]
pub fn interface_exists(ifindex: u32) -> bool {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: a buffer of IF_NAMESIZE bytes, as if_indextoname requires.
    !unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) }.is_null()
}

/// The index of interface `name`, if it exists in the calling thread's network namespace.
#[must_use]
pub fn interface_index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

/// The MTU of interface `name`, from sysfs (the calling process's network namespace, as `ip
/// netns exec` mounts it).
#[must_use]
pub fn interface_mtu(name: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/mtu")).ok()?.trim().parse().ok()
}

/// The IPv4 and IPv6 addresses of `iface` in the calling thread's network namespace (empty
/// if there is no such interface).
pub fn interface_addresses(iface: &str) -> Result<Vec<IpAddr>, LoadError> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head that we free below.
    if unsafe { libc::getifaddrs(&raw mut head) } != 0 {
        let e = io::Error::last_os_error();
        return Err(LoadError::Other(format!("listing the interfaces' addresses: {e}")));
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: a node of the list getifaddrs made, valid until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        // SAFETY: ifa_name is a NUL-terminated string of the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if ifa.ifa_addr.is_null() || name.to_bytes() != iface.as_bytes() {
            continue;
        }
        // SAFETY: ifa_addr points at a sockaddr of the family it names.
        unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = ifa.ifa_addr.cast::<libc::sockaddr_in>().read_unaligned();
                    out.push(IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes()));
                }
                libc::AF_INET6 => {
                    let sin6 = ifa.ifa_addr.cast::<libc::sockaddr_in6>().read_unaligned();
                    out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                }
                _ => {}
            }
        }
    }
    // SAFETY: the list getifaddrs made, freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// Every CPU's SYN rate state (adaptive mode), summed up: how many CPUs answer with cookies
/// now, and the switches so far.
pub fn read_syn_defense(ebpf: &Ebpf) -> Result<SynDefense, LoadError> {
    let map = ebpf
        .map(maps::SYN_RATE)
        .ok_or_else(|| LoadError::Other(format!("the XDP object has no map {}", maps::SYN_RATE)))?;
    let array: PerCpuArray<_, SynRate> = PerCpuArray::try_from(map).map_err(|e| other(&e))?;
    sum_syn_rates(&array)
}

fn sum_syn_rates<T: Borrow<MapData>>(
    array: &PerCpuArray<T, SynRate>,
) -> Result<SynDefense, LoadError> {
    let per_cpu = array.get(&0, 0).map_err(|e| other(&e))?;
    Ok(SynDefense::of(per_cpu.iter()))
}

/// Says whether RX queue `queue`'s half-open table has room (`SYNSHIELD_HALF_OPEN_ROOM`).
pub fn write_half_open_room(ebpf: &mut Ebpf, queue: u32, room: bool) -> Result<(), LoadError> {
    let map = ebpf.map_mut(maps::HALF_OPEN_ROOM).ok_or_else(|| {
        LoadError::Other(format!("the XDP object has no map {}", maps::HALF_OPEN_ROOM))
    })?;
    let mut array: Array<_, u32> = Array::try_from(map).map_err(|e| other(&e))?;
    array.set(queue, u32::from(room), 0).map_err(|e| other(&e))
}

/// Reads every counter, summed over CPUs.
pub fn read_counters(ebpf: &Ebpf) -> Result<CounterSnapshot, LoadError> {
    let map = ebpf
        .map(maps::COUNTERS)
        .ok_or_else(|| LoadError::Other(format!("the XDP object has no map {}", maps::COUNTERS)))?;
    let array: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(|e| other(&e))?;
    sum_counters(&array)
}

fn sum_counters<T: Borrow<MapData>>(
    array: &PerCpuArray<T, u64>,
) -> Result<CounterSnapshot, LoadError> {
    let mut snapshot = CounterSnapshot::default();
    for &c in Counter::ALL {
        let per_cpu = array.get(&(c as u32), 0).map_err(|e| other(&e))?;
        snapshot.set(c, per_cpu.iter().sum());
    }
    Ok(snapshot)
}

/// A second handle on one of the object's maps (its fd duplicated), for a thread or task
/// that must not borrow the `Ebpf`.
pub fn map_handle(ebpf: &Ebpf, name: &str) -> Result<Map, LoadError> {
    let map = ebpf
        .map(name)
        .ok_or_else(|| LoadError::Other(format!("the XDP object has no map {name}")))?;
    let dup = |d: &MapData| -> Result<MapData, LoadError> {
        let fd = d.fd().as_fd().try_clone_to_owned().map_err(|e| other(&e))?;
        MapData::from_fd(fd).map_err(|e| other(&e))
    };
    Ok(match map {
        Map::Array(d) => Map::Array(dup(d)?),
        Map::PerCpuArray(d) => Map::PerCpuArray(dup(d)?),
        Map::HashMap(d) => Map::HashMap(dup(d)?),
        Map::LruHashMap(d) => Map::LruHashMap(dup(d)?),
        Map::XskMap(d) => Map::XskMap(dup(d)?),
        _ => {
            return Err(LoadError::Other(format!(
                "map {name} is of a kind synshield does not share"
            )));
        }
    })
}

/// Writes the `Config` map from anywhere (the key rotation task).
pub struct ConfigWriter(Array<MapData, Config>);

impl ConfigWriter {
    /// Replaces the configuration the program reads.
    pub fn write(&mut self, config: &Config) -> Result<(), LoadError> {
        self.0.set(0, config, 0).map_err(|e| other(&e))
    }
}

/// Rewrites the addresses whose SYNs are answered from anywhere (the task that follows the
/// interface's addresses, [`crate::addresses::follow`]): see [`local_addrs`] and
/// [`interface_addresses`].
pub struct LocalAddrsWriter(Array<MapData, LocalAddrs>);

impl LocalAddrsWriter {
    /// Replaces the list the program reads.
    pub fn write(&mut self, local: &LocalAddrs) -> Result<(), LoadError> {
        self.0.set(0, local, 0).map_err(|e| other(&e))
    }
}

/// Reads the SYN defense's state from anywhere (status line, metrics, the switch log line).
pub struct SynDefenseReader {
    array: PerCpuArray<MapData, SynRate>,
    /// Each CPU's window as last read, and since when it has not moved.
    seen: std::sync::Mutex<Vec<(u64, std::time::Instant)>>,
}

impl SynDefenseReader {
    /// How long a CPU may see no SYN at all before its "on cookies" is taken as over: a CPU
    /// only updates its state when a SYN arrives (and then judges that SYN with the quiet
    /// windows it missed), so one whose flood ended and that got no SYN since still says
    /// "cookies". A second without SYNs is far more than the calm windows it needs.
    pub const QUIET: std::time::Duration = std::time::Duration::from_secs(1);

    /// Every CPU's state, summed up; a CPU on cookies that has seen no SYN for
    /// [`SynDefenseReader::QUIET`] counts as back to stateful.
    pub fn read(&self) -> Result<SynDefense, LoadError> {
        let per_cpu = self.array.get(&0, 0).map_err(|e| other(&e))?;
        let now = std::time::Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.resize(per_cpu.iter().count(), (u64::MAX, now));
        let settled: Vec<SynRate> = per_cpu
            .iter()
            .zip(seen.iter_mut())
            .map(|(rate, (window, since))| {
                if *window != rate.window {
                    *window = rate.window;
                    *since = now;
                }
                let quiet = now.saturating_duration_since(*since) >= Self::QUIET;
                SynRate { cookies: if quiet { 0 } else { rate.cookies }, ..*rate }
            })
            .collect();
        Ok(SynDefense::of(settled.iter()))
    }
}

/// Tells the XDP program, from a shard's thread, whether its queue's half-open table has
/// room (`tcp_common::meta`: 1 while the shard can take SYNs, 0 once full).
pub struct HalfOpenRoomWriter(Array<MapData, u32>);

impl HalfOpenRoomWriter {
    /// A writer of `ebpf`'s room flags (one per shard, made before privileges are dropped).
    pub fn open(ebpf: &Ebpf) -> Result<HalfOpenRoomWriter, LoadError> {
        Array::try_from(map_handle(ebpf, maps::HALF_OPEN_ROOM)?)
            .map(HalfOpenRoomWriter)
            .map_err(|e| other(&e))
    }

    /// Sets the flag of RX queue `queue`.
    pub fn set(&mut self, queue: u32, room: bool) -> Result<(), LoadError> {
        self.0.set(queue, u32::from(room), 0).map_err(|e| other(&e))
    }
}

/// Reads the counters from anywhere (status line, metrics).
pub struct CounterReader(PerCpuArray<MapData, u64>);

impl CounterReader {
    /// The counters, summed over CPUs.
    pub fn read(&self) -> Result<CounterSnapshot, LoadError> {
        sum_counters(&self.0)
    }
}

impl Shield {
    /// A writer of the `Config` map that does not borrow the shield.
    pub fn config_writer(&self) -> Result<ConfigWriter, LoadError> {
        Array::try_from(map_handle(&self.ebpf, maps::CONFIG)?)
            .map(ConfigWriter)
            .map_err(|e| other(&e))
    }

    /// The addresses whose SYNs are answered, as written when attaching.
    pub fn local_addrs(&self) -> LocalAddrs {
        self.local
    }

    /// A writer of the local addresses that does not borrow the shield.
    pub fn local_addrs_writer(&self) -> Result<LocalAddrsWriter, LoadError> {
        Array::try_from(map_handle(&self.ebpf, maps::LOCAL_ADDRS)?)
            .map(LocalAddrsWriter)
            .map_err(|e| other(&e))
    }

    /// A reader of the SYN defense's state that does not borrow the shield.
    pub fn syn_defense_reader(&self) -> Result<SynDefenseReader, LoadError> {
        PerCpuArray::try_from(map_handle(&self.ebpf, maps::SYN_RATE)?)
            .map(|array| SynDefenseReader { array, seen: std::sync::Mutex::default() })
            .map_err(|e| other(&e))
    }

    /// A writer of the half-open room flags that does not borrow the shield (one per shard).
    pub fn half_open_room_writer(&self) -> Result<HalfOpenRoomWriter, LoadError> {
        Array::try_from(map_handle(&self.ebpf, maps::HALF_OPEN_ROOM)?)
            .map(HalfOpenRoomWriter)
            .map_err(|e| other(&e))
    }

    /// A reader of the counters that does not borrow the shield.
    pub fn counter_reader(&self) -> Result<CounterReader, LoadError> {
        PerCpuArray::try_from(map_handle(&self.ebpf, maps::COUNTERS)?)
            .map(CounterReader)
            .map_err(|e| other(&e))
    }
}

fn attach_in(program: &mut Xdp, iface: &str, mode: XdpMode) -> Result<AttachedMode, LoadError> {
    program.attach(iface, mode).map_err(|e| {
        let err = program_error(&e, iface);
        match (mode, &err) {
            // veth and most drivers support native XDP; one that does not answers EOPNOTSUPP
            // (or EINVAL from older netlink paths).
            (XdpMode::Driver, LoadError::Other(_))
                if matches!(os_error(&e), Some(libc::EOPNOTSUPP | libc::EINVAL)) =>
            {
                LoadError::NativeUnsupported(iface.to_owned())
            }
            _ => err,
        }
    })?;
    Ok(if mode == XdpMode::Driver { AttachedMode::Native } else { AttachedMode::Generic })
}

fn os_error(e: &ProgramError) -> Option<i32> {
    if let ProgramError::SyscallError(s) = e {
        return s.io_error.raw_os_error();
    }
    // Netlink errors carry the errno in their source chain.
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return io.raw_os_error();
        }
        source = s.source();
    }
    None
}

fn program_error(e: &ProgramError, iface: &str) -> LoadError {
    match e {
        ProgramError::UnknownInterface { name } => LoadError::NoSuchInterface(name.clone()),
        ProgramError::LoadError { io_error, verifier_log } => {
            let log = verifier_log.to_string();
            tracing::debug!(verifier_log = %log, "loaded");
            // The verifier's verdict is in its last lines ("BPF program is too large", ...).
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            LoadError::Rejected(format!("{io_error}: {}", tail.join(" / ")))
        }
        _ => match os_error(e) {
            Some(libc::EPERM) => LoadError::NotRoot,
            Some(libc::EBUSY | libc::EEXIST) => LoadError::XdpBusy(iface.to_owned()),
            _ => other(e),
        },
    }
}

/// An error with its whole cause chain on one line (the verifier log included).
fn other(e: &dyn std::error::Error) -> LoadError {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    LoadError::Other(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_exists_by_name_and_index_and_a_free_index_does_not() {
        let lo = interface_index("lo").expect("every namespace has lo");
        assert!(interface_exists(lo));
        assert!(!interface_exists(u32::MAX));
        assert_eq!(interface_index("no-such-if0"), None);
    }
}
