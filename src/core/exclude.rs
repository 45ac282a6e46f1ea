//! Excluded accounts (SPEC §8.1): which customer ids the configuration leaves out.
//!
//! Owns the matcher of `core.exclude.customer_ids` (exact ids) and
//! `core.exclude.customer_prefixes` (id prefixes). The fold asks it once per accepted
//! event, after the decoder (a rejected event is rejected first) and before the duplicate
//! check (an excluded event is never remembered). Guarantees: an event without a
//! `customer_id` is never excluded; ids compare as exact byte strings; with both lists
//! empty (the default) the check is one branch.

use super::config::ExcludeConfig;

impl ExcludeConfig {
    /// Whether nothing is excluded (the default).
    pub fn is_empty(&self) -> bool {
        self.customer_ids.is_empty() && self.customer_prefixes.is_empty()
    }

    /// Whether an event of `customer_id` is excluded. `None` (no customer) never is.
    pub fn excludes(&self, customer_id: Option<&str>) -> bool {
        let Some(id) = customer_id else {
            return false;
        };
        if self.is_empty() {
            return false;
        }
        // The lists are short (a few test and QA accounts); a scan beats a hash here.
        self.customer_ids.iter().any(|x| x == id)
            || self
                .customer_prefixes
                .iter()
                .any(|p| id.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ids: &[&str], prefixes: &[&str]) -> ExcludeConfig {
        ExcludeConfig {
            customer_ids: ids.iter().map(|s| s.to_string()).collect(),
            customer_prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn default_excludes_nothing() {
        let c = ExcludeConfig::default();
        assert!(c.is_empty());
        assert!(!c.excludes(Some("qa")));
        assert!(!c.excludes(None));
    }

    #[test]
    fn exact_ids_match_whole_ids_only() {
        let c = cfg(&["qa"], &[]);
        assert!(c.excludes(Some("qa")));
        assert!(!c.excludes(Some("qa2")));
        assert!(!c.excludes(Some("QA")));
        assert!(!c.excludes(Some("q")));
    }

    #[test]
    fn prefixes_match_the_start() {
        let c = cfg(&[], &["test-", "internal-"]);
        assert!(c.excludes(Some("test-7")));
        assert!(c.excludes(Some("test-")));
        assert!(c.excludes(Some("internal-ops")));
        assert!(!c.excludes(Some("test")));
        assert!(!c.excludes(Some("my-test-7")));
        assert!(!c.excludes(Some("Test-7")));
    }

    #[test]
    fn an_event_without_a_customer_is_never_excluded() {
        let c = cfg(&["qa"], &["t"]);
        assert!(!c.excludes(None));
    }
}
