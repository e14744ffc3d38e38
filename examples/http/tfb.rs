//! The TechEmpower plaintext and JSON routes of the http example. Shared with the tests
//! (`tests/http.rs` includes this file), so they check exactly what the demo serves.

use eventide::http::{Request, Response, Service, Status};
use serde::Serialize;

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

/// The TechEmpower routes.
pub struct Tfb;

impl Service for Tfb {
    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        match (req.method(), req.path()) {
            ("GET", "/plaintext") => res.content_type("text/plain").body(b"Hello, World!"),
            ("GET", "/json") => res.content_type("application/json").body_with(|buf| {
                let msg = Message {
                    message: "Hello, World!",
                };
                serde_json::to_writer(buf, &msg).expect("serialising into a Vec cannot fail");
            }),
            _ => res
                .status(Status::NOT_FOUND)
                .content_type("text/plain")
                .body(b"Not Found"),
        }
    }
}
