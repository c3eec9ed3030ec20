//! `synshield check --iface IF`: can synshield run here, and what to change if not.
//!
//! Each check prints one line: `ok`, `warn` or `FAIL`, what was checked, and one sentence that
//! says what was found and what to do. Nothing is changed on the host: the interface is only
//! looked at, unless `--attach-test` asks to attach a two-instruction XDP_PASS program for a
//! moment (in generic, then native mode) to learn which modes the driver really has. That is
//! opt-in because attaching native XDP makes some drivers reset their rings, a short link
//! outage on a production NIC.

use std::ffi::CString;
use std::fmt;
use std::path::Path;

use crate::lab::{XdpAction, XdpAttachMode, attach_xdp_action};

/// Options of `synshield check`.
#[derive(clap::Args, Debug, Clone)]
pub struct CheckArgs {
    /// Interface synshield would attach to (e.g. eth0).
    #[arg(long, env = "SYNSHIELD_IFACE")]
    pub iface: String,
    /// Ports synshield would protect, comma separated: checks that no process serves them.
    #[arg(long = "port", value_delimiter = ',', num_args = 1..)]
    pub ports: Vec<u16>,
    /// Attach a do-nothing XDP_PASS program for a moment to learn which XDP modes work (some
    /// drivers reset the link when XDP is attached in native mode).
    #[arg(long)]
    pub attach_test: bool,
    /// Read `iface` and `port` from this TOML file (as `serve --config`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// The fleet key file `serve --key-file` would read: checks that it is a key file and
    /// private to its owner (taken from `--config` too).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<std::path::PathBuf>,
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but not at its best, or worth knowing.
    Warn,
    /// synshield will not run (or not protect) until this is fixed.
    Fail,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        })
    }
}

/// One check's outcome: what was checked and one sentence about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Ok, warn or fail.
    pub status: Status,
    /// What was checked, a word or two.
    pub what: String,
    /// What was found, and what to do about it.
    pub sentence: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<4}  {:<14} {}", self.status, self.what, self.sentence)
    }
}

fn finding(status: Status, what: impl Into<String>, sentence: impl Into<String>) -> Finding {
    Finding { status, what: what.into(), sentence: sentence.into() }
}

/// Capabilities `synshield serve` needs (include/uapi/linux/capability.h numbers), and why;
/// the systemd unit grants exactly these (a root test checks that they are enough and each is
/// needed).
pub const CAPABILITIES: &[(u32, &str, &str)] = &[
    (39, "CAP_BPF", "load the XDP program and create its maps"),
    (38, "CAP_PERFMON", "let the verifier accept the program's pointer arithmetic on packets"),
    (12, "CAP_NET_ADMIN", "attach XDP to the interface"),
    (13, "CAP_NET_RAW", "open AF_XDP sockets"),
    (
        14,
        "CAP_IPC_LOCK",
        "pin the AF_XDP packet memory (16 MiB per RX queue) beyond RLIMIT_MEMLOCK",
    ),
];

/// The oldest kernel synshield is meant for: BPF links for XDP (5.9), CAP_BPF and CAP_PERFMON
/// (5.8), memcg-accounted BPF memory (5.11).
const MIN_KERNEL: (u32, u32) = (5, 11);

/// Runs every check; returns the findings in order.
pub fn run_checks(args: &CheckArgs) -> Vec<Finding> {
    let mut out = vec![kernel(), btf(), jit(), af_xdp(), uid(), capabilities()];
    let iface_ok = Path::new("/sys/class/net").join(&args.iface).exists();
    if iface_ok {
        out.push(interface(&args.iface));
        out.push(existing_xdp(&args.iface));
        out.push(if args.attach_test {
            xdp_modes_by_attaching(&args.iface)
        } else {
            xdp_modes_by_driver(&args.iface)
        });
        out.push(queues(&args.iface));
    } else {
        out.push(finding(
            Status::Fail,
            "interface",
            format!(
                "there is no network interface named {:?}: pick one that `ip link` lists.",
                args.iface
            ),
        ));
    }
    if args.ports.is_empty() {
        out.push(finding(Status::Warn, "ports", "no --port given: pass the ports to protect to check that no process on this host serves them."));
    }
    out.extend(args.ports.iter().map(|&p| port(p)));
    out.push(bpffs());
    if let Some(path) = &args.key_file {
        out.push(key_file(path));
    }
    out
}

