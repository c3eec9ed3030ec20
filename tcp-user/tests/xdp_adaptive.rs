//! How the XDP program answers SYNs by mode (`tcp_common::adaptive`), under
//! `BPF_PROG_TEST_RUN`: stateful (to userspace with metadata kind SYN), cookies (`XDP_TX`),
//! adaptive (one or the other by this CPU's SYN rate, with hysteresis); and SYNs for tuples
//! the flow map holds (to userspace as FLOW: RFC 5961 section 4, retransmitted stateful SYNs).
//!
//! An AF_XDP socket on a lab veth fills the socket map, so redirects succeed (`BPF_PROG_TEST_RUN`
//! does not carry them out); the metadata comes back in front of the output frame. The test
//! thread is pinned to one CPU: the SYN rate is counted per CPU.
#![cfg(feature = "root-tests")]
#![allow(clippy::unwrap_used, reason = "a test that fails should panic with a stack trace")]

use std::net::IpAddr;
use std::os::fd::AsRawFd as _;
use std::time::Duration;

use aya::Ebpf;
use aya::maps::{HashMap, XskMap};
use aya::programs::{TestRun as _, TestRunOptions};
use tcp_common::adaptive::SynDefense;
use tcp_common::cookie::{CookieKey, CookieSecrets, TupleV4};
use tcp_common::{
    Config, ConfigFlags, Counter, FlowKey, FlowValue, PortSet, RxKind, RxMeta, SynMode, maps,
};
use tcp_user::bench::{PORT, ipv4_segment, ipv4_syn};
use tcp_user::lab::{Lab, SHIELD_IF};
use tcp_user::loader;
use tcp_user::xsk::{XskConfig, XskMode, XskSocket};

const XDP_DROP: u32 = 1;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;

const CLIENT: [u8; 4] = [198, 18, 0, 1];
const SHIELD: [u8; 4] = [198, 18, 0, 2];

/// The answer to one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// `XDP_TX`: a cookie SYN-ACK (or a RST).
    Tx,
    /// `XDP_REDIRECT` with metadata of this kind.
    Redirect(RxKind),
    /// `XDP_DROP`.
    Drop,
}

/// The program loaded with its own maps, an AF_XDP socket in the socket map for queue 0, and
/// the lab that holds the socket's interface.
struct Shield {
    ebpf: Ebpf,
    _socket: XskSocket,
    _lab: Lab,
}

fn config(mode: SynMode) -> Config {
    let mut ports = PortSet::EMPTY;
    ports.insert(PORT);
    let secrets = CookieSecrets {
        keys: [CookieKey { k0: 1, k1: 2 }, CookieKey { k0: 3, k1: 4 }],
        current: 0,
        counter: 77,
        ..CookieSecrets::default()
    };
    let mut c = Config { ports, secrets, ..Config::EMPTY };
    c.syn_mode = mode as u8;
    c.flags |= ConfigFlags::TIME_WAIT_MARKED.0;
    c
}

impl Shield {
    fn new(cfg: &Config) -> Shield {
        pin_to_one_cpu();
        let lab = Lab::new().unwrap();
        let mut ebpf = loader::load(loader::XDP_OBJECT).unwrap();
        loader::program(&mut ebpf).unwrap().load().expect("the verifier accepts the program");
        loader::write_config(&mut ebpf, cfg).unwrap();
        let local = loader::local_addrs(&[IpAddr::from(SHIELD)], &[]).unwrap();
        loader::write_local_addrs(&mut ebpf, &local).unwrap();
        let xsk = XskConfig { mode: XskMode::Copy, ..XskConfig::default() };
        let socket = lab.shield.enter(|| XskSocket::open(SHIELD_IF, 0, &xsk)).unwrap().unwrap();
        let mut xsks = XskMap::try_from(ebpf.map_mut(maps::XSKS).unwrap()).unwrap();
        xsks.set(0, socket.as_raw_fd(), 0).unwrap();
        Shield { ebpf, _socket: socket, _lab: lab }
    }

    fn set_config(&mut self, cfg: &Config) {
        loader::write_config(&mut self.ebpf, cfg).unwrap();
    }

    fn set_room(&mut self, room: bool) {
        loader::write_half_open_room(&mut self.ebpf, 0, room).unwrap();
    }

