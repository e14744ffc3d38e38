//! Without the `tls` feature: uninhabited types, so every TLS branch in the reactor is dead.

use std::io;

/// Uninhabited without the `tls` feature: no value exists, so every branch on one is dead.
pub(crate) enum TlsSession {}

/// Uninhabited without the `tls` feature.
#[derive(Debug)]
pub(crate) enum ServerConfigStub {}

/// Uninhabited without the `tls` feature.
#[derive(Debug)]
pub(crate) enum ClientTls {}

pub(crate) type ServerConfig = std::sync::Arc<ServerConfigStub>;

pub(crate) struct Fed {
    pub closed: bool,
}

impl TlsSession {
    pub(crate) fn server(config: &ServerConfig) -> io::Result<TlsSession> {
        match **config {}
    }
    pub(crate) fn client(tls: &ClientTls) -> io::Result<TlsSession> {
        match *tls {}
    }
    pub(crate) fn is_handshaking(&self) -> bool {
        match *self {}
    }
    pub(crate) fn peer_closed(&self) -> bool {
        match *self {}
    }
    pub(crate) fn feed(&mut self, _: &mut [u8], _: &mut dyn FnMut(&[u8])) -> io::Result<Fed> {
        match *self {}
    }
    pub(crate) fn encrypt(&mut self, _: &[u8]) {
        match *self {}
    }
    pub(crate) fn take_ciphertext(&mut self, _: &mut dyn FnMut(&[u8])) {
        match *self {}
    }
    pub(crate) fn send_close_notify(&mut self) -> bool {
        match *self {}
    }
    pub(crate) fn alpn_protocol(&self) -> Option<&[u8]> {
        match *self {}
    }
    pub(crate) fn server_name(&self) -> Option<&str> {
        match *self {}
    }
}