/// `synshield check`: prints the findings; fails if any check failed.
pub fn check(args: &CheckArgs) -> anyhow::Result<()> {
    let findings = run_checks(args);
    for f in &findings {
        println!("{f}");
    }
    let failed = findings.iter().filter(|f| f.status == Status::Fail).count();
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed: synshield cannot protect {} as it is", args.iface);
    }
    println!("synshield can run on {}.", args.iface);
    Ok(())
}

/// The fleet key file: what `serve` would refuse, refused here first, in the same words.
fn key_file(path: &Path) -> Finding {
    match crate::keyfile::read(path) {
        Ok(_) => finding(
            Status::Ok,
            "key file",
            format!("{} holds a fleet secret and only its owner can read it.", path.display()),
        ),
        Err(e) => finding(Status::Fail, "key file", format!("{e}.")),
    }
}

fn kernel() -> Finding {
    let release = read("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut nums = release.split(['.', '-']).map(|p| p.parse::<u32>().ok());
    match (nums.next().flatten(), nums.next().flatten()) {
        (Some(major), Some(minor)) if (major, minor) >= MIN_KERNEL => finding(
            Status::Ok,
            "kernel",
            format!("Linux {release} is {}.{} or newer.", MIN_KERNEL.0, MIN_KERNEL.1),
        ),
        _ => finding(
            Status::Fail,
            "kernel",
            format!(
                "Linux {release:?} is older than {}.{}: synshield needs BPF links, CAP_BPF and memcg-accounted BPF maps; upgrade the kernel.",
                MIN_KERNEL.0, MIN_KERNEL.1
            ),
        ),
    }
}

fn btf() -> Finding {
    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        finding(Status::Ok, "BTF", "the kernel describes its types (/sys/kernel/btf/vmlinux).")
    } else {
        finding(
            Status::Fail,
            "BTF",
            "/sys/kernel/btf/vmlinux is missing: use a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distributions' are).",
        )
    }
}

fn jit() -> Finding {
    match read("/proc/sys/net/core/bpf_jit_enable").as_deref() {
        Some("0") => finding(
            Status::Warn,
            "BPF JIT",
            "the BPF JIT is off, so XDP is interpreted and several times slower: `sysctl -w net.core.bpf_jit_enable=1`.",
        ),
        Some(v) => finding(Status::Ok, "BPF JIT", format!("on (net.core.bpf_jit_enable={v}).")),
        // Only the initial network namespace has the net.core.bpf_* sysctls.
        None if Path::new("/proc/sys/net/core/somaxconn").exists() => finding(
            Status::Ok,
            "BPF JIT",
            "net.core.bpf_jit_enable is visible only in the host's network namespace; check it there if XDP seems slow.",
        ),
        None => finding(
            Status::Warn,
            "BPF JIT",
            "net.core.bpf_jit_enable is not readable: the kernel may lack CONFIG_BPF_JIT, which makes XDP slow.",
        ),
    }
}

fn af_xdp() -> Finding {
    const AF_XDP: libc::c_int = 44;
    // SAFETY: socket(2) with constant arguments; the fd is closed at once.
    let fd = unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd >= 0 {
        // SAFETY: closing the fd we just opened.
        unsafe { libc::close(fd) };
        return finding(
            Status::Ok,
            "AF_XDP",
            "the kernel has AF_XDP sockets (CONFIG_XDP_SOCKETS).",
        );
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EAFNOSUPPORT) => finding(
            Status::Fail,
            "AF_XDP",
            "the kernel has no AF_XDP sockets: use one built with CONFIG_XDP_SOCKETS=y.",
        ),
        Some(libc::EPERM) => finding(
            Status::Warn,
            "AF_XDP",
            "cannot tell whether the kernel has AF_XDP sockets without CAP_NET_RAW: run the check as root.",
        ),
        _ => finding(
            Status::Warn,
            "AF_XDP",
            format!("opening an AF_XDP socket failed ({}).", std::io::Error::last_os_error()),
        ),
    }
}

