//! A set of byte strings compared without regard to ASCII case (netqmail's constmap).

use std::collections::HashSet;

/// Case-insensitive (ASCII) set of byte strings.
#[derive(Debug, Clone, Default)]
pub struct CaseSet {
    set: HashSet<Vec<u8>>,
}

impl CaseSet {
    /// Builds the set from entries, folding case.
    pub fn new<I, T>(entries: I) -> CaseSet
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        CaseSet {
            set: entries
                .into_iter()
                .map(|e| e.as_ref().to_ascii_lowercase())
                .collect(),
        }
    }

    /// True when `key` is in the set, ignoring ASCII case.
    pub fn contains(&self, key: &[u8]) -> bool {
        if key.iter().any(u8::is_ascii_uppercase) {
            self.set.contains(&key.to_ascii_lowercase())
        } else {
            self.set.contains(key)
        }
    }

    /// Number of distinct entries.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// True when the set has no entries.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive() {
        let s = CaseSet::new([&b"Example.COM"[..], b"@spam.example"]);
        assert!(s.contains(b"example.com"));
        assert!(s.contains(b"EXAMPLE.com"));
        assert!(s.contains(b"@SPAM.example"));
        assert!(!s.contains(b"example.org"));
        assert_eq!(s.len(), 2);
    }
}
