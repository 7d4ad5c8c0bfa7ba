// SPDX-License-Identifier: GPL-2.0

//! A QMP client: QEMU's JSON machine protocol over a UNIX socket.
//!
//! One command at a time: `execute` sends it and reads lines until its reply,
//! counting the asynchronous events that arrive in between.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Map, Value};

/// How long a reply may take before the VMM is considered stuck.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest line accepted from the VMM (a `query-hotpluggable-cpus` of a
/// large VM is a few hundred KiB).
const MAX_LINE: usize = 16 << 20;

/// Why a QMP exchange failed.
#[derive(Debug)]
pub enum Error {
    /// The socket failed or closed.
    Io(io::Error),
    /// The VMM sent something that is not QMP.
    Protocol(String),
    /// The command failed: QMP's error class and description.
    Command { class: String, desc: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "QMP socket: {e}"),
            Error::Protocol(m) => write!(f, "QMP protocol: {m}"),
            Error::Command { class, desc } => write!(f, "{class}: {desc}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// A QMP connection in command mode.
pub struct Qmp {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    /// Asynchronous events received: the agent acts on state it queries, not on events, so
    /// they are only counted (a VMM sending them without end costs nothing).
    events: u64,
}

impl Qmp {
    /// Connects to the QMP socket at `path` and leaves capabilities
    /// negotiation.
    pub fn connect(path: &Path) -> Result<Self, Error> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        let reader = BufReader::new(stream.try_clone()?);
        let mut qmp = Qmp {
            writer: stream,
            reader,
            events: 0,
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(Error::Protocol(format!(
                "no greeting: {}",
                Value::Object(greeting)
            )));
        }
        qmp.execute("qmp_capabilities", Value::Null)?;
        Ok(qmp)
    }

    fn read_message(&mut self) -> Result<Map<String, Value>, Error> {
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = (&mut self.reader)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut line)?;
            if n == 0 {
                return Err(Error::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            if line.last() != Some(&b'\n') {
                return Err(Error::Protocol("reply line too long".into()));
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return match serde_json::from_slice(&line) {
                Ok(Value::Object(m)) => Ok(m),
                Ok(other) => Err(Error::Protocol(format!("not an object: {other}"))),
                Err(e) => Err(Error::Protocol(format!("bad JSON: {e}"))),
            };
        }
    }

    /// Runs `command` with `arguments` (an object, or `Null` for none) and
    /// returns its "return" value.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, Error> {
        let mut msg = json!({ "execute": command });
        if !arguments.is_null() {
            msg["arguments"] = arguments;
        }
        let mut bytes = serde_json::to_vec(&msg).map_err(|e| Error::Protocol(e.to_string()))?;
        bytes.push(b'\n');
        self.writer.write_all(&bytes)?;
        loop {
            let mut reply = self.read_message()?;
            if let Some(ret) = reply.remove("return") {
                return Ok(ret);
            }
            if let Some(err) = reply.get("error") {
                let field = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
                return Err(Error::Command {
                    class: field("class"),
                    desc: field("desc"),
                });
            }
            if reply.contains_key("event") {
                self.events = self.events.saturating_add(1);
                continue;
            }
            return Err(Error::Protocol(format!(
                "unexpected message: {}",
                Value::Object(reply)
            )));
        }
    }

    /// How many asynchronous events arrived so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The process at the other end of the socket (the VMM), as the kernel reports it.
    pub fn peer_pid(&self) -> io::Result<i32> {
        let cred =
            nix::sys::socket::getsockopt(&self.writer, nix::sys::socket::sockopt::PeerCredentials)
                .map_err(io::Error::from)?;
        Ok(cred.pid())
    }
}
