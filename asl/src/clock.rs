//! Time, injected. The interpreter reads the time and sleeps only through [`Clock`], so a
//! workflow runs against the wall clock ([`SystemClock`]) or against virtual time
//! ([`VirtualClock`], the `--time-skipping` mode and tests), and so a replayed execution
//! sees the times that were recorded.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
    /// Completes once `now() >= deadline`.
    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()>;
    /// Called around work done outside the execution (a task invocation), during which
    /// virtual time must not jump ahead. The wall clock ignores it.
    fn external_work_started(&self) {}
    fn external_work_finished(&self) {}
}

/// Marks external work on a clock for as long as it lives (a task invocation, a commit the
/// execution waits for), so that virtual time stands still meanwhile.
pub struct ExternalWork(Arc<dyn Clock>);

impl ExternalWork {
    pub fn start(clock: Arc<dyn Clock>) -> Self {
        clock.external_work_started();
        ExternalWork(clock)
    }
}

impl Drop for ExternalWork {
    fn drop(&mut self) {
        self.0.external_work_finished();
    }
}

/// The wall clock; sleeps on the tokio timer (so it needs a tokio runtime).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let wait = (deadline - Utc::now()).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep(wait))
    }
}

/// Virtual time that jumps to the next timer when the execution is idle — every branch is
/// either sleeping on this clock or finished, and no external work is in flight — and
/// otherwise flows at the wall clock's pace (a task timeout racing a running task fires after
/// the real seconds, as `--time-skipping` promises: only idle time is skipped). Drive the execution with [`VirtualClock::block_on`].
pub struct VirtualClock {
    state: Mutex<VirtualState>,
}

struct VirtualState {
    now: DateTime<Utc>,
    next_id: u64,
    /// Pending sleeps by (deadline, id), with the waker of the future waiting on each.
    sleepers: BTreeMap<(DateTime<Utc>, u64), Option<Waker>>,
    external_work: usize,
}

