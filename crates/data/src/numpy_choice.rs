//! NumPy's `np.random.default_rng(seed).choice(n, size, replace=False)`, reproduced exactly, so a
//! `dataset_size` subset holds the same samples, in the same order, as the Python seed's.
//!
//! Pieces (as in NumPy ≥ 1.17): `SeedSequence` turns the seed into PCG64's 128-bit state and
//! increment; PCG64 (XSL-RR output) draws 64-bit words, and 32-bit words from halves of them;
//! bounded integers use Lemire's multiply-and-reject method; `choice` without replacement uses
//! Floyd's algorithm then a Fisher-Yates shuffle of the picks, or a partial Fisher-Yates
//! shuffle of the whole range when a large fraction of a large population is drawn.

use std::collections::BTreeSet;

/// `numpy.random.SeedSequence(seed).generate_state(4, np.uint64)`.
fn seed_sequence_state(seed: u64) -> [u64; 4] {
    const POOL_SIZE: usize = 4;
    const INIT_A: u32 = 0x43b0_d7e5;
    const MULT_A: u32 = 0x931e_8875;
    const INIT_B: u32 = 0x8b51_f9dd;
    const MULT_B: u32 = 0x58f3_8ded;
    const MIX_MULT_L: u32 = 0xca01_f9dd;
    const MIX_MULT_R: u32 = 0x4973_f715;
    const XSHIFT: u32 = 16;

    // The seed as 32-bit words, lowest first; zero is one word.
    let entropy: Vec<u32> = if seed >> 32 == 0 {
        vec![seed as u32]
    } else {
        vec![seed as u32, (seed >> 32) as u32]
    };
    let mut hash_const = INIT_A;
    let mut hashmix = |value: u32| {
        let mut value = value ^ hash_const;
        hash_const = hash_const.wrapping_mul(MULT_A);
        value = value.wrapping_mul(hash_const);
        value ^ (value >> XSHIFT)
    };
    let mix = |x: u32, y: u32| {
        let result = MIX_MULT_L
            .wrapping_mul(x)
            .wrapping_sub(MIX_MULT_R.wrapping_mul(y));
        result ^ (result >> XSHIFT)
    };
    let mut pool = [0u32; POOL_SIZE];
    for (index, slot) in pool.iter_mut().enumerate() {
        *slot = hashmix(entropy.get(index).copied().unwrap_or(0));
    }
    for source in 0..POOL_SIZE {
        for destination in 0..POOL_SIZE {
            if source != destination {
                let hashed = hashmix(pool[source]);
                pool[destination] = mix(pool[destination], hashed);
            }
        }
    }
    // A u64 seed has at most two words, fewer than the pool: no extra entropy to mix in.

    let mut hash_const = INIT_B;
    let mut words = [0u32; 2 * POOL_SIZE];
    for (index, word) in words.iter_mut().enumerate() {
        let mut value = pool[index % POOL_SIZE] ^ hash_const;
        hash_const = hash_const.wrapping_mul(MULT_B);
        value = value.wrapping_mul(hash_const);
        *word = value ^ (value >> XSHIFT);
    }
    [0, 1, 2, 3].map(|i| u64::from(words[2 * i]) | (u64::from(words[2 * i + 1]) << 32))
}

/// NumPy's PCG64 bit generator.
struct Pcg64 {
    state: u128,
    increment: u128,
    /// Upper half of the last 64-bit word, served by the next 32-bit draw.
    pending_u32: Option<u32>,
}

const PCG_MULTIPLIER: u128 = (2_549_297_995_355_413_924u128 << 64) | 4_865_540_595_714_422_341;

impl Pcg64 {
    /// `np.random.PCG64(seed)`.
    fn new(seed: u64) -> Self {
        let words = seed_sequence_state(seed);
        let initial_state = (u128::from(words[0]) << 64) | u128::from(words[1]);
        let sequence = (u128::from(words[2]) << 64) | u128::from(words[3]);
        let mut generator = Pcg64 {
            state: 0,
            increment: (sequence << 1) | 1,
            pending_u32: None,
        };
        generator.step();
        generator.state = generator.state.wrapping_add(initial_state);
        generator.step();
        generator
    }

