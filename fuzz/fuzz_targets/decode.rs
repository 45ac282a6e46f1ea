//! Fuzz target `decode`: any bytes into the event decoder (SPEC §1).
//!
//! Guarantees checked: no panic; a message over the byte limit is rejected without being
//! parsed; an accepted event is within the limit, is UTF-8, has a type of the spec's list, and
//! decoding the same bytes again gives the same answer (the decoder is deterministic).
#![no_main]

use keypulse_core::event::EVENT_TYPES;
use keypulse_core::{decode_bounded, RejectReason};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 65_536;

fuzz_target!(|data: &[u8]| {
    let first = decode_bounded(data, MAX);
    match &first {
        Ok(ev) => {
            assert!(
                data.len() <= MAX,
                "accepted {} bytes over the limit",
                data.len()
            );
            assert!(std::str::from_utf8(data).is_ok(), "accepted bytes that are not UTF-8");
            assert!(EVENT_TYPES.contains(&ev.kind.type_name()));
        }
        Err(r) => {
            if data.len() > MAX {
                assert_eq!(r.reason, RejectReason::TooLarge);
            }
        }
    }
    // A small limit: the same bytes are accepted only when they fit.
    let small = decode_bounded(data, 64);
    if data.len() > 64 {
        assert!(matches!(&small, Err(r) if r.reason == RejectReason::TooLarge));
    }
    let again = decode_bounded(data, MAX);
    assert_eq!(first, again);
});
