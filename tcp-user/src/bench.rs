//! The XDP program's cost per SYN under `BPF_PROG_TEST_RUN`, next to an `XDP_DROP` program (the
//! harness's own cost) and a variant that answers with the kernel's cookie helper
//! (`bpf_tcp_raw_gen_syncookie_ipv4`): the reference programs are in `tcp-ebpf/src/bench.rs`.
//!
//! Every run must start from the SYN, so each `BPF_PROG_TEST_RUN` call runs the program once
//! (`repeat = 1`) on a fresh copy of the frame, and the kernel's own timing of that run (which
//! leaves out the system call) is averaged over a million calls. The kernel's `repeat` runs
//! on one buffer, so from the second run on a program answers its own SYN-ACK (a cheap pass);
//! live frames (`BPF_F_TEST_XDP_LIVE_FRAMES`) recycle the pages a program wrote to without
//! copying the frame again (`xdp_test_run_init_page` re-initialises a page only on first use),
//! and a profile of that mode showed most of the time in building sk_buffs for the passed
//! SYN-ACKs. The per-call timer overhead is in every row alike: the XDP_DROP row shows it.

use std::fmt::Write as _;
use std::time::Duration;

use aya::Ebpf;
use aya::programs::{ProgramError, TestRun as _, TestRunOptions, Xdp};
use tcp_common::checksum::sum_bytes;
use tcp_common::{Config, FlowKey, FlowValue, PortSet};

use crate::loader::{self, LoadError};
use crate::secrets;

/// Runs per measurement (the issue asks for at least a million).
pub const DEFAULT_REPEAT: u32 = 1_000_000;
/// Rounds the runs are split into, interleaved between programs; the median and the minimum
/// of the rounds' means are reported (on a shared machine the minimum is the least disturbed).
pub const ROUNDS: usize = 20;
/// The port the SYNs go to (protected).
pub const PORT: u16 = 80;

const XDP_DROP: u32 = 1;
const XDP_TX: u32 = 3;

/// Names of the reference programs in the object.
pub const DROP_PROGRAM: &str = "synshield_bench_drop";
/// The kernel-helper variant.
pub const KERNEL_COOKIE_PROGRAM: &str = "synshield_bench_kernel_cookie";

/// What is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// `XDP_DROP`.
    Drop,
    /// The kernel helper's SYN-ACK.
    KernelCookie,
    /// Our program.
    Synshield,
    /// Our program from another build (`XDP_BENCH_BASELINE`), to compare before and after a
    /// change in one run.
    Baseline,
    /// Our program in cookie mode with `ConfigFlags::TIME_WAIT_MARKED` (the data path marks
    /// TIME-WAIT entries): one flow-map lookup per SYN for RFC 5961 section 4.
    Marked,
    /// Our program in adaptive mode, flooded (its SYN rate counted, then a cookie SYN-ACK):
    /// a copy loaded with a limit of zero SYNs per window.
    Adaptive,
}

impl Subject {
    fn program(self) -> &'static str {
        match self {
            Subject::Drop => DROP_PROGRAM,
            Subject::KernelCookie => KERNEL_COOKIE_PROGRAM,
            Subject::Synshield | Subject::Baseline | Subject::Marked | Subject::Adaptive => {
                tcp_common::XDP_PROGRAM
            }
        }
    }

    fn label(self) -> &'static str {
        match self {
            Subject::Drop => "XDP_DROP (the harness's own cost)",
            Subject::KernelCookie => {
                "kernel helper `bpf_tcp_raw_gen_syncookie_ipv4` + `bpf_csum_diff`"
            }
            Subject::Synshield => "**synshield** (SipHash-1-3 cookie, incremental checksums)",
            Subject::Baseline => "synshield, baseline build (`XDP_BENCH_BASELINE`)",
            Subject::Marked => "synshield, TIME-WAIT marked: a flow lookup per SYN (RFC 5961)",
            Subject::Adaptive => "synshield, `--mode adaptive` under flood (rate counted, cookie)",
        }
    }

    fn expected_action(self) -> u32 {
        if self == Subject::Drop { XDP_DROP } else { XDP_TX }
    }
}

