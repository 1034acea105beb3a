//! The client connection's one timer, which every wait of the fast path is timed on: the idle
//! and head waits between requests, the response head's (`exchange::read_head`), the body's
//! reads (`copy::read_within`) and the writes to a client whose socket is full
//! (`copy::write_all`).
//!
//! One timer, not one made for each wait: making one, registering it on its first wait and
//! taking it out again when dropped was the largest single cost of a small request's own work
//! after parsing (~600 instructions of ~14,000).
//!
//! Armed lazily: a wait whose deadline is no sooner than where the timer is set leaves it
//! there, and when it fires before the wait's own deadline the wait sets it again, to that
//! deadline. Every request pushes the deadline later, and tokio's `reset` costs a clock
//! conversion (an `Instant` subtraction and a division to its millisecond ticks) and an atomic
//! update each time; a connection busy for a minute now pays that once a timeout, not twice a
//! request. Only a sooner deadline (a shorter timeout than the last wait's, the stop grace)
//! moves the timer at once.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

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
    arm(timer.as_mut(), deadline);
    poll_fn(move |cx| {
        if let Poll::Ready(out) = Pin::new(&mut fut).poll(cx) {
            return Poll::Ready(out);
        }
        poll_until(timer.as_mut(), deadline, cx).map(|()| late())
    })
}

/// Readies `timer` for a wait until `deadline`, which the wait then polls with
/// [`poll_until`]: moved only when `deadline` is sooner than where it is set.
pub(crate) fn arm(timer: Pin<&mut Sleep>, deadline: Instant) {
    if deadline < timer.deadline() {
        timer.reset(deadline);
    }
}

/// Ready once `deadline` has passed on `timer` (readied by [`arm`]). The timer may be set
/// sooner, for an earlier wait: when it fires there, it is set to `deadline` and waited again.
pub(crate) fn poll_until(
    mut timer: Pin<&mut Sleep>,
    deadline: Instant,
    cx: &mut Context<'_>,
) -> Poll<()> {
    loop {
        ready!(timer.as_mut().poll(cx));
        if timer.deadline() >= deadline {
            return Poll::Ready(());
        }
        timer.as_mut().reset(deadline);
    }
}

/// [`poll_until`] as a future, for a `select!` branch; `timer` readied by [`arm`].
pub(crate) fn until(
    mut timer: Pin<&mut Sleep>,
    deadline: Instant,
) -> impl Future<Output = ()> + '_ {
    poll_fn(move |cx| poll_until(timer.as_mut(), deadline, cx))
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

    #[tokio::test(start_paused = true)]
    async fn a_timer_set_sooner_waits_on_to_a_later_deadline_and_a_sooner_one_moves_it() {
        let start = Instant::now();
        let mut timer = pin!(tokio::time::sleep_until(start + Duration::from_secs(5)));
        // Later: left where it is, fires there, and is set again to the wait's deadline.
        let later = start + Duration::from_secs(60);
        arm(timer.as_mut(), later);
        assert_eq!(
            timer.deadline(),
            start + Duration::from_secs(5),
            "not moved"
        );
        until(timer.as_mut(), later).await;
        assert_eq!(
            Instant::now(),
            later,
            "not cut at the timer's earlier setting"
        );
        // Sooner: moved at once.
        let sooner = Instant::now() + Duration::from_secs(1);
        timer
            .as_mut()
            .reset(Instant::now() + Duration::from_secs(3600));
        arm(timer.as_mut(), sooner);
        assert_eq!(timer.deadline(), sooner);
        until(timer.as_mut(), sooner).await;
        assert_eq!(Instant::now(), sooner);
        // A deadline already past: ready at once, whatever the timer was set to.
        let past = Instant::now() - Duration::from_secs(1);
        arm(timer.as_mut(), past);
        until(timer.as_mut(), past).await;
        assert_eq!(Instant::now(), sooner);
    }
}
