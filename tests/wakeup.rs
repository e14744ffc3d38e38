//! Cross-thread wake-ups through the loop's eventfd: none is ever lost.

mod util;

use std::sync::mpsc;

use eventide::Server;
use util::{Echo, TIMEOUT};

/// 10,000 rounds of "post a task from another thread, wait for it to run" against a loop
/// blocked in `epoll_wait` with no timeout (no timer is pending).
#[test]
fn no_wake_up_is_lost() {
    const ROUNDS: u64 = 10_000;
    let (factory, _closed) = Echo::factory();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .start(factory)
        .unwrap();
    let handle = server.loop_handle(0).unwrap();
    let (tx, rx) = mpsc::channel();
    for round in 0..ROUNDS {
        let tx = tx.clone();
        handle
            .execute(move |cx| {
                tx.send((round, cx.pending_timers())).unwrap();
            })
            .unwrap();
        let (ran, timers) = rx
            .recv_timeout(TIMEOUT)
            .expect("task lost: the loop was not woken");
        assert_eq!(ran, round);
        assert_eq!(timers, 0, "the loop must be waiting without a timeout");
    }
    let stats = server.stats().total();
    assert_eq!(stats.tasks, ROUNDS);
    // One eventfd write per round at most: each round waits for its task to run.
    assert!(
        stats.eventfd_writes <= ROUNDS,
        "{} eventfd writes",
        stats.eventfd_writes
    );
}

/// A burst posted while the loop is busy costs at most two eventfd writes (one wake for the
/// burst, possibly one that raced with the loop clearing its flag), and every task runs in
/// the order it was posted.
#[test]
fn burst_is_coalesced_and_ordered() {
    let (factory, _closed) = Echo::factory();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .start(factory)
        .unwrap();
    let handle = server.loop_handle(0).unwrap();
    // Park the loop inside a task until the burst is queued.
    let (parked_tx, parked_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    handle
        .execute(move |_| {
            parked_tx.send(()).unwrap();
            release_rx.recv_timeout(TIMEOUT).unwrap();
        })
        .unwrap();
    parked_rx.recv_timeout(TIMEOUT).unwrap();
    let before = server.stats().total().eventfd_writes;
    let (tx, rx) = mpsc::channel();
    for i in 0..1000 {
        let tx = tx.clone();
        handle.execute(move |_| tx.send(i).unwrap()).unwrap();
    }
    assert_eq!(server.stats().total().eventfd_writes - before, 1);
    release_tx.send(()).unwrap();
    let order: Vec<i32> = (0..1000)
        .map(|_| rx.recv_timeout(TIMEOUT).unwrap())
        .collect();
    assert_eq!(order, (0..1000).collect::<Vec<_>>());
}

/// `execute` on a loop that has exited is an error, not a silent drop.
#[test]
fn execute_after_exit_fails() {
    let (factory, _closed) = Echo::factory();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .start(factory)
        .unwrap();
    let handle = server.loop_handle(0).unwrap();
    server.stop();
    server.join().unwrap();
    let err = handle.execute(|_| {}).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotConnected);
}