    /// Runs `frame`; the answer, and the metadata's flow if redirected.
    fn answer(&mut self, frame: &[u8]) -> (Answer, Option<FlowValue>) {
        let mut out = vec![0u8; 4096];
        let prog = loader::program(&mut self.ebpf).unwrap();
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::new()
            })
            .unwrap();
        out.truncate(r.data_size_out as usize);
        match r.return_value {
            XDP_TX => (Answer::Tx, None),
            XDP_DROP => (Answer::Drop, None),
            XDP_REDIRECT => {
                assert_eq!(out.len(), RxMeta::LEN + frame.len(), "metadata in front");
                let (kind, flow) = RxMeta::read(&out[..RxMeta::LEN]).expect("a valid tag");
                (Answer::Redirect(kind), Some(flow))
            }
            other => panic!("action {other}"),
        }
    }

    fn counters(&self) -> tcp_user::stats::CounterSnapshot {
        loader::read_counters(&self.ebpf).unwrap()
    }

    fn defense(&self) -> SynDefense {
        loader::read_syn_defense(&self.ebpf).unwrap()
    }

    fn insert_flow(&mut self, sport: u16, value: FlowValue) {
        let mut flows: HashMap<_, FlowKey, FlowValue> =
            HashMap::try_from(self.ebpf.map_mut(maps::FLOWS).unwrap()).unwrap();
        flows.insert(FlowKey::v4(CLIENT, SHIELD, sport, PORT), value, 0).unwrap();
    }
}

/// Keeps the test thread on the CPU it runs on: `BPF_PROG_TEST_RUN` runs the program on the
/// caller's CPU, and the SYN rate is that CPU's.
fn pin_to_one_cpu() {
    // SAFETY: sched_getcpu has no preconditions; the set is a plain bit set on the stack.
    unsafe {
        let cpu = usize::try_from(libc::sched_getcpu()).unwrap();
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set), 0);
    }
}

/// Moves the test thread to `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: a plain bit set on the stack, for this thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set), 0);
        assert_eq!(usize::try_from(libc::sched_getcpu()).unwrap(), cpu);
    }
}

/// A SYN with a Linux client's options from `sport`.
fn syn(sport: u16) -> Vec<u8> {
    let options = [2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 9, 0, 0, 0, 0, 1, 3, 3, 7];
    ipv4_syn(CLIENT, SHIELD, sport, PORT, &options)
}

/// In stateful mode a SYN goes to userspace with metadata kind SYN, carrying what it offered;
/// with no room in the queue's half-open table it is dropped. In cookie mode it is answered
/// with `XDP_TX`. Adaptive mode with no room answers with cookies.
#[test]
fn stateful_mode_redirects_syns_and_cookie_mode_answers_them() {
    let mut shield = Shield::new(&config(SynMode::Stateful));
    let before = shield.counters();
    let (answer, _) = shield.answer(&syn(1000));
    assert_eq!(answer, Answer::Drop, "no room: userspace has not opened the queue yet");
    shield.set_room(true);
    let (answer, offer) = shield.answer(&syn(1001));
    assert_eq!(answer, Answer::Redirect(RxKind::Syn));
    let offer = offer.unwrap();
    assert_eq!(
        (offer.client_isn, offer.mss, offer.peer_wscale, offer.peer_window),
        (0x1234_5678, 1460, 7, 0xfaf0)
    );
    assert_eq!(offer.ts_recent, 9);
    assert_eq!(offer.flags, FlowValue::TIMESTAMPS | FlowValue::SACK);
    assert_eq!((offer.server_isn, offer.queue), (0, 0));
    let d = shield.counters().since(&before);
    assert_eq!((d.get(Counter::DropSynHalfOpenFull), d.get(Counter::RedirectSyn)), (1, 1), "{d:?}");

    shield.set_config(&config(SynMode::Cookies));
    assert_eq!(shield.answer(&syn(1002)).0, Answer::Tx);
    let mut adaptive = config(SynMode::Adaptive);
    adaptive.syn_window_limit = 1000;
    shield.set_config(&adaptive);
    assert_eq!(shield.answer(&syn(1003)).0, Answer::Redirect(RxKind::Syn));
    shield.set_room(false);
    assert_eq!(shield.answer(&syn(1004)).0, Answer::Tx, "adaptive without room: cookies");
    assert_eq!(shield.defense().to_cookies, 0, "no room is not a flood");
}

