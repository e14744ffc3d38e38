//! Loop timers, connection timers, and the idle and read timeouts.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use eventide::{
    Action, CloseReason, Conn, ConnId, Handler, LoopCx, Refusal, Server, Timeout, TimerId,
};
use util::{connect, read_until_closed, roundtrip, Checks, Echo, Rng, TIMEOUT};

/// Sets a million loop timers at boot, cancels half, and reports the order the rest fired in.
struct MillionTimers {
    expected: Vec<u64>,
    fired: Vec<u64>,
    report: mpsc::Sender<(Vec<u64>, Vec<u64>)>,
    checks: Checks,
}

impl Handler for MillionTimers {
    type State = ();
    type Message = ();
    fn on_open(&mut self, _: &mut Conn<'_>) -> Result<(), Refusal> {
        Ok(())
    }
    fn on_data(&mut self, _: &mut Conn<'_>, _: &mut ()) -> Action {
        Action::Continue
    }
    fn on_boot(&mut self, cx: &mut LoopCx<'_>) {
        const N: u64 = 1_000_000;
        let mut rng = Rng::new(42);
        let mut keep = Vec::with_capacity(N as usize / 2);
        for token in 0..N {
            let after_us = rng.range(0, 300_000);
            let id = cx.set_timer(Duration::from_micros(after_us), token);
            if rng.next_u64() % 2 == 0 {
                self.checks
                    .that(cx.cancel_timer(id), "a timer just set can be cancelled");
            } else {
                keep.push((after_us, token));
            }
        }
        self.checks.eq(
            cx.pending_timers(),
            keep.len(),
            "timers pending after the cancels",
        );
        // All were set with the same `now`: deadline order is microseconds, then set order.
        keep.sort();
        self.expected = keep.into_iter().map(|(_, t)| t).collect();
    }
    fn on_tick(&mut self, _: &mut LoopCx<'_>, token: u64) {
        self.fired.push(token);
        if self.fired.len() == self.expected.len() {
            let _ = self
                .report
                .send((std::mem::take(&mut self.fired), self.expected.clone()));
        }
    }
}

/// A million timers with random deadlines, half of them cancelled: exactly the other half
/// fire, in deadline order.
#[test]
fn a_million_timers_fire_in_order_and_cancelled_ones_never() {
    let (tx, rx) = mpsc::channel();
    let (checks, failures) = util::checks();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .start(move |_| MillionTimers {
            expected: Vec::new(),
            fired: Vec::new(),
            report: tx.clone(),
            checks: checks.clone(),
        })
        .unwrap();
    let (fired, expected) = failures.recv(&rx, "every timer to fire");
    assert_eq!(fired.len(), expected.len());
    assert!(fired == expected, "timers fired out of deadline order");
    // Nothing else fires: the cancelled half never does, and no timer is left pending.
    let (tx, rx) = mpsc::channel();
    server
        .loop_handle(0)
        .unwrap()
        .execute(move |cx| tx.send(cx.pending_timers()).unwrap())
        .unwrap();
    assert_eq!(rx.recv_timeout(TIMEOUT).unwrap(), 0);
    assert_eq!(server.stats().total().timers_fired, expected.len() as u64);
}

/// A periodic timer: fires until cancelled, then never again (a later one-shot marker timer
/// sees the count unchanged).
struct Periodic {
    id: Option<TimerId>,
    ticks: u64,
    report: mpsc::Sender<u64>,
    checks: Checks,
}

const TICK: u64 = 1;
const MARKER: u64 = 2;

impl Handler for Periodic {
    type State = ();
    type Message = ();
    fn on_open(&mut self, _: &mut Conn<'_>) -> Result<(), Refusal> {
        Ok(())
    }
    fn on_data(&mut self, _: &mut Conn<'_>, _: &mut ()) -> Action {
        Action::Continue
    }
    fn on_boot(&mut self, cx: &mut LoopCx<'_>) {
        self.id = Some(cx.set_interval(Duration::from_millis(2), TICK));
    }
    fn on_tick(&mut self, cx: &mut LoopCx<'_>, token: u64) {
        match token {
            TICK => {
                self.ticks += 1;
                if self.ticks == 5 {
                    let pending = self.id.take().is_some_and(|id| cx.cancel_timer(id));
                    self.checks
                        .that(pending, "the interval is pending until cancelled");
                    cx.set_timer(Duration::from_millis(20), MARKER);
                }
            }
            _ => {
                let _ = self.report.send(self.ticks);
            }
        }
    }
}