fn uid() -> Finding {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        finding(Status::Ok, "user", "running as root (uid 0), as synshield serve requires.")
    } else {
        finding(
            Status::Fail,
            "user",
            "synshield serve runs as root (uid 0), with its capabilities bounded (see packaging/systemd/synshield.service): run it with sudo or from the unit.",
        )
    }
}

/// The effective capability mask of this process (`CapEff` in /proc/self/status).
fn effective_capabilities() -> Option<u64> {
    let status = read("/proc/self/status")?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

fn capabilities() -> Finding {
    let Some(mask) = effective_capabilities() else {
        return finding(
            Status::Warn,
            "capabilities",
            "/proc/self/status has no CapEff line: cannot tell which capabilities this process has.",
        );
    };
    let missing: Vec<String> = CAPABILITIES
        .iter()
        .filter(|(bit, ..)| mask & (1 << bit) == 0)
        .map(|(_, name, why)| format!("{name} (to {why})"))
        .collect();
    if missing.is_empty() {
        let names: Vec<&str> = CAPABILITIES.iter().map(|(_, n, _)| *n).collect();
        finding(Status::Ok, "capabilities", format!("has {}.", names.join(", ")))
    } else {
        finding(
            Status::Fail,
            "capabilities",
            format!(
                "missing {}: grant them (CapabilityBoundingSet= in the unit) or run as root.",
                missing.join(", ")
            ),
        )
    }
}

fn interface(iface: &str) -> Finding {
    let base = Path::new("/sys/class/net").join(iface);
    let state = read(base.join("operstate")).unwrap_or_default();
    let mtu = read(base.join("mtu")).unwrap_or_default();
    let driver = driver(iface).unwrap_or_else(|| "unknown".into());
    interface_finding(iface, &driver, &mtu, &state)
}

/// The interface row from what sysfs says (`operstate` as RFC 2863 names it).
fn interface_finding(iface: &str, driver: &str, mtu: &str, state: &str) -> Finding {
    let what = format!("{iface}: driver {driver}, MTU {mtu}, {state}");
    match state {
        "down" => finding(
            Status::Warn,
            "interface",
            format!(
                "{what}: bring it up (`ip link set dev {iface} up`) before clients can reach it."
            ),
        ),
        "lowerlayerdown" | "notpresent" | "dormant" => finding(
            Status::Warn,
            "interface",
            format!(
                "{what}: it is up but has no link (cable, switch port, or the veth peer down): nothing reaches it until it has."
            ),
        ),
        _ => finding(Status::Ok, "interface", format!("{what}.")),
    }
}

/// XDP programs already on the interface, as `ip -d link` reports them.
fn existing_xdp(iface: &str) -> Finding {
    let out = std::process::Command::new("ip").args(["-d", "link", "show", "dev", iface]).output();
    let Ok(out) = out else {
        return finding(
            Status::Warn,
            "XDP in use",
            "cannot run `ip` (iproute2) to see whether another XDP program is attached.",
        );
    };
    let text = String::from_utf8_lossy(&out.stdout);
    match text.split_whitespace().skip_while(|w| *w != "prog/xdp").nth(2) {
        Some(id) => finding(
            Status::Fail,
            "XDP in use",
            format!(
                "{iface} already has an XDP program (id {id}; `bpftool prog show id {id}`): detach it (`ip link set dev {iface} xdp off`) or choose another interface."
            ),
        ),
        None => finding(Status::Ok, "XDP in use", format!("no XDP program on {iface} yet.")),
    }
}

/// Drivers that run XDP natively (in the driver), as of Linux 6.x.
const NATIVE_XDP_DRIVERS: &[&str] = &[
    "veth",
    "virtio_net",
    "tun",
    "mlx5_core",
    "mlx4_en",
    "i40e",
    "ice",
    "ixgbe",
    "ixgbevf",
    "igb",
    "igc",
    "bnxt_en",
    "ena",
    "nfp",
    "qede",
    "sfc",
    "thunderx-nic",
    "dpaa2-eth",
    "mvneta",
    "mvpp2",
    "stmmac",
    "hv_netvsc",
    "xen-netfront",
    "gve",
    "fec",
    "enetc",
    "bond",
    "netdevsim",
    "cpsw",
    "lan966x-switch",
    "idpf",
    "octeontx2-nicpf",
    "af_xdp",
];

fn xdp_modes_by_driver(iface: &str) -> Finding {
    match driver(iface) {
        Some(d) if NATIVE_XDP_DRIVERS.contains(&d.as_str()) => finding(
            Status::Ok,
            "XDP modes",
            format!(
                "driver {d} runs XDP natively (fast); `--attach-test` confirms by attaching for a moment."
            ),
        ),
        Some(d) => finding(
            Status::Warn,
            "XDP modes",
            format!(
                "driver {d} is not known to run XDP natively: synshield will use generic XDP (slower); `--attach-test` tells for sure."
            ),
        ),
        None => finding(
            Status::Warn,
            "XDP modes",
            "the driver is unknown: `--attach-test` tells which XDP modes work.",
        ),
    }
}

fn xdp_modes_by_attaching(iface: &str) -> Finding {
    let try_mode = |mode| attach_xdp_action(iface, XdpAction::Pass, mode).map(drop);
    match (try_mode(XdpAttachMode::Native), try_mode(XdpAttachMode::Generic)) {
        (Ok(()), Ok(())) => finding(
            Status::Ok,
            "XDP modes",
            "native and generic both attach (tried with an XDP_PASS program): synshield uses native.",
        ),
        (Err(e), Ok(())) => finding(
            Status::Warn,
            "XDP modes",
            format!(
                "only generic XDP attaches (native: {e}): synshield works, slower; a driver with native XDP is faster."
            ),
        ),
        (_, Err(e)) => finding(
            Status::Fail,
            "XDP modes",
            format!(
                "no XDP program attaches ({e}): see the other findings (capabilities, XDP in use)."
            ),
        ),
    }
}

fn queues(iface: &str) -> Finding {
    let count =
        std::fs::read_dir(Path::new("/sys/class/net").join(iface).join("queues")).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        });
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let what =
        format!("{count} RX queue(s), {cpus} CPU(s): synshield runs one thread per RX queue");
    if count > cpus {
        finding(
            Status::Warn,
            "queues",
            format!(
                "{what}; more queues than CPUs share CPUs: `ethtool -L {iface} combined {cpus}`."
            ),
        )
    } else {
        finding(Status::Ok, "queues", format!("{what}."))
    }
}

