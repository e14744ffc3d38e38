//! The http demo's routes: the TechEmpower ones, and `GET /metrics`, the server's counters in
//! the Prometheus text format for a scraper.

use std::sync::{Arc, OnceLock};

use eventide::http::{Request, Response, Service, Status};
use eventide::{StatsHandle, PROMETHEUS_CONTENT_TYPE};

use crate::tfb::Tfb;

/// Where the handlers find the server's counters once it has started (the handlers are made
/// while it starts, before a handle to it exists).
pub type StatsSlot = Arc<OnceLock<StatsHandle>>;

/// [`Tfb`] plus `/metrics`.
pub struct Routes {
    tfb: Tfb,
    stats: StatsSlot,
}

impl Routes {
    pub fn new(stats: StatsSlot) -> Routes {
        Routes { tfb: Tfb, stats }
    }
}

impl Service for Routes {
    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        if req.path() != "/metrics" {
            return self.tfb.call(req, res);
        }
        match (req.method(), self.stats.get()) {
            ("GET", Some(stats)) => res
                .content_type(PROMETHEUS_CONTENT_TYPE)
                .body(stats.prometheus().as_bytes()),
            ("GET", None) => res
                .status(Status::SERVICE_UNAVAILABLE)
                .content_type("text/plain")
                .body(b"starting"),
            _ => res
                .status(Status::METHOD_NOT_ALLOWED)
                .header("Allow", "GET")
                .content_type("text/plain")
                .body(b"Method Not Allowed"),
        }
    }
}
