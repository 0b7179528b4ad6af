//! The retry schedule (qmail-send.c's nextretry): a message born at `birth` is retried on
//! channel c at `birth + (floor(sqrt(age)) + chanskip[c])^2`, so attempts thin out
//! quadratically: local deliveries (chanskip 10) after 100, 121, 144 ... seconds from
//! birth's square-root steps, remote ones (chanskip 20) after 400, 441, 484 ... seconds.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Seconds between retry steps per channel: local, remote.
pub const CHANSKIP: [u64; 2] = [10, 20];

/// netqmail's squareroot(): the largest y below 2^16 with y*y <= x.
pub fn squareroot(x: u64) -> u64 {
    x.isqrt().min(65_535)
}

/// When to try a message of this age again on channel `c`.
pub fn nextretry(birth: u64, recent: u64, c: usize) -> u64 {
    let n = if birth > recent {
        0
    } else {
        squareroot(recent - birth)
    };
    let n = n + CHANSKIP[c];
    birth.saturating_add(n * n)
}

/// A priority queue of (time, message id), earliest first (netqmail's prioq).
#[derive(Debug, Default)]
pub struct Prioq {
    heap: BinaryHeap<Reverse<(u64, u64)>>,
}

impl Prioq {
    pub fn insert(&mut self, dt: u64, id: u64) {
        self.heap.push(Reverse((dt, id)));
    }
    /// The earliest (time, id).
    pub fn min(&self) -> Option<(u64, u64)> {
        self.heap.peek().map(|r| r.0)
    }
    pub fn delmin(&mut self) {
        self.heap.pop();
    }
    pub fn len(&self) -> usize {
        self.heap.len()
    }
    /// Every entry gets time `dt` (ALRM: retry everything now).
    pub fn set_all(&mut self, dt: u64) {
        let v: Vec<_> = self
            .heap
            .drain()
            .map(|Reverse((_, id))| Reverse((dt, id)))
            .collect();
        self.heap = v.into();
    }
    /// Takes every entry out.
    pub fn drain(&mut self) -> Vec<(u64, u64)> {
        self.heap.drain().map(|r| r.0).collect()
    }
    /// Whether message `id` is waiting here.
    pub fn contains(&self, id: u64) -> bool {
        self.heap.iter().any(|r| r.0.1 == id)
    }
    /// Takes message `id` out (queue management: a held message waits nowhere). Returns
    /// whether it was there.
    pub fn remove(&mut self, id: u64) -> bool {
        let before = self.heap.len();
        self.heap.retain(|r| r.0.1 != id);
        self.heap.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference_sqrt(x: u64) -> u64 {
        // The bit-by-bit loop of qmail-send.c, for comparison.
        let (mut y, mut yy) = (0u64, 0u64);
        for j in (0..=15).rev() {
            let y21 = (y << (j + 1)) + (1u64 << (j + j));
            if y21 <= x - yy {
                y += 1 << j;
                yy += y21;
            }
        }
        y
    }

    #[test]
    fn sqrt_matches_netqmail() {
        for x in (0..100_000).chain([u64::from(u32::MAX), 1 << 40]) {
            assert_eq!(squareroot(x), reference_sqrt(x), "{x}");
        }
    }

    #[test]
    fn schedule() {
        let b = 1_000_000;
        assert_eq!(nextretry(b, b, 0), b + 100);
        assert_eq!(nextretry(b, b, 1), b + 400);
        assert_eq!(nextretry(b, b + 100, 0), b + 400);
        assert_eq!(nextretry(b, b + 400, 1), b + 1600);
        assert_eq!(nextretry(b + 5, b, 0), b + 105);
        // A week-old message: sqrt(604800) = 777, remote: (777+20)^2.
        assert_eq!(nextretry(b, b + 604_800, 1), b + 797 * 797);
    }

    #[test]
    fn prioq_order() {
        let mut q = Prioq::default();
        q.insert(5, 1);
        q.insert(3, 2);
        q.insert(9, 3);
        assert_eq!(q.min(), Some((3, 2)));
        q.set_all(1);
        assert_eq!(q.min().unwrap().0, 1);
        assert_eq!(q.len(), 3);
        assert!(q.contains(2));
        assert!(q.remove(2));
        assert!(!q.contains(2));
        assert!(!q.remove(2));
        assert_eq!(q.len(), 2);
        q.insert(0, 2);
        assert_eq!(q.min(), Some((0, 2)));
    }
}
