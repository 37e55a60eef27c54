//! The async-friendly durability wait: `TicketFuture` (and `.await` on a
//! `Ticket` through `IntoFuture`), driven by a tiny std-only executor that parks
//! the thread until the flusher's waker unparks it. Also the recovery visitor of
//! `DurableWal::open_in_visiting`.

mod common;

use std::future::{Future, IntoFuture};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Duration;

use calybris_wal::storage::MemDirectory;
use calybris_wal::{DurableConfig, DurableWal, Ticket, TicketFuture, WalError, decode_record};
use common::{Rec, rec};

/// Wakes the thread that polls, and counts how often it was woken.
struct ThreadWaker {
    thread: Thread,
    wakes: AtomicUsize,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// Polls `future` to completion on this thread, parking between polls. Returns
/// the output and the number of polls. Bounded: a future that never resolves
/// fails the test instead of hanging it.
fn block_on<F: Future>(future: F) -> (F::Output, usize) {
    const MAX_POLLS: usize = 1_000_000;
    let waker_state = Arc::new(ThreadWaker {
        thread: std::thread::current(),
        wakes: AtomicUsize::new(0),
    });
    let waker = Waker::from(Arc::clone(&waker_state));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    for polls in 1..=MAX_POLLS {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return (output, polls);
        }
        // A spurious unpark only costs another poll.
        std::thread::park_timeout(Duration::from_secs(5));
    }
    panic!("the future did not resolve within {MAX_POLLS} polls");
}

fn config() -> DurableConfig {
    DurableConfig {
        window: Duration::from_micros(50),
        ..DurableConfig::default()
    }
}

fn assert_ticket_bounds<T: Send + Sync + Clone + 'static>() {}
fn assert_future_bounds<T: Future + Send + Unpin + 'static>() {}
fn assert_log_bounds<T: Send + Sync>() {}

#[test]
fn tickets_and_their_futures_have_the_promised_bounds() {
    assert_ticket_bounds::<Ticket>();
    assert_future_bounds::<TicketFuture>();
    #[derive(serde::Serialize)]
    enum CallerRecord {
        A(u64),
        B { name: String },
    }
    assert_log_bounds::<DurableWal<CallerRecord, MemDirectory>>();
    let dir = MemDirectory::new();
    let wal = DurableWal::<CallerRecord, _>::open_in(dir, config()).expect("open");
    wal.append_durable(&CallerRecord::A(1)).expect("durable");
    wal.append_durable(&CallerRecord::B { name: "b".into() })
        .expect("durable");
    assert_eq!(wal.close().expect("close").next_sequence, 2);
}

#[test]
fn awaiting_tickets_resolves_once_durable() {
    let dir = MemDirectory::new();
    let wal = DurableWal::<Rec, _>::open_in(dir, config()).expect("open");
    for round in 0..20u64 {
        let tickets: Vec<Ticket> = (0..5)
            .map(|k| wal.append(&rec(round * 5 + k)).expect("append"))
            .collect();
        for ticket in tickets {
            let expected = ticket.sequence();
            let (sequence, _) = block_on(ticket.clone().into_future());
            assert_eq!(sequence.expect("durable"), expected);
            assert!(ticket.is_durable());
            // A ticket already durable resolves on the first poll.
            let (again, polls) = block_on(ticket.durable());
            assert_eq!(again.expect("durable"), expected);
            assert_eq!(polls, 1);
        }
    }
    wal.close().expect("close");
}

