//! Two engines over a seeded network that drops, duplicates, reorders and delays: every
//! byte arrives once and in order both ways, and both ends finish the close.

mod common;

use common::{Impairments, SimNet, stream};
use proptest::prelude::*;
use tcp_engine::{CloseReason, Config, CongestionAlgorithm, Duration, Instant, State};

fn check(config: Config, net: Impairments, seed: u64, a_len: usize, b_len: usize) {
    let to_server = stream(seed, a_len);
    let to_client = stream(!seed, b_len);
    let mut sim = SimNet::new(config, net, seed);
    let out = sim.run(to_server.clone(), to_client.clone(), Instant::from_secs(3_600));
    assert!(
        out.server_received == to_server,
        "server got {} of {} bytes: {out:?}",
        out.server_received.len(),
        to_server.len()
    );
    assert!(
        out.client_received == to_client,
        "client got {} of {} bytes: {out:?}",
        out.client_received.len(),
        to_client.len()
    );
    // Both ends closed normally: one through TIME-WAIT, the other through LAST-ACK (or
    // both through CLOSING/TIME-WAIT on a simultaneous close).
    assert_eq!(out.client_closed, Some(CloseReason::Normal), "{out:?}");
    assert_eq!(out.server_closed, Some(CloseReason::Normal), "{out:?}");
    for last in [out.client_last_state, out.server_last_state] {
        assert!(
            matches!(last, Some(State::TimeWait | State::LastAck | State::Closing)),
            "last state {last:?}"
        );
    }
    assert!(sim.client.is_empty() && sim.server.is_empty());
}

fn lossy() -> Impairments {
    Impairments {
        drop: 0.05,
        duplicate: 0.03,
        reorder: 0.1,
        min_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(25),
    }
}

#[test]
fn perfect_network_moves_a_megabyte_each_way() {
    check(Config::default(), Impairments::PERFECT, 1, 1 << 20, 1 << 20);
}

#[test]
fn lossy_network_with_newreno_and_no_options() {
    let config = Config {
        congestion: CongestionAlgorithm::NewReno,
        sack: false,
        timestamps: false,
        window_scale: 0,
        ..Config::default()
    };
    check(config, lossy(), 7, 300_000, 200_000);
}

#[test]
fn lossy_network_with_small_buffers_and_nagle_off() {
    let config = Config {
        send_buffer_size: 3000,
        recv_buffer_size: 2000,
        nagle: false,
        ..Config::default()
    };
    check(config, lossy(), 11, 50_000, 70_000);
}

#[test]
fn regression_simultaneous_close_after_timeout() {
    // Found by the property test: both ends stuck in CLOSING because pure ACKs carried a
    // rewound SND.NXT.
    let config = Config {
        sack: false,
        timestamps: false,
        congestion: CongestionAlgorithm::NewReno,
        ..Config::default()
    };
    let net = Impairments {
        drop: 0.087,
        duplicate: 0.098,
        reorder: 0.093,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(40),
    };
    check(config, net, 258_713_875_445_606_161, 21_901, 35_041);
}

#[test]
fn empty_streams_just_handshake_and_close() {
    check(Config::default(), lossy(), 3, 0, 0);
}

/// 24 cases by default (a few seconds in debug); `SELF_PLAY_CASES=1000` for a soak.
fn cases() -> u32 {
    std::env::var("SELF_PLAY_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn every_byte_arrives_once_in_order_both_ways(
        seed: u64,
        a_len in 0usize..150_000,
        b_len in 0usize..150_000,
        drop in 0.0f64..0.15,
        duplicate in 0.0f64..0.1,
        reorder in 0.0f64..0.3,
        sack: bool,
        timestamps: bool,
        cubic: bool,
    ) {
        let config = Config {
            sack,
            timestamps,
            congestion: if cubic { CongestionAlgorithm::Cubic } else { CongestionAlgorithm::NewReno },
            ..Config::default()
        };
        let net = Impairments {
            drop,
            duplicate,
            reorder,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(40),
        };
        check(config, net, seed, a_len, b_len);
    }
}
