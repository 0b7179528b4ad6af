//! A priority queue of (time, message id), earliest first (netqmail's prioq). Among
//! entries due at the same time the lower message number comes first.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Messages waiting for a time.
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

    /// Takes the earliest entry out if it is due at `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<u64> {
        match self.min() {
            Some((dt, id)) if dt <= now => {
                self.heap.pop();
                Some(id)
            }
            _ => None,
        }
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
    use super::Prioq;

    #[test]
    fn earliest_first_then_lowest_id() {
        let mut q = Prioq::default();
        q.insert(5, 1);
        q.insert(3, 2);
        q.insert(9, 3);
        q.insert(3, 1);
        assert_eq!(q.min(), Some((3, 1)));
        assert_eq!(q.pop_due(2), None, "nothing is due before its time");
        assert_eq!(q.pop_due(4), Some(1));
        assert_eq!(q.pop_due(4), Some(2));
        assert_eq!(q.pop_due(4), None);
        assert_eq!(q.pop_due(100), Some(1));
        assert_eq!(q.pop_due(100), Some(3));
        assert_eq!(q.pop_due(100), None);
    }

    #[test]
    fn set_all_remove_contains() {
        let mut q = Prioq::default();
        q.insert(5, 1);
        q.insert(3, 2);
        q.insert(9, 3);
        q.set_all(1);
        assert_eq!(q.min(), Some((1, 1)));
        assert_eq!(q.len(), 3);
        assert!(q.contains(2));
        assert!(q.remove(2));
        assert!(!q.contains(2));
        assert!(!q.remove(2));
        assert_eq!(q.len(), 2);
        q.insert(0, 2);
        assert_eq!(q.min(), Some((0, 2)));
        let mut all = q.drain();
        all.sort_unstable();
        assert_eq!(all, [(0, 2), (1, 1), (1, 3)]);
        assert_eq!(q.len(), 0);
    }
}