/// A SYN for a tuple the flow map holds goes to userspace as FLOW with the entry (RFC 5961
/// section 4 for an established connection, when userspace marks TIME-WAIT; a retransmitted
/// SYN for a half-open one), in every mode; a SYN for a TIME-WAIT tuple is answered as a new
/// one.
#[test]
fn syns_for_tuples_we_hold_go_to_userspace() {
    let mut shield = Shield::new(&config(SynMode::Cookies));
    let established = FlowValue { server_isn: 5, client_isn: 6, queue: 0, ..FlowValue::default() };
    let half_open = FlowValue { flags: FlowValue::HALF_OPEN, ..established };
    let time_wait = FlowValue { flags: FlowValue::TIME_WAIT, ..established };
    shield.insert_flow(2000, established);
    shield.insert_flow(2001, half_open);
    shield.insert_flow(2002, time_wait);
    for mode in [SynMode::Cookies, SynMode::Stateful, SynMode::Adaptive] {
        shield.set_config(&config(mode));
        shield.set_room(true);
        let before = shield.counters();
        assert_eq!(shield.answer(&syn(2000)), (Answer::Redirect(RxKind::Flow), Some(established)));
        assert_eq!(shield.answer(&syn(2001)), (Answer::Redirect(RxKind::Flow), Some(half_open)));
        let d = shield.counters().since(&before);
        assert_eq!(d.get(Counter::RedirectSynFlow), 2, "{mode}: {d:?}");
        let fresh =
            if mode == SynMode::Cookies { Answer::Tx } else { Answer::Redirect(RxKind::Syn) };
        assert_eq!(shield.answer(&syn(2002)).0, fresh, "{mode}: TIME-WAIT is answered anew");
        assert_eq!(shield.answer(&syn(2003)).0, fresh, "{mode}");
    }
    // A data path that does not mark TIME-WAIT: only half-open tuples take SYNs as FLOW; an
    // unmarked entry may be in TIME-WAIT, so its SYN is answered as a new one (a cookie: the
    // reopen handshake). In cookie mode there are no half-open entries: no lookup at all.
    let mut unmarked = config(SynMode::Stateful);
    unmarked.flags &= !ConfigFlags::TIME_WAIT_MARKED.0;
    shield.set_config(&unmarked);
    assert_eq!(shield.answer(&syn(2000)).0, Answer::Redirect(RxKind::Syn));
    assert_eq!(shield.answer(&syn(2001)), (Answer::Redirect(RxKind::Flow), Some(half_open)));
    assert_eq!(shield.answer(&syn(2002)).0, Answer::Redirect(RxKind::Syn));
    unmarked.syn_mode = SynMode::Cookies as u8;
    shield.set_config(&unmarked);
    for sport in [2000, 2001, 2002] {
        assert_eq!(shield.answer(&syn(sport)).0, Answer::Tx, "{sport}");
    }
}

/// Third ACKs of both kinds are accepted across a switch: a stateful handshake's (its entry
/// is HALF_OPEN: FLOW) and a cookie's (NEW_FLOW), whatever the mode now.
#[test]
fn third_acks_of_both_kinds_are_accepted_across_a_switch() {
    let mut shield = Shield::new(&config(SynMode::Stateful));
    shield.set_room(true);
    assert_eq!(shield.answer(&syn(3000)).0, Answer::Redirect(RxKind::Syn));
    // Userspace answers it statefully, with its own ISN, and records the half-open entry.
    let ours = FlowValue {
        server_isn: 0xabcd_0000,
        client_isn: 0x1234_5678,
        flags: FlowValue::HALF_OPEN,
        ..FlowValue::default()
    };
    shield.insert_flow(3000, ours);
    shield.set_config(&config(SynMode::Cookies));
    assert_eq!(shield.answer(&syn(3001)).0, Answer::Tx);
    let cfg = config(SynMode::Cookies);
    let cookie = |sport| {
        let t = TupleV4 { client: CLIENT, server: SHIELD, client_port: sport, server_port: PORT };
        cfg.secrets.make(&t, 0x1234_5678, 3).isn
    };
    for mode in [SynMode::Cookies, SynMode::Stateful] {
        shield.set_config(&config(mode));
        let stateful_ack = third_ack(3000, 0xabcd_0001);
        assert_eq!(
            shield.answer(&stateful_ack),
            (Answer::Redirect(RxKind::Flow), Some(ours)),
            "{mode}"
        );
        let sport = if mode == SynMode::Cookies { 3001 } else { 3002 };
        let (answer, flow) = shield.answer(&third_ack(sport, cookie(sport).wrapping_add(1)));
        assert_eq!(answer, Answer::Redirect(RxKind::NewFlow), "{mode}");
        assert_eq!(flow.unwrap().server_isn, cookie(sport));
    }
}