/// A SYN to measure with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// IPv4 SYN without options (54 bytes), what the kernel-helper variant handles.
    Bare,
    /// The bare SYN padded to Ethernet's 60-byte minimum, as a NIC delivers it.
    BarePadded,
    /// IPv4 SYN with a Linux client's options: MSS, SACK-permitted, timestamps, NOP, window
    /// scale (74 bytes).
    LinuxOptions,
    /// An ACK with a forged cookie for an unknown flow (an ACK flood's packet): dropped.
    ForgedAck,
    /// A data segment of a flow in the flow map (the data path's every frame): redirected with
    /// its metadata (dropped here, as no AF_XDP socket is bound: the redirect is the last step).
    KnownFlow,
}

impl Frame {
    fn label(self) -> &'static str {
        match self {
            Frame::Bare => "IPv4 SYN, no options (54 B)",
            Frame::BarePadded => "IPv4 SYN, no options, padded (60 B)",
            Frame::LinuxOptions => "IPv4 SYN, MSS SACK TS WS (74 B)",
            Frame::ForgedAck => "IPv4 ACK, forged cookie (54 B)",
            Frame::KnownFlow => "IPv4 ACK of a known flow (54 B)",
        }
    }

    /// The frame's bytes.
    #[must_use]
    pub fn bytes(self) -> Vec<u8> {
        let options: &[u8] = match self {
            Frame::Bare => &[],
            Frame::BarePadded => {
                let mut f = ipv4_syn([198, 18, 0, 1], [198, 18, 0, 2], 40000, PORT, &[]);
                f.resize(60, 0);
                return f;
            }
            Frame::ForgedAck => {
                return ipv4_segment([198, 18, 0, 1], [198, 18, 0, 2], 40000, PORT, 0x10, &[]);
            }
            Frame::KnownFlow => {
                let (src, dst, sport) = KNOWN_FLOW;
                return ipv4_segment(src, dst, sport, PORT, 0x10, &[]);
            }
            Frame::LinuxOptions => {
                &[2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 1, 0, 0, 0, 0, 0, 0, 1, 3, 3, 7]
            }
        };
        ipv4_syn([198, 18, 0, 1], [198, 18, 0, 2], 40000, PORT, options)
    }
}

/// Client address, server address and client port of [`Frame::KnownFlow`], whose entry the
/// benchmark puts into the flow map.
const KNOWN_FLOW: ([u8; 4], [u8; 4], u16) = ([198, 18, 0, 3], [198, 18, 0, 2], 40001);

/// Puts [`Frame::KnownFlow`]'s flow into the object's flow map.
fn insert_known_flow(ebpf: &mut Ebpf) -> Result<(), BenchError> {
    let (src, dst, sport) = KNOWN_FLOW;
    let map = ebpf
        .map_mut(tcp_common::maps::FLOWS)
        .ok_or_else(|| BenchError::Unexpected("the XDP object has no flow map".into()))?;
    let mut flows: aya::maps::HashMap<_, FlowKey, FlowValue> = aya::maps::HashMap::try_from(map)
        .map_err(|e| BenchError::Unexpected(format!("flow map: {e}")))?;
    flows
        .insert(FlowKey::v4(src, dst, sport, PORT), FlowValue::default(), 0)
        .map_err(|e| BenchError::Unexpected(format!("flow map: {e}")))
}

/// An Ethernet + IPv4 + TCP SYN with valid checksums.
#[must_use]
pub fn ipv4_syn(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, options: &[u8]) -> Vec<u8> {
    ipv4_segment(src, dst, sport, dport, 0x02, options)
}

