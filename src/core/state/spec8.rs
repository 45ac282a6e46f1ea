//! SPEC §8's per-license record: what only some licenses need, boxed.
//!
//! Owns [`License8`] (boxed inside a license's extras): a license's mismatched domains and
//! counts (§8.3), the latest
//! `key_sharing` and `revoked_use` decision instants (their cooldowns, §8.6) and the
//! expiry its latest `expiring_soon` was for (once per license and expiry, §8.5).
//! Guarantees: a license that never had a mismatch, a revoked validation or a reminder
//! has no record (one `None` pointer), and a record whose mismatches are all pruned keeps
//! only its instants.

use serde::{Deserialize, Serialize};

use super::PartitionState;
use crate::sharing::MismatchRecord;
use crate::time::{Micros, NEVER};

/// The §8 state of one license (boxed in its `LicenseExtras::spec8`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct License8 {
    /// Its `domain_mismatch` validations: domains by latest day, and counts by day.
    pub(crate) mismatches: MismatchRecord,
    /// The latest `key_sharing` decided for it, or `NEVER`.
    pub(super) key_sharing_at: Micros,
    /// The latest `revoked_use` decided for it, or `NEVER`.
    pub(super) revoked_use_at: Micros,
    /// The expiry its latest `expiring_soon` was for, or `NEVER`.
    pub(crate) reminded_expiry: Micros,
}

impl Default for License8 {
    fn default() -> Self {
        Self {
            mismatches: MismatchRecord::default(),
            key_sharing_at: NEVER,
            revoked_use_at: NEVER,
            reminded_expiry: NEVER,
        }
    }
}

impl License8 {
    /// Heap bytes held, the box included.
    pub(super) fn bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.mismatches.heap_bytes()
    }
}

impl PartitionState {
    /// The §8 record of license `li`, if it has one.
    pub(crate) fn license8(&self, li: u32) -> Option<&License8> {
        self.licenses[li as usize].license8()
    }

    /// The §8 record of license `li`, created when missing.
    pub(super) fn license8_mut(&mut self, li: u32) -> &mut License8 {
        self.licenses[li as usize]
            .extras_mut()
            .spec8
            .get_or_insert_with(Default::default)
    }
}

impl super::License {
    /// Its §8 record, if it has one.
    pub(crate) fn license8(&self) -> Option<&License8> {
        self.extras.as_ref().and_then(|e| e.spec8.as_deref())
    }
}