#[test]
fn periodic_timer_fires_until_cancelled() {
    let (tx, rx) = mpsc::channel();
    let (checks, failures) = util::checks();
    let _server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .start(move |_| Periodic {
            id: None,
            ticks: 0,
            report: tx.clone(),
            checks: checks.clone(),
        })
        .unwrap();
    assert_eq!(failures.recv(&rx, "the marker timer"), 5);
}

/// Connection timers: `on_timer` runs for the connection with its token; a cancelled one
/// never runs; one set on a connection that closed is ignored.
struct ConnTimers(Checks);

impl Handler for ConnTimers {
    type State = Option<TimerId>;
    type Message = ();
    fn on_open(&mut self, conn: &mut Conn<'_>) -> Result<Option<TimerId>, Refusal> {
        let cancelled = conn.set_timer(Duration::from_millis(1), 99);
        self.0.that(
            conn.cancel_timer(cancelled),
            "a timer just set can be cancelled",
        );
        Ok(Some(conn.set_timer(Duration::from_millis(5), 7)))
    }
    fn on_data(&mut self, conn: &mut Conn<'_>, _: &mut Option<TimerId>) -> Action {
        let n = conn.input().len();
        conn.consume(n);
        Action::Continue
    }
    fn on_timer(&mut self, conn: &mut Conn<'_>, state: &mut Option<TimerId>, token: u64) -> Action {
        self.0.eq(
            token,
            7,
            "the token of the timer that fired (99 was cancelled)",
        );
        *state = None;
        conn.write(b"timer 7\n");
        Action::Close
    }
}

#[test]
fn connection_timer_runs_with_its_token() {
    let (checks, _failures) = util::checks();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .start(move |_| ConnTimers(checks.clone()))
        .unwrap();
    let mut s = connect(server.local_addr());
    let (got, _) = read_until_closed(&mut s);
    assert_eq!(got, b"timer 7\n");
    assert_eq!(server.stats().total().panics, 0);
}

/// Every other connection this loop opens (the 2nd, 4th, ...) moves a byte every quarter
/// of the idle timeout, from a connection timer; the others are silent. Reports each close
/// with whether the connection was a talker.
struct Talkers {
    opened: usize,
    closed: mpsc::Sender<(bool, String)>,
}

const IDLE: Duration = Duration::from_millis(500);

impl Handler for Talkers {
    type State = bool;
    type Message = ();
    fn on_open(&mut self, conn: &mut Conn<'_>) -> Result<bool, Refusal> {
        let talker = self.opened % 2 == 1;
        self.opened += 1;
        if talker {
            conn.set_timer(IDLE / 4, 0);
        }
        Ok(talker)
    }
    fn on_data(&mut self, conn: &mut Conn<'_>, _: &mut bool) -> Action {
        let n = conn.input().len();
        conn.consume(n);
        Action::Continue
    }
    fn on_timer(&mut self, conn: &mut Conn<'_>, _: &mut bool, _: u64) -> Action {
        conn.write(b".");
        conn.set_timer(IDLE / 4, 0);
        Action::Continue
    }
    fn on_close(&mut self, _: ConnId, talker: bool, reason: &CloseReason) {
        let _ = self.closed.send((talker, reason.as_str().to_string()));
    }
}