/// A bare ACK from `sport` with ack number `ack` (and `seq` the client ISN + 1).
fn third_ack(sport: u16, ack: u32) -> Vec<u8> {
    let mut f = ipv4_segment(CLIENT, SHIELD, sport, PORT, 0x10, &[]);
    let tcp = 14 + 20;
    f[tcp + 4..tcp + 8].copy_from_slice(&0x1234_5679u32.to_be_bytes());
    f[tcp + 8..tcp + 12].copy_from_slice(&ack.to_be_bytes());
    f[tcp + 16..tcp + 18].copy_from_slice(&[0, 0]);
    let sum = tcp_common::checksum::sum_bytes(&f[14 + 12..14 + 20])
        .add16(6)
        .add16(20)
        .add_sum(tcp_common::checksum::sum_bytes(&f[tcp..]));
    f[tcp + 16..tcp + 18].copy_from_slice(&sum.checksum().to_be_bytes());
    f
}

/// The kernel's jiffies (from /proc/timer_list, root only): the clock the XDP program counts
/// its windows in (`bpf_jiffies64`).
fn jiffies() -> u64 {
    let text = std::fs::read_to_string("/proc/timer_list").unwrap();
    text.lines().find_map(|l| l.strip_prefix("jiffies: ")?.trim().parse().ok()).unwrap()
}

/// The switch test's window shift: at least 100 ms of ticks (128 ms at `HZ=250`), long enough
/// that a burst of SYNs fits in one window on a busy machine.
fn shift() -> u8 {
    let tick = loader::kernel_tick_ns();
    (0..20).find(|s| tick << s >= 100_000_000).unwrap()
}

/// The switch test's limit per window, and calm windows.
const LIMIT: u32 = 20;
const CALM: u8 = 3;

/// Why a run of the switch test must be repeated: the machine was too slow for the windows.
#[derive(Debug)]
struct Late;

/// The mode switches to cookies as soon as a window's SYNs pass the limit, stays there while
/// windows carry between half the limit and the limit (hysteresis), and goes back to stateful
/// after three calm windows; each switch is counted and readable.
#[test]
fn adaptive_mode_switches_at_the_threshold_and_back_with_hysteresis() {
    let mut cfg = config(SynMode::Adaptive);
    (cfg.syn_window_shift, cfg.syn_window_limit, cfg.syn_calm_windows) = (shift(), LIMIT, CALM);
    for attempt in 1..=3 {
        let mut shield = Shield::new(&cfg);
        shield.set_room(true);
        match switch_sequence(&mut shield) {
            Ok(()) => return,
            Err(Late) => eprintln!("attempt {attempt}: a window passed before its SYNs were sent"),
        }
    }
    panic!("the machine was too busy for 100 ms windows three times");
}

