//! Which models a team or key may use: patterns from the configuration
//! (`gpt-4o*`, `*`), resolved once per configuration into a bitset over the
//! configured models, so that the check on a request is one bit test.

/// A set of model indexes (positions in [`crate::Routes::all`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelSet {
    words: Box<[u64]>,
}

impl ModelSet {
    pub fn empty(models: usize) -> ModelSet {
        ModelSet { words: vec![0; models.div_ceil(64)].into_boxed_slice() }
    }

    pub fn insert(&mut self, model: usize) {
        self.words[model / 64] |= 1 << (model % 64);
    }

    pub fn contains(&self, model: usize) -> bool {
        self.words.get(model / 64).is_some_and(|w| w & (1 << (model % 64)) != 0)
    }

    pub fn intersect(&self, other: &ModelSet) -> ModelSet {
        ModelSet { words: self.words.iter().zip(other.words.iter()).map(|(a, b)| a & b).collect() }
    }

    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.words.len() * 64).filter(|&i| self.contains(i))
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }
}

/// Matches a model name against a pattern where `*` stands for any run of
/// characters (including none). Every other character matches itself.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    // Iterative glob with one backtrack point: linear for one `*`, and
    // O(len(p) * len(n)) at worst, on configuration data only.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let table = [
            ("*", "gpt-4o", true),
            ("gpt-4o", "gpt-4o", true),
            ("gpt-4o", "gpt-4o-mini", false),
            ("gpt-4o*", "gpt-4o-mini", true),
            ("gpt-4o*", "gpt-4", false),
            ("*-mini", "gpt-4o-mini", true),
            ("claude-*-sonnet*", "claude-3-5-sonnet-latest", true),
            ("claude-*-sonnet", "claude-3-5-haiku", false),
            ("", "", true),
            ("", "x", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
        ];
        for (p, n, want) in table {
            assert_eq!(pattern_matches(p, n), want, "{p} ~ {n}");
        }
    }

    #[test]
    fn sets() {
        let mut a = ModelSet::empty(130);
        a.insert(0);
        a.insert(129);
        let mut b = ModelSet::empty(130);
        b.insert(129);
        assert!(a.contains(129) && !a.contains(1));
        assert_eq!(a.intersect(&b).iter().collect::<Vec<_>>(), vec![129]);
        assert!(!a.contains(100_000));
    }
}