/// Idle timeout: 50 connections stay silent, 50 move a byte every quarter of the timeout:
/// only the silent ones close, each with the idle reason. The talkers' bytes come from the
/// loop's own timers, so how the test's threads are scheduled cannot make one look idle: a
/// loop that was held up runs its due timers in deadline order, the talker's write before the
/// idle check that would have found it quiet.
#[test]
fn idle_timeout_closes_only_silent_connections() {
    let (tx, closed) = mpsc::channel();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .idle_timeout(IDLE)
        .start(move |_| Talkers {
            opened: 0,
            closed: tx.clone(),
        })
        .unwrap();
    let addr = server.local_addr();
    // One loop accepts in connect order: the odd-numbered clients are the talkers.
    let mut clients: Vec<TcpStream> = (0..100).map(|_| connect(addr)).collect();
    for _ in 0..50 {
        let (talker, reason) = closed.recv_timeout(TIMEOUT).expect("a silent one closes");
        assert!(!talker, "a talking connection was closed ({reason})");
        assert_eq!(reason, "idle_timeout");
    }
    for (i, s) in clients.iter_mut().enumerate() {
        let (got, reset) = if i % 2 == 0 {
            read_until_closed(s)
        } else {
            let mut one = [0u8; 1];
            s.read_exact(&mut one).unwrap();
            (one.to_vec(), false)
        };
        assert!(!reset);
        let want: &[u8] = if i % 2 == 0 { b"" } else { b"." };
        assert_eq!(got, want, "client {i}");
    }
    // The silent ones linger until their clients close; the talkers stay.
    let talkers: Vec<TcpStream> = clients.into_iter().skip(1).step_by(2).collect();
    util::wait_until("only the talkers are open", || {
        server.stats().total().connections == 50
    });
    assert!(
        closed.try_recv().is_err(),
        "a talking connection was closed"
    );
    drop(talkers);
}

/// Read timeout: an incomplete message left unconsumed too long closes the connection with
/// the read-timeout reason; a connection whose input is consumed is not affected.
#[test]
fn read_timeout_cuts_an_incomplete_message() {
    let (factory, closed) = Echo::factory();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .read_timeout(Duration::from_millis(200))
        .start(factory)
        .unwrap();
    let addr = server.local_addr();
    let mut fine = connect(addr);
    assert_eq!(roundtrip(&mut fine, b"complete"), b"complete");
    let mut slow = connect(addr);
    slow.write_all(b"HOARD the rest never comes").unwrap();
    let c = closed.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(c.reason, "read_timeout");
    let (got, _) = read_until_closed(&mut slow);
    assert!(got.is_empty());
    assert_eq!(roundtrip(&mut fine, b"still fine"), b"still fine");
}

/// A handler can keep a timed-out connection by answering `Continue`.
struct Patient {
    report: mpsc::Sender<(ConnId, Timeout)>,
    checks: Checks,
}

impl Handler for Patient {
    type State = u32;
    type Message = ();
    fn on_open(&mut self, _: &mut Conn<'_>) -> Result<u32, Refusal> {
        Ok(0)
    }
    fn on_data(&mut self, _: &mut Conn<'_>, _: &mut u32) -> Action {
        Action::Continue
    }
    fn on_timeout(&mut self, conn: &mut Conn<'_>, times: &mut u32, which: Timeout) -> Action {
        *times += 1;
        let _ = self.report.send((conn.id(), which));
        if *times < 3 {
            Action::Continue
        } else {
            conn.write(b"bye\n");
            Action::Close
        }
    }
    fn on_close(&mut self, _: ConnId, times: u32, reason: &CloseReason) {
        self.checks.eq(times, 3, "timeouts before the close");
        self.checks
            .eq(reason.as_str(), "idle_timeout", "the close reason");
    }
}

#[test]
fn on_timeout_can_keep_the_connection() {
    let (tx, rx) = mpsc::channel();
    let (checks, failures) = util::checks();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .idle_timeout(Duration::from_millis(50))
        .start(move |_| Patient {
            report: tx.clone(),
            checks: checks.clone(),
        })
        .unwrap();
    let mut s = connect(server.local_addr());
    let (got, _) = read_until_closed(&mut s);
    assert_eq!(got, b"bye\n");
    let reports: Vec<_> = rx.try_iter().collect();
    assert_eq!(reports.len(), 3);
    assert!(reports.iter().all(|(_, w)| *w == Timeout::Idle));
    assert_eq!(server.stats().total().panics, 0);
    // on_close has run once the connection is no longer counted.
    util::wait_until("the connection is closed", || {
        server.stats().total().connections == 0
    });
    failures.assert_none();
}
