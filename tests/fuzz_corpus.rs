//! CI smoke pass of the fuzz targets on the stable toolchain (issue 10):
//! every seed in `fuzz/corpus/<target>/` and every saved crash in
//! `fuzz/regressions/<target>/` goes through the same target body the
//! libFuzzer binaries run (`fuzz/src/lib.rs`, included by path), followed by
//! a bounded, deterministic set of mutations of each seed (bit flips, byte
//! sets, truncations, splices). A panic fails the test; the real fuzzing is
//! `fuzz/run`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod targets;

use std::path::Path;

/// A tiny xorshift PRNG: deterministic, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.path().display().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            1 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] = [0, 0xff, 0x7f, 0x80, b'"', b'*', b'/', b'%'][rng.below(8)];
            }
            2 => d.truncate(rng.below(d.len() + 1)),
            3 if !other.is_empty() => {
                let at = rng.below(d.len() + 1);
                let from = rng.below(other.len());
                let len = rng.below(other.len() - from + 1).min(256);
                d.splice(at..at, other[from..from + len].iter().copied());
            }
            4 if !d.is_empty() => {
                let i = rng.below(d.len());
                let b = d[i];
                d.insert(i, b);
            }
            _ if !d.is_empty() => {
                let i = rng.below(d.len());
                d.remove(i);
            }
            _ => d.push(rng.below(256) as u8),
        }
    }
    d
}

#[test]
fn seeds_regressions_and_mutations_never_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let per_seed: usize = std::env::var("WARD_FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut total = 0;
    for (name, target) in targets::TARGETS {
        let seeds = inputs(&root.join("corpus").join(name));
        assert!(!seeds.is_empty(), "target {name} has no seed corpus");
        let regressions = inputs(&root.join("regressions").join(name));
        for (path, data) in seeds.iter().chain(&regressions) {
            let r = std::panic::catch_unwind(|| target(data));
            assert!(r.is_ok(), "{name} panicked on {path}");
            total += 1;
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
        for (i, (path, seed)) in seeds.iter().enumerate() {
            let other = &seeds[(i + 1) % seeds.len()].1;
            for n in 0..per_seed {
                let data = mutate(&mut rng, seed, other);
                let r = std::panic::catch_unwind(|| target(&data));
                assert!(
                    r.is_ok(),
                    "{name} panicked on mutation {n} of {path}: {:02x?}",
                    data
                );
                total += 1;
            }
        }
        eprintln!(
            "{name}: {} seeds, {} regressions",
            seeds.len(),
            regressions.len()
        );
    }
    eprintln!("fuzz smoke: {total} inputs");
}