    fn step(&mut self) {
        self.state = self
            .state
            .wrapping_mul(PCG_MULTIPLIER)
            .wrapping_add(self.increment);
    }

    fn next_u64(&mut self) -> u64 {
        self.step();
        let high = (self.state >> 64) as u64;
        let low = self.state as u64;
        (high ^ low).rotate_right((high >> 58) as u32)
    }

    fn next_u32(&mut self) -> u32 {
        if let Some(value) = self.pending_u32.take() {
            return value;
        }
        let word = self.next_u64();
        self.pending_u32 = Some((word >> 32) as u32);
        word as u32
    }

    /// Uniform integer in `0..=max` (NumPy's `random_bounded_uint64` with Lemire rejection).
    fn bounded(&mut self, max: u64) -> u64 {
        if max == 0 {
            0
        } else if max < u64::from(u32::MAX) {
            let range = max as u32 + 1;
            let mut product = u64::from(self.next_u32()) * u64::from(range);
            if (product as u32) < range {
                let threshold = (u32::MAX - max as u32) % range;
                while (product as u32) < threshold {
                    product = u64::from(self.next_u32()) * u64::from(range);
                }
            }
            product >> 32
        } else if max == u64::from(u32::MAX) {
            u64::from(self.next_u32())
        } else if max == u64::MAX {
            self.next_u64()
        } else {
            let range = max + 1;
            let mut product = u128::from(self.next_u64()) * u128::from(range);
            if (product as u64) < range {
                let threshold = (u64::MAX - max) % range;
                while (product as u64) < threshold {
                    product = u128::from(self.next_u64()) * u128::from(range);
                }
            }
            (product >> 64) as u64
        }
    }

    /// Fisher-Yates over positions `len-1` down to `first`.
    fn shuffle_tail(&mut self, items: &mut [usize], first: usize) {
        for i in (first..items.len()).rev() {
            let j = self.bounded(i as u64) as usize;
            items.swap(i, j);
        }
    }
}

/// `np.random.default_rng(seed).choice(population, size, replace=False)` as indices, in NumPy's
/// order. Requires `size <= population`.
pub(crate) fn numpy_choice_without_replacement(
    seed: u64,
    population: usize,
    size: usize,
) -> Vec<usize> {
    assert!(size <= population, "cannot draw {size} of {population}");
    let mut generator = Pcg64::new(seed);
    // NumPy's heuristic (with shuffle=True): shuffle the whole range when drawing more than a
    // fiftieth of a population above 10 000, else Floyd's algorithm.
    if population > 10_000 && size > population / 50 {
        let mut indices: Vec<usize> = (0..population).collect();
        generator.shuffle_tail(&mut indices, (population - size).max(1));
        return indices.split_off(population - size);
    }
    let mut picked = Vec::with_capacity(size);
    let mut seen = BTreeSet::new();
    for upper in population - size..population {
        let value = generator.bounded(upper as u64) as usize;
        let value = if seen.insert(value) { value } else { upper };
        seen.insert(value);
        picked.push(value);
    }
    generator.shuffle_tail(&mut picked, 1);
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_stays_in_range() {
        let mut generator = Pcg64::new(3);
        for max in [
            0u64,
            1,
            2,
            9,
            1 << 31,
            u64::from(u32::MAX),
            1 << 40,
            u64::MAX - 1,
        ] {
            for _ in 0..50 {
                assert!(generator.bounded(max) <= max);
            }
        }
    }

    #[test]
    fn choice_is_a_set_of_distinct_indices() {
        for (population, size) in [(10, 10), (100, 7), (20_000, 5_000), (20_000, 10), (1, 0)] {
            let picked = numpy_choice_without_replacement(0, population, size);
            assert_eq!(picked.len(), size);
            let distinct: BTreeSet<usize> = picked.iter().copied().collect();
            assert_eq!(distinct.len(), size);
            assert!(picked.iter().all(|&index| index < population));
        }
    }
}