#[test]
fn a_pending_future_is_woken_by_the_flusher() {
    let dir = MemDirectory::new();
    let wal = DurableWal::<Rec, _>::open_in(
        dir.clone(),
        DurableConfig {
            window: Duration::from_secs(3_600),
            batch_budget_bytes: 1 << 20,
            ..config()
        },
    )
    .expect("open");
    // A lone record is synced at once (the window is adaptive): a held sync keeps
    // it pending until the flusher is let go.
    let segment = dir.segment(0).expect("segment 0 exists once open");
    segment.hold_syncs(true);
    let ticket = wal.append(&rec(0)).expect("append");
    let mut future = ticket.durable();
    let waker_state = Arc::new(ThreadWaker {
        thread: std::thread::current(),
        wakes: AtomicUsize::new(0),
    });
    let waker = Waker::from(Arc::clone(&waker_state));
    let mut cx = Context::from_waker(&waker);
    assert!(std::pin::Pin::new(&mut future).poll(&mut cx).is_pending());
    assert_eq!(waker_state.wakes.load(Ordering::SeqCst), 0);
    // The sync goes on and closing flushes what is left; the flusher wakes the
    // registered waker (nothing else polls the future meanwhile).
    segment.hold_syncs(false);
    let closer = std::thread::spawn(move || wal.close());
    for _ in 0..1_000 {
        if waker_state.wakes.load(Ordering::SeqCst) >= 1 {
            break;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
    assert!(waker_state.wakes.load(Ordering::SeqCst) >= 1, "never woken");
    match std::pin::Pin::new(&mut future).poll(&mut cx) {
        Poll::Ready(result) => assert_eq!(result.expect("durable at close"), 0),
        Poll::Pending => panic!("woken but still pending"),
    }
    closer.join().expect("join").expect("close");
}

#[test]
fn poison_wakes_every_pending_future_with_the_error() {
    let dir = MemDirectory::new();
    let wal = DurableWal::<Rec, _>::open_in(dir.clone(), config()).expect("open");
    wal.append_durable(&rec(0)).expect("durable");
    dir.segment(0).expect("segment").fail_next_syncs(1);
    // A lone record is synced at once (the window is adaptive), so the failure
    // can poison the log before the later appends: those are refused instead.
    let mut tickets: Vec<Ticket> = Vec::new();
    for id in 1..6 {
        match wal.append(&rec(id)) {
            Ok(ticket) => tickets.push(ticket),
            Err(WalError::Poisoned { .. }) => break,
            Err(other) => panic!("append {id}: {other}"),
        }
    }
    assert!(
        !tickets.is_empty(),
        "the first append precedes the failed sync"
    );
    let waiters: Vec<_> = tickets
        .into_iter()
        .map(|ticket| std::thread::spawn(move || block_on(ticket.into_future()).0))
        .collect();
    for waiter in waiters {
        assert!(matches!(
            waiter.join().expect("join"),
            Err(WalError::Poisoned { .. })
        ));
    }
    assert!(matches!(
        wal.append(&rec(9)),
        Err(WalError::Poisoned { .. })
    ));
}

#[test]
fn a_future_after_close_resolves() {
    let dir = MemDirectory::new();
    let wal = DurableWal::<Rec, _>::open_in(dir, config()).expect("open");
    let ticket = wal.append(&rec(0)).expect("append");
    wal.close().expect("close");
    let (result, polls) = block_on(ticket.durable());
    assert_eq!(result.expect("close made it durable"), 0);
    assert_eq!(polls, 1);
}

#[test]
fn a_dropped_pending_future_unregisters_its_waker() {
    let dir = MemDirectory::new();
    let wal = DurableWal::<Rec, _>::open_in(
        dir.clone(),
        DurableConfig {
            window: Duration::from_secs(3_600),
            ..config()
        },
    )
    .expect("open");
    // The first record is written and synced at once (the window is adaptive):
    // a held sync keeps it pending while the futures are polled and dropped.
    let segment = dir.segment(0).expect("segment 0 exists once open");
    segment.hold_syncs(true);
    let ticket = wal.append(&rec(0)).expect("append");
    for _ in 0..100 {
        let mut future = ticket.durable();
        let waker = Waker::from(Arc::new(ThreadWaker {
            thread: std::thread::current(),
            wakes: AtomicUsize::new(0),
        }));
        assert!(
            std::pin::Pin::new(&mut future)
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
    }
    segment.hold_syncs(false);
    assert_eq!(wal.close().expect("close").next_sequence, 1);
    assert!(ticket.is_durable());
}

#[test]
fn the_visitor_sees_every_verified_frame_once_and_can_abort() {
    let dir = MemDirectory::new();
    let wal = DurableWal::<Rec, _>::open_in(
        dir.clone(),
        DurableConfig {
            segment_limit_bytes: 300,
            ..config()
        },
    )
    .expect("open");
    for id in 0..15 {
        wal.append_durable(&rec(id)).expect("durable");
    }
    wal.close().expect("close");
    let mut seen = Vec::new();
    let wal = DurableWal::<Rec, _>::open_in_visiting(dir.clone(), config(), |frame| {
        let record: Rec = decode_record(frame.payload).map_err(|_| WalError::Closed)?;
        assert!(frame.segment.is_some_and(|first| first <= frame.sequence));
        seen.push((frame.sequence, record));
        Ok::<(), WalError>(())
    })
    .expect("open visiting");
    assert_eq!(seen, (0..15).map(|id| (id, rec(id))).collect::<Vec<_>>());
    wal.close().expect("close");

    #[derive(Debug, PartialEq)]
    enum Rebuild {
        Wal,
        Stop(u64),
    }
    impl From<WalError> for Rebuild {
        fn from(_: WalError) -> Self {
            Self::Wal
        }
    }
    let result = DurableWal::<Rec, _>::open_in_visiting(dir.clone(), config(), |frame| {
        if frame.sequence == 7 {
            Err(Rebuild::Stop(7))
        } else {
            Ok(())
        }
    });
    assert_eq!(result.err(), Some(Rebuild::Stop(7)));
    // The aborted open released the lock and modified nothing.
    let wal = DurableWal::<Rec, _>::open_in(dir, config()).expect("open again");
    assert_eq!(wal.durable_anchor().next_sequence, 15);
}
