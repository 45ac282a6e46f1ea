//! Tests of the seen-ids set (`dedup.rs`): the horizon, the forms it moves through
//! (none, one inline, an exact slice, a map) and their costs, and a property test against
//! a map that forgets nothing.

use super::*;

#[test]
fn remembers_within_the_horizon_and_forgets_after() {
    let mut s = SeenIds::default();
    s.remember("a", 100, 0);
    assert!(s.is_duplicate("a", 50));
    assert!(s.is_duplicate("a", 100));
    assert!(!s.is_duplicate("a", 101));
    assert!(!s.is_duplicate("b", 0));
    s.remember("b", 200, 150); // prunes "a"
    assert!(!s.is_duplicate("a", 0));
    assert!(s.is_duplicate("b", 0));
}

/// The system allocator, counting the allocations made on each thread (this crate's
/// unit tests only), so that a test can tell that a call allocates nothing.
struct Counting;

thread_local! {
    static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { std::alloc::System.realloc(p, l, new) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(|n| n.get())
}

#[test]
fn ids_further_apart_than_the_horizon_stay_inline() {
    let hour = 3_600_000_000;
    let mut s = SeenIds::default();
    for i in 0..10 {
        let ts = i * 2 * hour;
        let id = format!("e{i}");
        let before = allocations();
        s.remember(&id, ts, ts - hour);
        assert_eq!(allocations(), before, "remember allocated at {i}");
        assert!(matches!(s.0, Held::One(_)), "not inline at {i}");
        assert_eq!(s.heap_bytes(), 0);
        assert!(s.is_duplicate(&id, ts - hour));
        assert!(i == 0 || !s.is_duplicate(&format!("e{}", i - 1), ts - hour));
    }
    // Two within the horizon still grow the set, and both are remembered.
    s.remember("x", 18 * hour + 1, 17 * hour);
    assert!(s.is_duplicate("e9", 17 * hour) && s.is_duplicate("x", 17 * hour));
}

#[test]
fn a_short_set_holds_exact_room() {
    let mut s = SeenIds::default();
    let ids: Vec<String> = (0..INLINE_MAX).map(|i| format!("e{i}")).collect();
    for (n, id) in ids.iter().enumerate() {
        s.remember(id, n as Micros, 0);
        // Packed: 12 bytes an id, plus 4 for the newest's whole `ts`.
        let room = if n == 0 { 0 } else { 12 * (n + 1) + 4 };
        assert_eq!(s.heap_bytes(), room, "after {id}");
    }
    assert!(ids.iter().all(|id| s.is_duplicate(id, 0)));
    // One more moves the set to a map.
    s.remember("x", 99, 0);
    assert!(matches!(s.0, Held::Many(_)));
    assert!(ids.iter().all(|id| s.is_duplicate(id, 0)) && s.is_duplicate("x", 0));
}

/// 24 bytes in the customer record (issue 10's budget; it was 32 with the small vector
/// and the map's box side by side).
#[test]
fn the_set_is_24_bytes() {
    assert_eq!(std::mem::size_of::<SeenIds>(), 24);
}

/// An id remembered with a `ts` the horizon already ignores is not kept; the others are.
#[test]
fn a_late_id_below_the_floor_is_not_kept() {
    let mut s = SeenIds::default();
    s.remember("a", 100, 50);
    s.remember("late", 10, 50);
    assert!(!s.is_duplicate("late", 0));
    assert!(s.is_duplicate("a", 50));
    assert!(matches!(s.0, Held::One(_)));
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(300))]

    /// Against a plain map that forgets nothing: with floors that never go back (the
    /// customer's clock minus the horizon), every id answers alike after every step,
    /// and after a trip through the codec's form. At the larger scale, `ts` lie further
    /// apart than a packed short list holds (2³² µs), so the sets also take the map.
    #[test]
    fn answers_as_a_map_that_forgets_nothing(
        steps in proptest::collection::vec((0u32..40, 0i64..7_200, 0i64..900, proptest::bool::ANY), 1..300),
        scale in proptest::prop_oneof![proptest::strategy::Just(1i64), proptest::strategy::Just(1_000_000i64)],
    ) {
        let mut s = SeenIds::default();
        let mut model: HashMap<String, Micros> = HashMap::new();
        let mut floor: Micros = 0;
        for (i, (id, ahead, step, late)) in steps.into_iter().enumerate() {
            let (ahead, step) = (ahead * scale, step * scale);
            floor += step;
            // Mostly at or after the floor; sometimes late, below it.
            let ts = if late { floor - ahead / 4 } else { floor + ahead };
            let id = format!("e{id}");
            let dup = s.is_duplicate(&id, floor);
            proptest::prop_assert_eq!(dup, model.get(&id).is_some_and(|t| *t >= floor));
            if !dup {
                s.remember(&id, ts, floor);
                model.insert(id, ts);
            }
            if i % 17 == 0 {
                let bytes = postcard::to_allocvec(&s).unwrap();
                s = postcard::from_bytes(&bytes).unwrap();
            }
            for (k, t) in &model {
                proptest::prop_assert_eq!(s.is_duplicate(k, floor), *t >= floor, "{}", k);
            }
        }
    }
}

#[test]
fn a_busy_customer_moves_to_a_map_and_back() {
    let mut s = SeenIds::default();
    for i in 0..100 {
        s.remember(&format!("id{i}"), i, 0);
    }
    assert!(matches!(s.0, Held::Many(_)));
    assert!((0..100).all(|i| s.is_duplicate(&format!("id{i}"), 0)));
    for i in 0..200 {
        s.remember(&format!("late{i}"), 10_000 + i, 10_000);
    }
    assert!(!s.is_duplicate("id5", 0));
    assert!(s.is_duplicate("late150", 10_000));
    s.remember("last", 1_000_000, 1_000_000);
    assert!(!matches!(s.0, Held::Many(_)));
    assert!(s.is_duplicate("last", 0));
}

/// A merge keeps every id of both sides at its latest `ts`, whichever forms they hold
/// (one, a short list, a map).
#[test]
fn absorb_keeps_the_latest_of_both_in_every_form() {
    let set = |ids: std::ops::Range<u32>, ts: Micros| {
        let mut s = SeenIds::default();
        for i in ids {
            s.remember(&format!("e{i}"), ts, 0);
        }
        s
    };
    // (mine, theirs): a map into a map, a short list into a map, a map into one id.
    for (mine, theirs) in [
        (set(0..40, 10), set(20..60, 20)),
        (set(0..40, 10), set(35..38, 20)),
        (set(0..1, 10), set(0..40, 20)),
    ] {
        let expect: HashMap<u64, Micros> = [&mine, &theirs]
            .iter()
            .flat_map(|s| match &s.0 {
                Held::Many(m) => m.map.iter().map(|(h, t)| (*h, *t)).collect::<Vec<_>>(),
                _ => s.few().to_vec(),
            })
            .fold(HashMap::new(), |mut acc, (h, t)| {
                let e = acc.entry(h).or_insert(t);
                *e = (*e).max(t);
                acc
            });
        let mut merged = mine;
        merged.absorb(theirs);
        for (h, t) in &expect {
            assert_eq!(merged.get(*h), Some(*t));
        }
        if let Held::Many(m) = &merged.0 {
            assert_eq!(m.len(), expect.len());
            assert!(m.oldest <= expect.values().copied().min().unwrap());
        }
    }
}
