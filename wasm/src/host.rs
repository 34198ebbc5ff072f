//! What the worker's host gives the write path: a monotonic clock, non-blocking sleeps, a yield
//! to the event loop, and the console.
//!
//! The core reads no clock and never sleeps; in a worker a blocking sleep would also stall every
//! message, so all waiting here is a promise on the event loop.

use std::time::Duration;

use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen(inline_js = "
export function sleepMs(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }
export function yieldToEventLoop() {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => { channel.port1.close(); resolve(); };
    channel.port2.postMessage(null);
  });
}
export function nowMs() { return performance.now(); }
export function wallClockMs() { return Date.now(); }
")]
extern "C" {
    #[wasm_bindgen(js_name = sleepMs)]
    fn sleep_ms(ms: f64) -> Promise;
    #[wasm_bindgen(js_name = yieldToEventLoop)]
    fn yield_to_event_loop() -> Promise;
    #[wasm_bindgen(js_name = nowMs)]
    fn now_ms() -> f64;
    #[wasm_bindgen(js_name = wallClockMs)]
    fn wall_clock_ms() -> f64;
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = warn)]
    fn console_warn(message: &str);
    #[wasm_bindgen(js_namespace = console, js_name = debug)]
    fn console_debug(message: &str);
}

/// Host time: `performance.now()` as a `Duration` since the worker started.
pub(crate) fn now() -> Duration {
    Duration::try_from_secs_f64(now_ms() / 1000.0).unwrap_or_default()
}

/// Wall-clock milliseconds since the Unix epoch, for job-lock records.
pub(crate) fn unix_ms() -> u64 {
    wall_clock_ms().max(0.0) as u64
}

/// Waits `d` on the event loop (a `setTimeout` promise); other messages run meanwhile.
pub(crate) async fn sleep(d: Duration) {
    // A timer promise never rejects; the result carries nothing.
    let _ = JsFuture::from(sleep_ms(d.as_secs_f64() * 1000.0)).await;
}

/// Lets queued messages (new writes, queries) run between two batches. A `MessageChannel` round
/// trip, not `setTimeout(0)`, which browsers clamp to 4 ms when nested.
pub(crate) async fn yield_now() {
    let _ = JsFuture::from(yield_to_event_loop()).await;
}

/// A log line worth a developer's attention (retries, breaker, failed batches, slow commits).
pub(crate) fn warn(message: &str) {
    console_warn(message);
}

/// A log line for routine events (a rejected write, already reported to its owner).
pub(crate) fn debug(message: &str) {
    console_debug(message);
}