fn switch_sequence(shield: &mut Shield) -> Result<(), Late> {
    let shift = shift();
    let mut sport = 10_000;
    let mut window = next_window(jiffies() >> shift, shift);
    // `n` SYNs in window `w` (which must not have ended meanwhile); their answers.
    let mut burst = |shield: &mut Shield, w: u64, n: u32| -> Result<Vec<Answer>, Late> {
        let answers = (0..n)
            .map(|_| {
                sport += 1;
                shield.answer(&syn(sport)).0
            })
            .collect();
        if jiffies() >> shift == w { Ok(answers) } else { Err(Late) }
    };
    let stateful = Answer::Redirect(RxKind::Syn);
    // Below the limit: stateful.
    let a = burst(shield, window, 15)?;
    assert!(a.iter().all(|x| *x == stateful), "{a:?}");
    let d = shield.defense();
    assert_eq!((d.cpus_on_cookies, d.to_cookies, d.to_stateful), (0, 0, 0), "{d:?}");
    // Past the limit: the 21st SYN of the window is answered with a cookie, and the rest.
    window = next_window(window, shift);
    let a = burst(shield, window, 30)?;
    assert!(
        a[..20].iter().all(|x| *x == stateful) && a[20..].iter().all(|x| *x == Answer::Tx),
        "{a:?}"
    );
    let d = shield.defense();
    assert_eq!((d.cpus_on_cookies, d.to_cookies, d.to_stateful), (1, 1, 0), "{d:?}");
    // Between half the limit and the limit: cookies stay (no flapping).
    for _ in 0..4 {
        window = next_window(window, shift);
        let a = burst(shield, window, 15)?;
        assert!(a.iter().all(|x| *x == Answer::Tx), "{a:?}");
    }
    // Calm windows: each judged when the next starts; back after three.
    for _ in 0..3 {
        window = next_window(window, shift);
        let a = burst(shield, window, 2)?;
        assert!(a.iter().all(|x| *x == Answer::Tx), "{a:?}");
    }
    window = next_window(window, shift);
    let a = burst(shield, window, 2)?;
    assert!(a.iter().all(|x| *x == stateful), "back to stateful: {a:?}");
    let d = shield.defense();
    assert_eq!((d.cpus_on_cookies, d.to_cookies, d.to_stateful), (0, 1, 1), "{d:?}");
    let c = shield.counters();
    assert_eq!(c.get(Counter::RedirectSyn), 15 + 20 + 2, "{c:?}");
    assert_eq!(c.get(Counter::TxSynAck), 10 + 4 * 15 + 3 * 2, "{c:?}");
    Ok(())
}

/// Sleeps until window `w + 1` (of `2^shift` jiffies) has started and returns it.
fn next_window(w: u64, shift: u8) -> u64 {
    let start = (w + 1) << shift;
    let tick = Duration::from_nanos(loader::kernel_tick_ns());
    loop {
        let now = jiffies();
        if now >= start {
            return w + 1;
        }
        std::thread::sleep(tick * u32::try_from(start - now).unwrap_or(1));
    }
}

/// A flood seen by one CPU makes every CPU answer with cookies (as Linux's listener switches
/// as a whole), until the flooded CPU's calm windows would have ended it; then stateful again.
#[test]
fn a_flood_on_one_cpu_switches_every_cpu_to_cookies_for_as_long_as_it_lasts() {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if cpus < 2 {
        eprintln!("one CPU: nothing to switch on another");
        return;
    }
    let mut cfg = config(SynMode::Adaptive);
    (cfg.syn_window_shift, cfg.syn_window_limit, cfg.syn_calm_windows) = (shift(), LIMIT, CALM);
    let stateful = Answer::Redirect(RxKind::Syn);
    for attempt in 1..=3 {
        let mut shield = Shield::new(&cfg);
        shield.set_room(true);
        let shift = shift();
        let (a, b) = (0, 1);
        pin_to(b);
        assert_eq!(shield.answer(&syn(20_000)).0, stateful, "peace on CPU {b}");
        // CPU a passes its limit within one window; CPU b, a moment later, gets a cookie.
        pin_to(a);
        let window = next_window(jiffies() >> shift, shift);
        let flood: Vec<Answer> = (0..=LIMIT)
            .map(|i| shield.answer(&syn(20_001 + u16::try_from(i).unwrap())).0)
            .collect();
        pin_to(b);
        let on_b = shield.answer(&syn(30_000)).0;
        if jiffies() >> shift > window + u64::from(CALM) {
            eprintln!("attempt {attempt}: the machine was too slow for the hold's windows");
            continue;
        }
        assert_eq!(flood.last(), Some(&Answer::Tx), "CPU {a} flooded: {flood:?}");
        assert_eq!(on_b, Answer::Tx, "CPU {b} answers with a cookie during CPU {a}'s flood");
        let d = shield.defense();
        assert_eq!((d.cpus_on_cookies, d.to_cookies), (1, 1), "only CPU {a} saw it: {d:?}");
        // Past the hold (CALM + 1 windows after the flood's last): stateful on b again.
        let mut w = window;
        for _ in 0..=CALM {
            w = next_window(w, shift);
        }
        assert_eq!(shield.answer(&syn(30_001)).0, stateful, "the hold ended with the flood");
        return;
    }
    panic!("the machine was too busy for 100 ms windows three times");
}
