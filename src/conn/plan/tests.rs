//! The planner, table by table, without sockets: each row is a connection's state and buffers
//! after some event, and the plan it must get. Then, over every combination of the state
//! enums and a few buffer shapes, the rules no row may break.

use std::time::Duration;

use super::*;
use crate::config::InboundPolicy;
use crate::conn::state::{ConnState, HighWater, Interest, Lifecycle, ReadSide, Registration};

/// A busy level-triggered connection between two reads: open, registered for reading, nothing
/// queued or buffered, no timer, no handle.
fn steady() -> ConnState {
    let mut s = ConnState::new();
    s.registration = Registration::Registered(Interest::Read);
    s
}

/// The facts of `state` with nothing queued or buffered at loop time 1000, and no idle timeout.
fn facts(state: &ConnState) -> Facts<'_> {
    Facts {
        state,
        pending: 0,
        queued: false,
        jobs: 0,
        input: 0,
        input_since: None,
        active_ms: 1000,
        idle: IdleTimeout::new(None),
        timer_at: None,
        has_handle: false,
        now_ms: 1000,
    }
}

/// [`facts`] of a connection opened under `cfg`: with the server's idle timeout.
fn facts_under<'a>(state: &'a ConnState, cfg: &Config) -> Facts<'a> {
    Facts {
        idle: IdleTimeout::new(cfg.idle_timeout),
        ..facts(state)
    }
}

fn keep(upkeep: Upkeep) -> Plan {
    Plan {
        step: Step::Keep,
        upkeep,
    }
}

fn step_only(step: Step) -> Plan {
    Plan {
        step,
        upkeep: Upkeep::NONE,
    }
}