impl VirtualClock {
    pub fn new(start: DateTime<Utc>) -> Arc<VirtualClock> {
        Arc::new(VirtualClock {
            state: Mutex::new(VirtualState { now: start, next_id: 0, sleepers: BTreeMap::new(), external_work: 0 }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VirtualState> {
        // A poisoned lock only means a panic elsewhere; the state itself stays consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves time forward by hand (tests), waking every sleeper that is due.
    pub fn advance_to(&self, time: DateTime<Utc>) {
        let wakers = {
            let mut state = self.lock();
            if time > state.now {
                state.now = time;
            }
            state.take_due()
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Runs `future` to completion on this thread, skipping virtual time whenever the
    /// future is stalled on this clock alone. Futures it awaits may be woken from other
    /// threads (task invocations running elsewhere).
    ///
    /// If the future stalls with no timer pending and no external work in flight, it can
    /// only be woken by something this clock does not know about; the thread then parks
    /// until a wake arrives.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let signal = Arc::new(ThreadSignal { woken: AtomicBool::new(false), thread: std::thread::current() });
        let waker = Waker::from(signal.clone());
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        let mut last_real = Instant::now();
        loop {
            signal.woken.store(false, Ordering::SeqCst);
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            if signal.woken.load(Ordering::SeqCst) {
                continue;
            }
            let (wakers, park_for) = {
                let mut state = self.lock();
                let elapsed = last_real.elapsed();
                last_real = Instant::now();
                if state.external_work > 0 {
                    // Not idle: time flows as it does on the wall clock, so that a timeout
                    // racing a running task fires when it would for real; it never jumps.
                    state.now += chrono::TimeDelta::from_std(elapsed).unwrap_or_default();
                    let due = state.take_due();
                    let next = state.sleepers.keys().next().map(|(deadline, _)| *deadline);
                    let park_for = next.map(|deadline| (deadline - state.now).to_std().unwrap_or_default());
                    (due, park_for)
                } else if state.sleepers.is_empty() {
                    (Vec::new(), None)
                } else {
                    let (deadline, _) = *state.sleepers.keys().next().expect("non-empty");
                    if deadline > state.now {
                        state.now = deadline;
                    }
                    (state.take_due(), None)
                }
            };
            if !wakers.is_empty() {
                wakers.into_iter().for_each(Waker::wake);
                continue;
            }
            match park_for {
                // Wake at the next deadline at the latest, to let it pass in real time.
                Some(duration) => {
                    if !signal.woken.load(Ordering::SeqCst) {
                        std::thread::park_timeout(duration);
                    }
                }
                None => {
                    while !signal.woken.load(Ordering::SeqCst) {
                        std::thread::park();
                    }
                }
            }
        }
    }
}

impl VirtualState {
    fn take_due(&mut self) -> Vec<Waker> {
        let now = self.now;
        let due: Vec<_> = self.sleepers.range(..=(now, u64::MAX)).map(|(key, _)| *key).collect();
        due.into_iter().filter_map(|key| self.sleepers.remove(&key).flatten()).collect()
    }
}

struct ThreadSignal {
    woken: AtomicBool,
    thread: Thread,
}

impl Wake for ThreadSignal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

impl Clock for Arc<VirtualClock> {
    fn now(&self) -> DateTime<Utc> {
        self.lock().now
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let id = {
            let mut state = self.lock();
            state.next_id += 1;
            let id = state.next_id;
            state.sleepers.insert((deadline, id), None);
            id
        };
        Box::pin(VirtualSleep { clock: self.clone(), key: (deadline, id) })
    }

    fn external_work_started(&self) {
        self.lock().external_work += 1;
    }

    fn external_work_finished(&self) {
        self.lock().external_work -= 1;
    }
}

struct VirtualSleep {
    clock: Arc<VirtualClock>,
    key: (DateTime<Utc>, u64),
}

impl Future for VirtualSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.clock.lock();
        if state.now >= self.key.0 {
            state.sleepers.remove(&self.key);
            return Poll::Ready(());
        }
        state.sleepers.insert(self.key, Some(cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for VirtualSleep {
    fn drop(&mut self) {
        // A sleep abandoned early (a timeout that lost its race) must not hold time back
        // nor make it jump later.
        self.clock.lock().sleepers.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn concurrent_sleeps_finish_in_deadline_order_without_real_waiting() {
        let start = Utc::now();
        let clock = VirtualClock::new(start);
        let order = Arc::new(Mutex::new(Vec::new()));
        let task = |secs: i64| {
            let clock = clock.clone();
            let order = order.clone();
            async move {
                clock.sleep_until(start + TimeDelta::seconds(secs)).await;
                order.lock().unwrap().push((secs, clock.now()));
            }
        };
        clock.block_on(futures::future::join3(task(3600), task(5), task(60)));
        let order = order.lock().unwrap();
        let secs: Vec<i64> = order.iter().map(|(s, _)| *s).collect();
        assert_eq!(secs, vec![5, 60, 3600]);
        assert!(order.iter().all(|(s, at)| *at == start + TimeDelta::seconds(*s)));
    }

    #[test]
    fn time_does_not_jump_during_external_work() {
        let start = Utc::now();
        let clock = VirtualClock::new(start);
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        clock.external_work_started();
        let worker = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send(()).ok();
        });
        let c = clock.clone();
        let outcome = clock.block_on(async move {
            let timeout = c.sleep_until(start + TimeDelta::seconds(10));
            futures::pin_mut!(timeout);
            let result = futures::future::select(rx, timeout).await;
            c.external_work_finished();
            matches!(result, futures::future::Either::Left(_))
        });
        worker.join().unwrap();
        assert!(outcome, "the external work must win: virtual time may not jump while it runs");
        assert!(clock.now() < start + TimeDelta::seconds(10));
    }

    #[test]
    fn a_timeout_racing_external_work_fires_in_real_time() {
        let start = Utc::now();
        let clock = VirtualClock::new(start);
        clock.external_work_started();
        let (_tx, rx) = futures::channel::oneshot::channel::<()>();
        let c = clock.clone();
        let timed_out = clock.block_on(async move {
            let timeout = c.sleep_until(start + TimeDelta::milliseconds(50));
            futures::pin_mut!(timeout);
            matches!(futures::future::select(rx, timeout).await, futures::future::Either::Right(_))
        });
        assert!(timed_out, "the deadline passes while the work is still running");
        assert!(clock.now() >= start + TimeDelta::milliseconds(50));
    }
}
