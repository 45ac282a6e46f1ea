//! The state codec: a whole [`PartitionState`] to bytes and back.
//!
//! Owns [`PartitionState::to_bytes`] and [`PartitionState::from_bytes`]. Guarantees:
//! `from_bytes(to_bytes(s))` folds on exactly as `s` would (the index is rebuilt after
//! decoding); a malformed input is an error, never a panic.

use super::PartitionState;

/// A serialization or restore failure.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot encode state: {0}")]
    Encode(String),
    #[error("cannot decode state: {0}")]
    Decode(String),
}

impl PartitionState {
    /// Serializes the state into its compact binary form.
    pub fn to_bytes(&self) -> Result<Vec<u8>, StateError> {
        bincode::serde::encode_to_vec(self, bincode::config::standard())
            .map_err(|e| StateError::Encode(e.to_string()))
    }

    /// Restores a state written by [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        let (mut state, _): (Self, usize) =
            bincode::serde::decode_from_slice(bytes, bincode::config::standard())
                .map_err(|e| StateError::Decode(e.to_string()))?;
        state.rebuild_index();
        Ok(state)
    }
}
