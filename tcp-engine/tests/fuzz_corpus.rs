//! Replays the fuzz corpus (`fuzz/corpus/parse_segment/`) through the parser, plus a bounded
//! number of seeded mutations of it: no panic, and what parses round-trips. This is what CI
//! runs, since cargo-fuzz needs nightly.

mod common;

use std::path::Path;

use common::Rng;
use tcp_engine::fuzzing::parse_segment;

const MUTATIONS: usize = 20_000;

fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse_segment");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus directory")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).expect("corpus file")).collect()
}

#[test]
fn corpus_replays_without_panic() {
    let corpus = corpus();
    assert!(corpus.len() >= 30, "corpus has {} files", corpus.len());
    for input in &corpus {
        parse_segment(input);
    }
}

#[expect(clippy::cast_possible_truncation, reason = "random bytes")]
fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let len = input.len() as u64;
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len) as usize;
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len) as usize;
                input[i] = rng.next_u64() as u8;
            }
            2 => input.truncate(rng.below(len + 1) as usize),
            3 => {
                let i = rng.below(len + 1) as usize;
                input.insert(i, rng.next_u64() as u8);
            }
            // Option area: the interesting bytes start at 20.
            4 if len > 21 => {
                let i = 20 + rng.below(len - 20) as usize;
                input[i] = [0, 1, 2, 3, 4, 5, 8, 10, 34, 40][rng.below(10) as usize];
            }
            // Data offset nibble.
            5 if len > 12 => input[12] = (rng.below(16) as u8) << 4 | (input[12] & 0x0f),
            _ => input.extend((0..rng.below(8)).map(|_| rng.next_u64() as u8)),
        }
    }
}

#[test]
fn seeded_mutations_never_panic() {
    let corpus = corpus();
    let mut rng = Rng::new(0x00f0_22ed);
    for _ in 0..MUTATIONS {
        let mut input = corpus[rng.pick(corpus.len())].clone();
        mutate(&mut rng, &mut input);
        parse_segment(&input);
    }
}
