//! A paced producer: a fixture's lines spread evenly over a given time, for the tests that
//! need events to keep flowing while something fails (tests/smtp_outage.rs,
//! tests/wire_faults.rs).
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureRecord, Producer};

use super::kafka::{key_of, producer, runtime};

/// Produces `lines` (keyed by customer, in order) spread evenly over `over`, in batches
/// every 200 ms, directly to the broker; counts the delivered messages in `produced`.
pub fn paced_produce(
    brokers: String,
    topic: String,
    lines: Vec<Vec<u8>>,
    over: Duration,
    produced: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let p = producer(&brokers);
        let rt = runtime();
        let tick = Duration::from_millis(200);
        let ticks = (over.as_millis() / tick.as_millis()).max(1) as usize;
        let per_tick = lines.len().div_ceil(ticks).max(1);
        let t0 = Instant::now();
        rt.block_on(async {
            for (i, chunk) in lines.chunks(per_tick).enumerate() {
                tokio::time::sleep_until((t0 + tick * i as u32).into()).await;
                let mut deliveries = Vec::with_capacity(chunk.len());
                for line in chunk {
                    let key = key_of(line);
                    let mut record = FutureRecord::to(&topic).key(&key).payload(line);
                    // Enqueue now (send_result), so a batch goes out at once.
                    loop {
                        match p.send_result(record) {
                            Ok(d) => {
                                deliveries.push(d);
                                break;
                            }
                            Err((_, r)) => {
                                record = r; // queue full: let deliveries drain
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                }
                for d in deliveries {
                    d.await
                        .expect("delivery future")
                        .map_err(|(e, _)| e)
                        .expect("delivery");
                }
                produced.fetch_add(chunk.len(), Ordering::SeqCst);
            }
        });
        p.flush(Duration::from_secs(30)).expect("flush");
    })
}