/// Whether a process of this network namespace listens on `port` (/proc/net/tcp and tcp6:
/// local address `ADDR:PORT` in hex, state 0A = LISTEN).
fn port(port: u16) -> Finding {
    let needle = format!(":{port:04X}");
    let listening = ["/proc/net/tcp", "/proc/net/tcp6"].iter().filter_map(read).any(|text| {
        text.lines().skip(1).any(|l| {
            let mut f = l.split_whitespace();
            let local = f.nth(1).unwrap_or_default();
            local.ends_with(&needle) && f.nth(1) == Some("0A")
        })
    });
    if listening {
        finding(
            Status::Fail,
            format!("port {port}"),
            format!(
                "already served by a process on this host (`ss -ltnp sport = :{port}`): stop it, or move it to another port behind `--app proxy --upstream`."
            ),
        )
    } else {
        finding(Status::Ok, format!("port {port}"), "no process on this host listens on it.")
    }
}

fn bpffs() -> Finding {
    let mounted = read("/proc/mounts")
        .is_some_and(|m| m.lines().any(|l| l.split_whitespace().nth(2) == Some("bpf")));
    if mounted {
        finding(
            Status::Ok,
            "bpffs",
            "mounted: `bpftool map show` can name synshield's maps while it runs.",
        )
    } else {
        finding(
            Status::Warn,
            "bpffs",
            "not mounted; synshield does not need it, but bpftool does to pin maps for inspection: `mount -t bpf bpf /sys/fs/bpf`.",
        )
    }
}