/// An Ethernet + IPv4 + TCP segment with TCP flags `flags` (ack number 0xdead_beef when ACK is
/// set) and valid checksums.
#[must_use]
pub fn ipv4_segment(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    flags: u8,
    options: &[u8],
) -> Vec<u8> {
    let tcp_len = 20 + options.len();
    let total = u16::try_from(20 + tcp_len).expect("small frame");
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let ip = f.len();
    f.extend_from_slice(&[0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0]);
    f[ip + 2..ip + 4].copy_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    let c = sum_bytes(&f[ip..ip + 20]).checksum();
    f[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
    let tcp = f.len();
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    let ack: u32 = if flags & 0x10 != 0 { 0xdead_beef } else { 0 };
    f.extend_from_slice(&ack.to_be_bytes());
    let doff = u8::try_from(tcp_len / 4).expect("at most 15 words");
    f.extend_from_slice(&[doff << 4, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
    f.extend_from_slice(options);
    let len = u16::try_from(tcp_len).expect("small");
    let c = sum_bytes(&f[ip + 12..ip + 20]).add16(6).add16(len).add_sum(sum_bytes(&f[tcp..]));
    f[tcp + 16..tcp + 18].copy_from_slice(&c.checksum().to_be_bytes());
    f
}

/// Instructions the verifier processed to accept the synshield program of `object` (its
/// verification cost, which the 40-slot option parser and the dissector instances drive).
pub fn verified_instructions(object: &[u8]) -> Result<Option<u32>, BenchError> {
    let mut ebpf = loader::load(object)?;
    let p = program(&mut ebpf, tcp_common::XDP_PROGRAM)?;
    p.load().map_err(|source| BenchError::Program { what: "loading synshield".into(), source })?;
    let info =
        p.info().map_err(|source| BenchError::Program { what: "program info".into(), source })?;
    Ok(info.verified_instruction_count())
}

/// One measurement row.
#[derive(Clone, Debug)]
pub struct Row {
    pub subject: Subject,
    pub frame: Frame,
    /// Median over the rounds of the kernel's average per run.
    pub ns_per_syn: Duration,
    /// Minimum over the rounds.
    pub min_ns_per_syn: Duration,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{what}: {source}")]
    Program { what: String, source: ProgramError },
    #[error("{0}")]
    Unexpected(String),
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp, BenchError> {
    let p: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or_else(|| BenchError::Unexpected(format!("the XDP object has no program {name}")))?
        .try_into()
        .map_err(|source| BenchError::Program { what: format!("{name} is not XDP"), source })?;
    Ok(p)
}

/// The loaded objects: ours (as `serve` configures it by default, with TIME-WAIT marked, in
/// adaptive mode), and the baseline build if any.
struct Loaded {
    ours: Ebpf,
    marked: Ebpf,
    adaptive: Ebpf,
    base: Option<Ebpf>,
}

impl Loaded {
    /// Loads the objects, writes their maps and loads their programs.
    fn new(object: &[u8], baseline: Option<&[u8]>) -> Result<Loaded, BenchError> {
        let mut ports = PortSet::EMPTY;
        ports.insert(PORT);
        let keeper = secrets::SecretKeeper::new(
            secrets::SecretsSchedule::default(),
            secrets::monotonic_secs(),
        )
        .map_err(|e| BenchError::Unexpected(format!("cookie keys: {e}")))?;
        let config = Config { ports, secrets: keeper.secrets(), ..Config::EMPTY };
        let mut marked = config;
        marked.flags |= tcp_common::ConfigFlags::TIME_WAIT_MARKED.0;
        let mut flooded = marked;
        flooded.syn_mode = tcp_common::SynMode::Adaptive as u8;
        flooded.syn_window_limit = 0;
        let mut loaded = Loaded {
            ours: loader::load(object)?,
            marked: loader::load(object)?,
            adaptive: loader::load(object)?,
            base: baseline.map(loader::load).transpose()?,
        };
        let loading = |subject: Subject| {
            move |source| BenchError::Program {
                what: format!("loading {}", subject.program()),
                source,
            }
        };
        write_maps(&mut loaded.ours, &config)?;
        for subject in [Subject::Drop, Subject::KernelCookie, Subject::Synshield] {
            program(&mut loaded.ours, subject.program())?.load().map_err(loading(subject))?;
        }
        write_maps(&mut loaded.marked, &marked)?;
        loaded.pick(Subject::Marked)?.load().map_err(loading(Subject::Marked))?;
        write_maps(&mut loaded.adaptive, &flooded)?;
        loader::write_half_open_room(&mut loaded.adaptive, 0, true)?;
        loaded.pick(Subject::Adaptive)?.load().map_err(loading(Subject::Adaptive))?;
        if let Some(base) = &mut loaded.base {
            write_maps(base, &config)?;
            let p = program(base, Subject::Baseline.program())?;
            p.load().map_err(loading(Subject::Baseline))?;
        }
        Ok(loaded)
    }

    /// The program measured for `subject`.
    fn pick(&mut self, subject: Subject) -> Result<&mut Xdp, BenchError> {
        match (subject, self.base.as_mut()) {
            (Subject::Baseline, Some(b)) => program(b, subject.program()),
            (Subject::Marked, _) => program(&mut self.marked, subject.program()),
            (Subject::Adaptive, _) => program(&mut self.adaptive, subject.program()),
            _ => program(&mut self.ours, subject.program()),
        }
    }
}

/// Loads the object and its three programs, then measures each subject on each frame
/// (`rounds` times, `repeat` runs each, interleaved so that drift hits all alike). With a
/// `baseline` object, its synshield program is measured in the same rounds.
pub fn run(
    object: &[u8],
    baseline: Option<&[u8]>,
    repeat: u32,
    rounds: usize,
) -> Result<Vec<Row>, BenchError> {
    pin_to_one_cpu();
    let mut loaded = Loaded::new(object, baseline)?;
    let mut cases = vec![
        (Subject::Drop, Frame::Bare),
        (Subject::KernelCookie, Frame::Bare),
        (Subject::Synshield, Frame::Bare),
        (Subject::Synshield, Frame::BarePadded),
        (Subject::Synshield, Frame::LinuxOptions),
        (Subject::Synshield, Frame::ForgedAck),
        (Subject::Synshield, Frame::KnownFlow),
        (Subject::Marked, Frame::Bare),
        (Subject::Adaptive, Frame::Bare),
        (Subject::Adaptive, Frame::LinuxOptions),
    ];
    if loaded.base.is_some() {
        for frame in [
            Frame::Bare,
            Frame::BarePadded,
            Frame::LinuxOptions,
            Frame::ForgedAck,
            Frame::KnownFlow,
        ] {
            cases.push((Subject::Baseline, frame));
        }
    }
    for &(subject, frame) in &cases {
        let p = loaded.pick(subject)?;
        // One plain run first: the program must really answer (or drop) this SYN.
        let data = frame.bytes();
        let mut out = vec![0u8; 256];
        let r = p
            .test_run(TestRunOptions {
                data_in: Some(&data),
                data_out: Some(&mut out),
                ..TestRunOptions::new()
            })
            .map_err(|source| BenchError::Program { what: "test run".into(), source })?;
        let expected = if matches!(frame, Frame::ForgedAck | Frame::KnownFlow) {
            XDP_DROP
        } else {
            subject.expected_action()
        };
        if r.return_value != expected {
            return Err(BenchError::Unexpected(format!(
                "{} returned action {} on {:?}, expected {}",
                subject.program(),
                r.return_value,
                frame,
                expected
            )));
        }
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    let per_round = (repeat / u32::try_from(rounds.max(1)).unwrap_or(1)).max(1);
    for _ in 0..rounds {
        for (i, (subject, frame)) in cases.iter().enumerate() {
            let p = loaded.pick(*subject)?;
            let data = frame.bytes();
            let mut total = Duration::ZERO;
            for _ in 0..per_round {
                let r = p
                    .test_run(TestRunOptions { data_in: Some(&data), ..TestRunOptions::new() })
                    .map_err(|source| BenchError::Program {
                        what: format!("test run of {}", subject.program()),
                        source,
                    })?;
                total += r.duration;
            }
            samples[i].push(total / per_round);
        }
    }
    Ok(cases
        .iter()
        .zip(samples)
        .map(|((subject, frame), mut s)| {
            s.sort();
            Row {
                subject: *subject,
                frame: *frame,
                ns_per_syn: s[s.len() / 2],
                min_ns_per_syn: s[0],
            }
        })
        .collect())
}

/// Writes the configuration, the shield's address (the frames' destination) and the known
/// flow into a loaded object's maps.
fn write_maps(ebpf: &mut Ebpf, config: &Config) -> Result<(), BenchError> {
    write_config_any_layout(ebpf, config)?;
    // A baseline build from before the local-address map has none to write.
    if ebpf.map(tcp_common::maps::LOCAL_ADDRS).is_some() {
        let local = loader::local_addrs(&[std::net::IpAddr::from([198, 18, 0, 2])], &[])?;
        loader::write_local_addrs(ebpf, &local)?;
    }
    insert_known_flow(ebpf)
}

/// `Config` as it was before the adaptive-mode fields (the last four bytes then were padding):
/// what a baseline build from before them takes.
const CONFIG_BEFORE_ADAPTIVE: usize = 8248;

/// Writes the configuration into `ebpf`, or, for a baseline build from before the adaptive
/// fields, its first [`CONFIG_BEFORE_ADAPTIVE`] bytes (everything that build reads).
fn write_config_any_layout(ebpf: &mut Ebpf, config: &Config) -> Result<(), BenchError> {
    let map = ebpf
        .map_mut(tcp_common::maps::CONFIG)
        .ok_or_else(|| BenchError::Unexpected("the XDP object has no config map".into()))?;
    let size = match &*map {
        aya::maps::Map::Array(d) => d.info().map(|i| i.value_size()).unwrap_or_default(),
        _ => 0,
    };
    if size as usize != CONFIG_BEFORE_ADAPTIVE {
        return Ok(loader::write_config(ebpf, config)?);
    }
    // SAFETY: `Config` is plain integers without padding; its first bytes are the old layout.
    let bytes: [u8; CONFIG_BEFORE_ADAPTIVE] = unsafe {
        std::ptr::from_ref(config).cast::<[u8; CONFIG_BEFORE_ADAPTIVE]>().read_unaligned()
    };
    let mut array: aya::maps::Array<_, [u8; CONFIG_BEFORE_ADAPTIVE]> =
        aya::maps::Array::try_from(map).map_err(|e| BenchError::Unexpected(e.to_string()))?;
    array.set(0, bytes, 0).map_err(|e| BenchError::Unexpected(e.to_string()))
}

/// Keeps the measuring thread on the CPU it runs on, so that every run sees the same caches.
fn pin_to_one_cpu() {
    // SAFETY: sched_getcpu has no preconditions; the set is a plain bit set on the stack.
    unsafe {
        let Ok(cpu) = usize::try_from(libc::sched_getcpu()) else { return };
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw const set);
    }
}

/// The rows as a Markdown section.
#[must_use]
pub fn markdown(rows: &[Row], repeat: u32, rounds: usize) -> String {
    let mut s = String::from("## XDP program per SYN (BPF_PROG_TEST_RUN)\n\n");
    let _ = writeln!(
        s,
        "{repeat} runs of each program, each on a fresh copy of the SYN (one run per \
         `BPF_PROG_TEST_RUN` call, timed by the kernel), in {rounds} interleaved rounds: the \
         median and the minimum of the rounds' means. The SYN goes to a protected port. Lower is \
         better.\n"
    );
    s.push_str(
        "| program | frame | ns per frame (median) | ns per frame (min) |\n|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            r.subject.label(),
            r.frame.label(),
            r.ns_per_syn.as_nanos(),
            r.min_ns_per_syn.as_nanos()
        );
    }
    let find = |sub: Subject, f: Frame| rows.iter().find(|r| r.subject == sub && r.frame == f);
    if let (Some(ours), Some(kernel), Some(drop)) = (
        find(Subject::Synshield, Frame::Bare),
        find(Subject::KernelCookie, Frame::Bare),
        find(Subject::Drop, Frame::Bare),
    ) {
        let ns = |d: Duration| d.as_nanos();
        let _ = write!(
            s,
            "\nOn the bare SYN, synshield costs {} ns (minimum {} ns) against the kernel helper's \
             {} ns (minimum {} ns); above XDP_DROP's minimum: {} ns against {} ns. By the \
             minimum, the least disturbed measure on a shared machine: {}.\n",
            ns(ours.ns_per_syn),
            ns(ours.min_ns_per_syn),
            ns(kernel.ns_per_syn),
            ns(kernel.min_ns_per_syn),
            ns(ours.min_ns_per_syn.saturating_sub(drop.min_ns_per_syn)),
            ns(kernel.min_ns_per_syn.saturating_sub(drop.min_ns_per_syn)),
            if ours.min_ns_per_syn <= kernel.min_ns_per_syn {
                "no more than the kernel-helper variant, as the goal asks"
            } else {
                "**more than the kernel-helper variant** (the goal is no more)"
            }
        );
    }
    s
}