fn with_queue(f: Facts<'_>, pending: usize) -> Facts<'_> {
    Facts {
        pending,
        queued: true,
        ..f
    }
}

const LOW: usize = 256 * 1024;
const HIGH: usize = 1024 * 1024;

#[test]
fn a_steady_connection_needs_nothing() {
    let cfg = Config::default();
    let s = steady();
    assert!(super::steady(&facts(&s), &cfg), "the shortcut knows it");
    assert_eq!(plan(&facts(&s), &cfg), keep(Upkeep::NONE));
    // Edge-triggered: registered once for everything, never changed.
    let edge = Config { edge: true, ..cfg };
    let mut s = ConnState::new();
    s.registration = Registration::Registered(Interest::Edge);
    assert_eq!(plan(&facts(&s), &edge), keep(Upkeep::NONE));
    // An idle timer that fires early enough is left alone.
    let idle = Config {
        idle_timeout: Some(Duration::from_secs(5)),
        ..cfg
    };
    let s = steady();
    let armed = Facts {
        timer_at: Some(1000 + 5000),
        ..facts_under(&s, &idle)
    };
    assert_eq!(plan(&armed, &idle), keep(Upkeep::NONE));
}

/// Lifecycle × flushed: which step a connection takes.
#[test]
fn steps_by_lifecycle() {
    let cfg = Config::default();
    let rows: &[(&str, Lifecycle, ReadSide, bool, usize, Step)] = &[
        // (what, lifecycle, read side, output queued, jobs, step)
        (
            "failed",
            Lifecycle::Aborted,
            ReadSide::Open,
            false,
            0,
            Step::Abort,
        ),
        (
            "failed with output",
            Lifecycle::Aborted,
            ReadSide::Open,
            true,
            2,
            Step::Abort,
        ),
        (
            "half-close, flushed",
            Lifecycle::ShuttingDown,
            ReadSide::Open,
            false,
            0,
            Step::ShutDownWrite,
        ),
        (
            "half-close, output queued",
            Lifecycle::ShuttingDown,
            ReadSide::Open,
            true,
            0,
            Step::Keep,
        ),
        (
            "half-close, a job running",
            Lifecycle::ShuttingDown,
            ReadSide::Open,
            false,
            1,
            Step::Keep,
        ),
        (
            "half-closed",
            Lifecycle::WriteShut,
            ReadSide::Open,
            false,
            0,
            Step::Keep,
        ),
        (
            "half-closed, FIN seen",
            Lifecycle::WriteShut,
            ReadSide::FinSeen,
            false,
            0,
            Step::Keep,
        ),
        (
            "half-closed, peer done",
            Lifecycle::WriteShut,
            ReadSide::Closed,
            false,
            0,
            Step::Close,
        ),
        (
            "half-closed, peer done, a job running",
            Lifecycle::WriteShut,
            ReadSide::Closed,
            false,
            1,
            Step::Keep,
        ),
        (
            "closing, flushed",
            Lifecycle::Closing,
            ReadSide::Open,
            false,
            0,
            Step::Close,
        ),
        (
            "closing after half-close",
            Lifecycle::ClosingAfterShutdown,
            ReadSide::Open,
            false,
            0,
            Step::Close,
        ),
        (
            "closing, output queued",
            Lifecycle::Closing,
            ReadSide::Closed,
            true,
            0,
            Step::Keep,
        ),
        (
            "closing, a job running",
            Lifecycle::Closing,
            ReadSide::Open,
            false,
            3,
            Step::Keep,
        ),
        (
            "open, peer done",
            Lifecycle::Open,
            ReadSide::Closed,
            false,
            0,
            Step::Keep,
        ),
        (
            "send failed: what the kernel holds is still read",
            Lifecycle::WriteFailed,
            ReadSide::Open,
            false,
            0,
            Step::Keep,
        ),
        (
            "send failed, FIN seen",
            Lifecycle::WriteFailed,
            ReadSide::FinSeen,
            false,
            0,
            Step::Keep,
        ),
        (
            "send failed, input read to its end",
            Lifecycle::WriteFailed,
            ReadSide::Closed,
            false,
            0,
            Step::Abort,
        ),
        (
            "send failed, input read to its end, a job running: its output has nowhere to go",
            Lifecycle::WriteFailed,
            ReadSide::Closed,
            false,
            1,
            Step::Abort,
        ),
    ];
    for &(what, lifecycle, read, queued, jobs, want) in rows {
        let mut s = ConnState::in_lifecycle(lifecycle);
        s.read = read;
        let f = Facts {
            queued,
            pending: usize::from(queued),
            jobs,
            ..facts(&s)
        };
        assert_eq!(plan(&f, &cfg).step, want, "{what}");
    }
    // An answer owed (a deferred response) holds every ending, as output does; a failure
    // does not wait for it.
    let owed: &[(&str, Lifecycle, ReadSide, Step)] = &[
        (
            "closing, an answer owed",
            Lifecycle::Closing,
            ReadSide::Open,
            Step::Keep,
        ),
        (
            "closing after half-close, an answer owed",
            Lifecycle::ClosingAfterShutdown,
            ReadSide::Open,
            Step::Keep,
        ),
        (
            "half-close, an answer owed",
            Lifecycle::ShuttingDown,
            ReadSide::Open,
            Step::Keep,
        ),
        (
            "half-closed, peer done, an answer owed",
            Lifecycle::WriteShut,
            ReadSide::Closed,
            Step::Keep,
        ),
        (
            "failed, an answer owed",
            Lifecycle::Aborted,
            ReadSide::Open,
            Step::Abort,
        ),
        (
            "send failed, input read to its end, an answer owed",
            Lifecycle::WriteFailed,
            ReadSide::Closed,
            Step::Abort,
        ),
    ];
    for &(what, lifecycle, read, want) in owed {
        let mut s = ConnState::in_lifecycle(lifecycle);
        s.read = read;
        s.owed = 1;
        assert_eq!(plan(&facts(&s), &cfg).step, want, "{what}");
        s.owed = 0;
        assert_ne!(
            plan(&facts(&s), &cfg).step,
            Step::Keep,
            "{what}, once answered"
        );
    }
}

/// The high-water mark: reported once when crossed (before any ending, after a failure),
/// reading paused above it, resumed at the low mark.
#[test]
fn high_water_hysteresis() {
    let cfg = Config::default();
    let mut s = ConnState::in_lifecycle(Lifecycle::Closing);
    s.high_water = HighWater::Crossed;
    assert_eq!(plan(&facts(&s), &cfg), step_only(Step::NotifyHighWater));
    let mut s = ConnState::in_lifecycle(Lifecycle::Aborted);
    s.high_water = HighWater::Crossed;
    assert_eq!(plan(&facts(&s), &cfg), step_only(Step::Abort));

    // Notified and still above the low mark: reading pauses, the socket waits for EPOLLOUT.
    let mut s = steady();
    s.high_water = HighWater::Above;
    assert_eq!(
        plan(&with_queue(facts(&s), HIGH + 1), &cfg),
        keep(Upkeep {
            flowing: Some(false),
            register: Some(Interest::Write),
            ..Upkeep::NONE
        })
    );
    // Between the marks nothing changes (held, waiting for writability).
    s.flowing = false;
    s.registration = Registration::Registered(Interest::Write);
    assert_eq!(
        plan(&with_queue(facts(&s), LOW + 1), &cfg),
        keep(Upkeep::NONE)
    );
    // At the low mark: below again, reading resumes.
    assert_eq!(
        plan(&with_queue(facts(&s), LOW), &cfg),
        keep(Upkeep {
            below_low_water: true,
            flowing: Some(true),
            register: Some(Interest::ReadWrite),
            ..Upkeep::NONE
        })
    );
    // Without pausing on the mark, it only reports.
    let no_pause = Config {
        pause_on_high_water: false,
        ..cfg
    };
    let mut s = steady();
    s.high_water = HighWater::Above;
    assert_eq!(
        plan(&with_queue(facts(&s), HIGH + 1), &no_pause),
        keep(Upkeep {
            register: Some(Interest::ReadWrite),
            ..Upkeep::NONE
        })
    );
}

/// Each pause reason holds input and stops reading; ending it offers buffered input again.
#[test]
fn pauses_hold_input_and_resume_it() {
    let cfg = Config {
        inbound_policy: InboundPolicy::Pause,
        inbound_limit: 100,
        max_jobs_per_conn: 2,
        max_owed_answers: 3,
        ..Config::default()
    };
    let held = keep(Upkeep {
        flowing: Some(false),
        register: Some(Interest::Idle),
        ..Upkeep::NONE
    });
    let mut s = steady();
    s.paused_by_app = true;
    assert_eq!(plan(&facts(&s), &cfg), held, "paused by the application");
    let s = steady();
    assert_eq!(
        plan(
            &Facts {
                jobs: 2,
                ..facts(&s)
            },
            &cfg
        ),
        held,
        "jobs at the limit"
    );
    let over = Facts {
        input: 101,
        input_since: Some(900),
        ..facts(&s)
    };
    assert_eq!(plan(&over, &cfg), held, "input over the inbound limit");
    let at = Facts { input: 100, ..over };
    assert_eq!(plan(&at, &cfg), keep(Upkeep::NONE), "input at the limit");
    let mut s = steady();
    s.owed = 3;
    assert_eq!(plan(&facts(&s), &cfg), held, "answers owed at the limit");
    s.owed = 2;
    assert_eq!(
        plan(&facts(&s), &cfg),
        keep(Upkeep::NONE),
        "answers owed under the limit"
    );
    // The last answer under the bound written: reading resumes, buffered requests are
    // offered again.
    s.flowing = false;
    s.registration = Registration::Registered(Interest::Idle);
    let answered = Facts {
        input: 30,
        input_since: Some(900),
        ..facts(&s)
    };
    assert_eq!(
        plan(&answered, &cfg),
        keep(Upkeep {
            flowing: Some(true),
            requeue: true,
            register: Some(Interest::Read),
            ..Upkeep::NONE
        }),
        "answered below the limit"
    );

    // Resumed with input buffered: offered again through the ready list.
    let mut s = steady();
    s.flowing = false;
    s.registration = Registration::Registered(Interest::Idle);
    let resumed = Facts {
        input: 10,
        input_since: Some(900),
        ..facts(&s)
    };
    assert_eq!(
        plan(&resumed, &cfg),
        keep(Upkeep {
            flowing: Some(true),
            requeue: true,
            register: Some(Interest::Read),
            ..Upkeep::NONE
        })
    );
    // Resumed with nothing buffered: level-triggered epoll reports new bytes by itself.
    assert_eq!(
        plan(&facts(&s), &cfg),
        keep(Upkeep {
            flowing: Some(true),
            register: Some(Interest::Read),
            ..Upkeep::NONE
        })
    );
    // Edge-triggered, the edge may have passed while held: read it from the ready list.
    let edge = Config { edge: true, ..cfg };
    s.registration = Registration::Registered(Interest::Edge);
    assert_eq!(
        plan(&facts(&s), &edge),
        keep(Upkeep {
            flowing: Some(true),
            requeue: true,
            ..Upkeep::NONE
        })
    );
    // ...unless end of stream was read already: then only buffered input is offered.
    s.read = ReadSide::Closed;
    assert_eq!(
        plan(&facts(&s), &edge),
        keep(Upkeep {
            flowing: Some(true),
            ..Upkeep::NONE
        })
    );
}

/// Epoll interest: reading while reading, writability while output is queued, nothing for a
/// connection whose peer is done and that has nothing to send; a deregistered socket comes
/// back only when there is something to wait for.
#[test]
fn interest_follows_what_it_waits_for() {
    let cfg = Config::default();
    let s = steady();
    assert_eq!(
        plan(&with_queue(facts(&s), 10), &cfg).upkeep.register,
        Some(Interest::ReadWrite)
    );
    let mut s = steady();
    s.read = ReadSide::Closed;
    assert_eq!(plan(&facts(&s), &cfg).upkeep.register, Some(Interest::Idle));
    let mut s = steady();
    s.read = ReadSide::FinSeen;
    assert_eq!(
        plan(&facts(&s), &cfg).upkeep.register,
        None,
        "still reads to the end"
    );
    let mut s = ConnState::in_lifecycle(Lifecycle::Closing);
    s.registration = Registration::Registered(Interest::ReadWrite);
    assert_eq!(
        plan(&with_queue(facts(&s), 10), &cfg).upkeep.register,
        Some(Interest::Write),
        "closing: no more reading"
    );
    let mut s = ConnState::in_lifecycle(Lifecycle::WriteFailed);
    s.registration = Registration::Registered(Interest::ReadWrite);
    assert_eq!(
        plan(&facts(&s), &cfg).upkeep.register,
        Some(Interest::Read),
        "send failed: no more writing, reading goes on"
    );
    s.paused_by_app = true;
    assert_eq!(
        plan(&facts(&s), &cfg).upkeep.register,
        Some(Interest::Idle),
        "send failed: a pause holds (the flush timeout bounds it)"
    );

    let mut s = steady();
    s.registration = Registration::Deregistered;
    assert_eq!(plan(&facts(&s), &cfg).upkeep.register, Some(Interest::Read));
    s.paused_by_app = true;
    s.flowing = false;
    assert_eq!(
        plan(&facts(&s), &cfg).upkeep.register,
        None,
        "nothing to wait for"
    );
    assert_eq!(
        plan(&with_queue(facts(&s), 10), &cfg).upkeep.register,
        Some(Interest::Write)
    );
}

/// The read-timeout clock runs while input waits; the handles hear of pending output.
#[test]
fn input_clock_and_handles() {
    let cfg = Config::default();
    let s = steady();
    let waiting = Facts {
        input: 5,
        ..facts(&s)
    };
    assert_eq!(plan(&waiting, &cfg).upkeep.input_clock, Clock::Start);
    let still = Facts {
        input_since: Some(10),
        ..waiting
    };
    assert_eq!(plan(&still, &cfg), keep(Upkeep::NONE));
    let consumed = Facts {
        input_since: Some(10),
        ..facts(&s)
    };
    assert_eq!(plan(&consumed, &cfg).upkeep.input_clock, Clock::Stop);
    let handle = Facts {
        has_handle: true,
        ..facts(&s)
    };
    assert_eq!(
        plan(&handle, &cfg),
        keep(Upkeep {
            publish: true,
            ..Upkeep::NONE
        })
    );
}

/// The timeout timer is armed for the earliest due time, and left alone if it fires earlier.
#[test]
fn timeout_timer() {
    let cfg = Config {
        idle_timeout: Some(Duration::from_millis(500)),
        read_timeout: Some(Duration::from_millis(200)),
        flush_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let s = steady();
    let rows: &[(&str, Facts<'_>, Option<u64>)] = &[
        ("idle, no timer", facts_under(&s, &cfg), Some(1500)),
        (
            "idle, timer later",
            Facts {
                timer_at: Some(1600),
                ..facts_under(&s, &cfg)
            },
            Some(1500),
        ),
        (
            "idle, timer earlier",
            Facts {
                timer_at: Some(1400),
                ..facts_under(&s, &cfg)
            },
            None,
        ),
        (
            "input just arrived: read timeout from now",
            Facts {
                input: 1,
                now_ms: 1100,
                ..facts_under(&s, &cfg)
            },
            Some(1300),
        ),
        (
            "input waiting since 1050",
            Facts {
                input: 1,
                input_since: Some(1050),
                timer_at: Some(1500),
                ..facts_under(&s, &cfg)
            },
            Some(1250),
        ),
    ];
    for (what, f, want) in rows {
        assert_eq!(plan(f, &cfg).upkeep.arm_timer, *want, "{what}");
    }
    // Closing with output the peer does not take: the flush timeout bounds the idle period.
    let closing = ConnState::in_lifecycle(Lifecycle::Closing);
    let f = with_queue(facts_under(&closing, &cfg), 10);
    assert_eq!(plan(&f, &cfg).upkeep.arm_timer, Some(1300));
    let no_idle = Config {
        idle_timeout: None,
        read_timeout: None,
        ..cfg
    };
    let f = with_queue(facts_under(&closing, &no_idle), 10);
    assert_eq!(plan(&f, &no_idle).upkeep.arm_timer, Some(1300));
    assert_eq!(
        plan(&facts_under(&s, &no_idle), &no_idle).upkeep.arm_timer,
        None
    );
    // Closing while jobs still owe output: bounded the same way, so a job (or a future) that
    // never finishes does not keep the connection.
    let owed = Facts {
        jobs: 1,
        ..facts_under(&closing, &no_idle)
    };
    assert_eq!(plan(&owed, &no_idle).upkeep.arm_timer, Some(1300));
    let open_with_job = Facts {
        jobs: 1,
        ..facts_under(&s, &no_idle)
    };
    assert_eq!(plan(&open_with_job, &no_idle).upkeep.arm_timer, None);
    // And while answers given later are owed.
    let mut closing_owed = ConnState::in_lifecycle(Lifecycle::Closing);
    closing_owed.owed = 1;
    assert_eq!(
        plan(&facts_under(&closing_owed, &no_idle), &no_idle)
            .upkeep
            .arm_timer,
        Some(1300)
    );
    // A failed write side, even with nothing owed and no idle timeout (a reader paused for
    // good must not keep it), and under an idle timeout shorter than the flush timeout.
    let mut write_failed = ConnState::in_lifecycle(Lifecycle::WriteFailed);
    write_failed.paused_by_app = true;
    assert_eq!(
        plan(&facts_under(&write_failed, &no_idle), &no_idle)
            .upkeep
            .arm_timer,
        Some(1300)
    );
    let short = Facts {
        idle: IdleTimeout::new(Some(Duration::from_millis(100))),
        ..facts_under(&write_failed, &no_idle)
    };
    assert_eq!(plan(&short, &no_idle).upkeep.arm_timer, Some(1100));

    // A connection's own idle timeout replaces the server's, either way; `None` arms nothing.
    let own = |ms: u64| IdleTimeout::new(Some(Duration::from_millis(ms)));
    let shorter = Facts {
        idle: own(100),
        timer_at: Some(1500),
        ..facts_under(&s, &cfg)
    };
    assert_eq!(plan(&shorter, &cfg).upkeep.arm_timer, Some(1100));
    let longer = Facts {
        idle: own(900),
        ..facts_under(&s, &cfg)
    };
    assert_eq!(plan(&longer, &cfg).upkeep.arm_timer, Some(1900));
    let later = Facts {
        timer_at: Some(1500),
        ..longer
    };
    assert_eq!(
        plan(&later, &cfg).upkeep.arm_timer,
        None,
        "an earlier timer is left to fire and re-arm"
    );
    let none = Facts {
        idle: IdleTimeout::new(None),
        ..facts_under(&s, &cfg)
    };
    assert_eq!(plan(&none, &cfg).upkeep.arm_timer, None);
    assert!(
        super::steady(&none, &cfg),
        "no idle timeout: nothing to time"
    );
    assert_eq!(
        plan(&facts_under(&s, &no_idle), &no_idle).upkeep.arm_timer,
        None,
        "the server's, when it has none"
    );
    let own_without_server = Facts {
        idle: own(250),
        ..facts_under(&s, &no_idle)
    };
    assert_eq!(
        plan(&own_without_server, &no_idle).upkeep.arm_timer,
        Some(1250)
    );
    // Closing with output: the flush timeout still bounds it.
    let closing_own = Facts {
        idle: own(900),
        ..with_queue(facts_under(&closing, &cfg), 10)
    };
    assert_eq!(plan(&closing_own, &cfg).upkeep.arm_timer, Some(1300));
}

/// An idle timeout is kept to the millisecond, clamped to what its four bytes hold, and never
/// reads as none.
#[test]
fn idle_timeouts_round_trip() {
    assert_eq!(IdleTimeout::new(None).period(), None);
    for (given, kept) in [
        (Duration::ZERO, 1),
        (Duration::from_micros(1500), 1),
        (Duration::from_millis(1), 1),
        (Duration::from_secs(3600), 3_600_000),
        (Duration::from_secs(86_400 * 365), u64::from(u32::MAX - 1)),
    ] {
        assert_eq!(
            IdleTimeout::new(Some(given)).period(),
            Some(kept),
            "{given:?}"
        );
    }
}

/// Every combination of the state enums, with and without output, jobs, input and handles, in
/// both trigger modes: the rules no single row shows.
#[test]
fn every_state_obeys_the_rules() {
    use Lifecycle::*;
    let lifecycles = [
        Open,
        ShuttingDown,
        WriteShut,
        Closing,
        ClosingAfterShutdown,
        Aborted,
        WriteFailed,
    ];
    let reads = [ReadSide::Open, ReadSide::FinSeen, ReadSide::Closed];
    let marks = [HighWater::Below, HighWater::Crossed, HighWater::Above];
    let interests = [
        Interest::Idle,
        Interest::Read,
        Interest::Write,
        Interest::ReadWrite,
    ];
    let mut cases = 0;
    for edge in [false, true] {
        let cfg = Config {
            edge,
            inbound_policy: InboundPolicy::Pause,
            inbound_limit: 10,
            max_jobs_per_conn: 1,
            max_owed_answers: 2,
            idle_timeout: Some(Duration::from_millis(100)),
            ..Config::default()
        };
        let registrations: Vec<Registration> = if edge {
            vec![Registration::Registered(Interest::Edge)]
        } else {
            let mut r: Vec<_> = interests
                .iter()
                .map(|&i| Registration::Registered(i))
                .collect();
            r.push(Registration::Deregistered);
            r
        };
        for lifecycle in lifecycles {
            for read in reads {
                for mark in marks {
                    for (paused, owed) in [(false, 0), (true, 0), (false, 1), (false, 2)] {
                        for &registration in &registrations {
                            for flowing in [false, true] {
                                let server = IdleTimeout::new(cfg.idle_timeout);
                                for (pending, jobs, input, handle, idle) in [
                                    (0, 0, 0, false, server),
                                    (HIGH + 1, 1, 20, true, server),
                                    (LOW, 0, 5, false, server),
                                    (0, 0, 0, false, IdleTimeout::new(None)),
                                    (
                                        LOW,
                                        0,
                                        5,
                                        true,
                                        IdleTimeout::new(Some(Duration::from_millis(30))),
                                    ),
                                ] {
                                    let mut s = ConnState::in_lifecycle(lifecycle);
                                    s.read = read;
                                    s.high_water = mark;
                                    s.paused_by_app = paused;
                                    s.owed = owed;
                                    s.registration = registration;
                                    s.flowing = flowing;
                                    let f = Facts {
                                        pending,
                                        queued: pending > 0,
                                        jobs,
                                        input,
                                        has_handle: handle,
                                        idle,
                                        ..facts(&s)
                                    };
                                    check_rules(&f, &cfg);
                                    cases += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(cases > 1000, "{cases} cases");
}

fn check_rules(f: &Facts<'_>, cfg: &Config) {
    let s = f.state;
    let p = plan(f, cfg);
    let show = || format!("{s:?} {f:?}");
    // The shortcut only ever says what the full rules say.
    if super::steady(f, cfg) {
        assert_eq!(p, Plan::NONE, "steady but {p:?}: {}", show());
    }
    // A failure always closes at once (a failed write side once its input is read to the
    // end); nothing else does.
    let failed =
        s.lifecycle() == Lifecycle::Aborted || (s.is_write_failed() && s.read == ReadSide::Closed);
    assert_eq!(p.step == Step::Abort, failed, "{}", show());
    // A failed write side has no output to report on.
    if s.is_write_failed() {
        assert_ne!(p.step, Step::NotifyHighWater, "{}", show());
    }
    // An ending never cuts off output, a job's output or an answer owed.
    if matches!(p.step, Step::ShutDownWrite | Step::Close) {
        assert!(!f.queued && f.jobs == 0 && s.owed == 0, "{}", show());
    }
    if p.step != Step::Keep {
        assert!(p.upkeep.is_noop(), "{}", show());
        return;
    }
    let u = p.upkeep;
    // Edge-triggered registrations never change; a closing connection never reads.
    if cfg.edge {
        assert_eq!(u.register, None, "{}", show());
    }
    if s.is_closing() {
        assert!(
            !matches!(u.register, Some(Interest::Read | Interest::ReadWrite)),
            "{}",
            show()
        );
        assert_ne!(u.flowing, Some(true), "{}", show());
    }
    // Only a resumption goes on the ready list.
    if u.requeue {
        assert!(!s.flowing && u.flowing == Some(true), "{}", show());
    }
    // Applying the upkeep leaves nothing to do: the plan is a fixpoint.
    let mut after = ConnState::in_lifecycle(s.lifecycle());
    after.read = s.read;
    after.high_water = if u.below_low_water {
        HighWater::Below
    } else {
        s.high_water
    };
    after.paused_by_app = s.paused_by_app;
    after.owed = s.owed;
    after.registration = u.register.map_or(s.registration, Registration::Registered);
    after.flowing = u.flowing.unwrap_or(s.flowing);
    let since = match u.input_clock {
        Clock::Keep => f.input_since,
        Clock::Start => Some(f.now_ms),
        Clock::Stop => None,
    };
    let again = Facts {
        state: &after,
        input_since: since,
        timer_at: u.arm_timer.or(f.timer_at),
        has_handle: false,
        ..*f
    };
    assert_eq!(
        plan(&again, cfg),
        keep(Upkeep::NONE),
        "not a fixpoint: {}\nafter {u:?}",
        show()
    );
}