/// The interface's driver name (ETHTOOL_GDRVINFO, include/uapi/linux/ethtool.h).
fn driver(iface: &str) -> Option<String> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
    // struct ethtool_drvinfo: cmd, then driver[32], version[32], fw_version[32], bus_info[32],
    // erom_version[32], reserved2[12], then five u32: 196 bytes.
    let mut info = [0u8; 196];
    info[..4].copy_from_slice(&ETHTOOL_GDRVINFO.to_ne_bytes());
    let name = CString::new(iface).ok()?;
    let mut ifr = [0u8; 40]; // struct ifreq: name[16], then a union whose first member is a pointer
    let bytes = name.as_bytes_with_nul();
    if bytes.len() > 16 {
        return None;
    }
    ifr[..bytes.len()].copy_from_slice(bytes);
    ifr[16..24].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
    // SAFETY: a datagram socket only to carry the ioctl, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `ifr` is a zeroed ifreq naming the interface and pointing at `info`, which
    // outlives the call and is as large as the kernel writes.
    let r = unsafe { libc::ioctl(fd, SIOCETHTOOL, ifr.as_mut_ptr()) };
    // SAFETY: closing the fd we opened.
    unsafe { libc::close(fd) };
    if r != 0 {
        return None;
    }
    let driver = &info[4..36];
    let len = driver.iter().position(|&b| b == 0).unwrap_or(driver.len());
    Some(String::from_utf8_lossy(&driver[..len]).into_owned())
}

fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interface_that_is_down_or_has_no_link_is_a_warning_and_up_or_unknown_is_ok() {
        for (state, status, says) in [
            ("up", Status::Ok, "eth0: driver ixgbe, MTU 1500, up."),
            ("unknown", Status::Ok, "eth0: driver ixgbe, MTU 1500, unknown."),
            ("down", Status::Warn, "ip link set dev eth0 up"),
            ("lowerlayerdown", Status::Warn, "has no link"),
            ("dormant", Status::Warn, "has no link"),
        ] {
            let f = interface_finding("eth0", "ixgbe", "1500", state);
            assert_eq!(f.status, status, "{f}");
            assert!(f.sentence.contains(says), "{f}");
            assert!(f.sentence.ends_with('.') && !f.sentence.contains('\n'), "{f}");
        }
    }

    #[test]
    fn a_missing_interface_fails_with_a_sentence_and_the_rest_still_runs() {
        let args = CheckArgs {
            iface: "nosuchif0".into(),
            ports: vec![],
            attach_test: false,
            config: None,
            key_file: None,
        };
        let findings = run_checks(&args);
        let iface = findings.iter().find(|f| f.what == "interface").unwrap();
        assert_eq!(iface.status, Status::Fail);
        assert!(iface.sentence.contains("`ip link`"), "{iface}");
        assert!(findings.iter().any(|f| f.what == "kernel"), "{findings:?}");
        assert!(findings.iter().any(|f| f.what == "ports" && f.status == Status::Warn));
        for f in &findings {
            let line = f.to_string();
            assert!(
                !line.contains('\n') && line.ends_with('.'),
                "one sentence per finding: {line}"
            );
        }
    }

    #[test]
    fn a_listening_port_is_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = listener.local_addr().unwrap().port();
        assert_eq!(port(p).status, Status::Fail);
        assert!(port(p).sentence.contains(&format!("sport = :{p}")));
        drop(listener);
        assert_eq!(port(p).status, Status::Ok);
    }

    #[test]
    fn the_key_file_is_checked_as_serve_reads_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("synshield-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fleet.key");
        crate::keyfile::generate(&path, true).unwrap();
        let ok = key_file(&path);
        assert_eq!(ok.status, Status::Ok, "{ok}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let loose = key_file(&path);
        assert_eq!(loose.status, Status::Fail, "{loose}");
        assert!(loose.sentence.contains("chmod 600"), "{loose}");
        std::fs::write(&path, "not a key\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let bad = key_file(&path);
        assert!(bad.status == Status::Fail && bad.sentence.contains("synshield keygen"), "{bad}");
        let missing = key_file(&dir.join("absent.key"));
        assert_eq!(missing.status, Status::Fail, "{missing}");
        assert!(!missing.to_string().contains('\n'));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
