//! The client connection's one timer, which every wait of the fast path is timed on: the idle
//! and head waits between requests, the response head's (`exchange::read_head`), the body's
//! reads (`copy::read_within`) and the writes to a client whose socket is full
//! (`copy::write_all`).
//!
//! One timer, not one made for each wait: making one, registering it on its first wait and
//! taking it out again when dropped was the largest single cost of a small request's own work
//! after parsing (~600 instructions of ~14,000). Pushed later, as each next deadline is, a
//! timer is one store (tokio's `reset` extends it in place).

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;

use tokio::time::{Instant, Sleep};

/// `fut`'s output, or `late()`'s if `deadline` passes first on `timer` (an output of the same
/// type, not an `Option` around it: the response head's is moved once less). As
/// `tokio::time::timeout` polls: `fut` first, so that one ready at the deadline wins. `fut` is
/// `Unpin` (a poll
/// function, or a future pinned where the caller keeps it), and the answer a poll function, not
/// an `async fn` that would hold `fut` a second time: these waits live in the future allocated
/// for every request.
pub(crate) fn within<'a, F: Future + Unpin + 'a>(
    mut timer: Pin<&'a mut Sleep>,
    deadline: Instant,
    mut fut: F,
    late: impl Fn() -> F::Output + 'a,
) -> impl Future<Output = F::Output> + 'a {
    timer.as_mut().reset(deadline);
    poll_fn(move |cx| {
        if let Poll::Ready(out) = Pin::new(&mut fut).poll(cx) {
            return Poll::Ready(out);
        }
        timer.as_mut().poll(cx).map(|()| late())
    })
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_future_ready_in_time_wins_and_one_late_is_cut_at_the_deadline() {
        let mut timer = pin!(tokio::time::sleep(Duration::ZERO));
        let start = Instant::now();
        let deadline = start + Duration::from_secs(5);
        let quick = pin!(async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            true
        });
        assert!(within(timer.as_mut(), deadline, quick, || false).await);
        assert_eq!(Instant::now(), start + Duration::from_secs(1));
        let slow = pin!(async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            true
        });
        assert!(!within(timer.as_mut(), deadline, slow, || false).await);
        assert_eq!(
            Instant::now(),
            deadline,
            "cut at the deadline, not before or after"
        );
        // Ready at the very deadline: the future wins, as with tokio's timeout.
        let at = Instant::now() + Duration::from_secs(2);
        let exact = pin!(async {
            tokio::time::sleep_until(at).await;
            true
        });
        assert!(within(timer.as_mut(), at, exact, || false).await);
    }
}
