//! The wire layer as built for XDP and as built for the host agree.
//!
//! The object's dissector probe (`tcp_common::testing::DISSECT_PROBE_PROGRAM`) runs the shared
//! frame dissector over packet memory and the SYN path's option reader (Linux fast path,
//! `bpf_xdp_load_bytes`, the parser as a global BPF function) under `BPF_PROG_TEST_RUN`, and
//! writes what it found to a map; `tcp_common::testing::host_report` makes the same report
//! with the host's instances (a slice, the parser with SACK blocks). Frames: valid ones built
//! with etherparse (VLAN tags, IPv4 with and without options, IPv6 with and without extension
//! headers, TCP flags, options of every kind, payload, Ethernet padding), then mutated: any
//! byte, the header fields that steer the dissector, lengths, option bytes, truncation and
//! extension, with the IPv4 header checksum fixed up half the time so that the paths behind
//! it are reached (the generator is tests/xdp_frames, shared with xdp_adversarial.rs).
//! `DIFFERENTIAL_CASES` sets the number of frames (default 10,000).
#![cfg(feature = "root-tests")]
#![allow(clippy::unwrap_used, reason = "a test that fails should panic with a stack trace")]

mod xdp_frames;

use std::cell::RefCell;
use std::collections::BTreeMap;

use aya::Ebpf;
use aya::maps::Array;
use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use tcp_common::testing::{
    DISSECT_PROBE_PROGRAM, DissectReport, OUTCOME_TCP, REPORT_MAP, host_report,
};
use tcp_common::{Config, Counter, PortSet};
use tcp_user::loader;
use xdp_frames::{PROTECTED, frames};

fn config() -> Config {
    let mut ports = PortSet::EMPTY;
    for p in PROTECTED {
        ports.insert(p);
    }
    Config { ports, ..Config::EMPTY }
}

/// The dissector probe, loaded once.
struct Probe {
    ebpf: Ebpf,
}

impl Probe {
    fn new(cfg: &Config) -> Probe {
        let mut ebpf = loader::load(loader::XDP_OBJECT).unwrap();
        loader::write_config(&mut ebpf, cfg).unwrap();
        let prog: &mut Xdp = ebpf.program_mut(DISSECT_PROBE_PROGRAM).unwrap().try_into().unwrap();
        prog.load().expect("the verifier accepts the dissector probe");
        Probe { ebpf }
    }

    /// The XDP instances' report on `frame`, or `None` if `BPF_PROG_TEST_RUN` refuses frames
    /// that short (below an Ethernet header).
    fn report(&mut self, frame: &[u8]) -> Option<DissectReport> {
        {
            let mut map: Array<_, DissectReport> =
                Array::try_from(self.ebpf.map_mut(REPORT_MAP).unwrap()).unwrap();
            map.set(0, DissectReport::default(), 0).unwrap();
        }
        let prog: &mut Xdp =
            self.ebpf.program_mut(DISSECT_PROBE_PROGRAM).unwrap().try_into().unwrap();
        let r = prog.test_run(TestRunOptions { data_in: Some(frame), ..TestRunOptions::new() });
        if frame.len() < 14 {
            assert!(r.is_err(), "the kernel runs XDP on frames of 14 bytes and more only");
            return None;
        }
        assert_eq!(r.unwrap().return_value, 2, "the probe passes every frame");
        let map: Array<_, DissectReport> =
            Array::try_from(self.ebpf.map(REPORT_MAP).unwrap()).unwrap();
        Some(map.get(&0, 0).unwrap())
    }
}

fn outcome_name(r: &DissectReport) -> String {
    if r.outcome == OUTCOME_TCP {
        return format!("tcp (options status {})", r.options_status);
    }
    Counter::ALL
        .iter()
        .find(|c| **c as u32 == r.error)
        .map_or_else(|| format!("outcome {}", r.outcome), |c| c.name().to_owned())
}

#[test]
fn xdp_and_host_instances_agree_on_random_and_mutated_frames() {
    let cfg = config();
    let probe = RefCell::new(Probe::new(&cfg));
    let cases =
        std::env::var("DIFFERENTIAL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let seen: RefCell<BTreeMap<String, u32>> = RefCell::default();
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&frames(), |frame| {
        let host = host_report(&frame, &cfg.ports);
        let xdp = probe.borrow_mut().report(&frame);
        // Below 14 bytes the kernel does not run XDP; the host refuses such a frame.
        let truncated = DissectReport::refused(tcp_common::wire::FrameError::Truncated);
        prop_assert_eq!(xdp.unwrap_or(truncated), host, "frame {:02x?}", frame);
        *seen.borrow_mut().entry(outcome_name(&host)).or_default() += 1;
        Ok(())
    });
    let seen = seen.into_inner();
    eprintln!("{cases} frames; outcomes (the last case counted once per shrink step): {seen:#?}");
    result.unwrap();
    // The generator reaches the interesting paths: segments with good and bad options, and
    // every refusal the dissector has.
    for must in [
        "tcp (options status 0)",
        "tcp (options status 1)",
        Counter::PassNotIp.name(),
        Counter::PassNotTcp.name(),
        Counter::PassOtherPort.name(),
        Counter::PassNoTcpHeader.name(),
        Counter::DropTruncated.name(),
        Counter::DropIpOptions.name(),
        Counter::DropIpv6ExtHeader.name(),
        Counter::DropIpFragment.name(),
        Counter::DropBadChecksum.name(),
        Counter::DropBadTcpHeader.name(),
    ] {
        assert!(seen.contains_key(must), "no frame reached {must}: {seen:#?}");
    }
}
