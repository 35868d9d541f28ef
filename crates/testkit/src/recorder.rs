//! A recording TCP forwarder between Kafka clients and one broker.
//!
//! The fuzz targets start from seed corpora; seeds encoded by hand from the protocol crate cover
//! what their author thought of, and seeds captured from real clients cover what clients
//! actually send: their versions, flags, client ids, tagged fields, and the broker's real
//! answers to them. The broker advertises the recorder's port (its `advertised.listeners`), so
//! every connection a client opens passes through it; bytes are forwarded as they come and
//! framed on the side. Each request is paired with its answer by correlation id.
//!
//! Bounded: at most [`PER_VERSION`] exchanges are kept per (API, version), and frames larger
//! than [`MAX_FRAME`] are forwarded but not kept.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use bytes::{Buf, Bytes, BytesMut};

/// Exchanges kept per (API key, version).
pub const PER_VERSION: usize = 3;
/// Frames larger than this are not kept (large Fetch answers, batches of records).
pub const MAX_FRAME: usize = 64 * 1024;

/// One request and, if it came, the broker's answer: frames without their size prefix.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub api_key: i16,
    pub api_version: i16,
    pub request: Bytes,
    pub response: Option<Bytes>,
}

/// Where an answer goes: its request's (API key, version) and index among those kept.
type Slot = (i16, i16, usize);

/// What the recorder has seen, by (API key, version).
#[derive(Default)]
struct Recorded {
    exchanges: BTreeMap<(i16, i16), Vec<Exchange>>,
}

impl Recorded {
    /// Keep a request, unless enough of its kind are kept; returns its slot for the answer.
    fn request(&mut self, body: Bytes) -> Option<Slot> {
        let (api_key, api_version) = (i16::from_be_bytes([body[0], body[1]]), i16::from_be_bytes([body[2], body[3]]));
        let kept = self.exchanges.entry((api_key, api_version)).or_default();
        if kept.len() >= PER_VERSION || body.len() > MAX_FRAME {
            return None;
        }
        kept.push(Exchange { api_key, api_version, request: body, response: None });
        Some((api_key, api_version, kept.len() - 1))
    }

    fn response(&mut self, slot: Slot, body: Bytes) {
        if body.len() > MAX_FRAME {
            return;
        }
        if let Some(exchange) = self.exchanges.get_mut(&(slot.0, slot.1)).and_then(|kept| kept.get_mut(slot.2)) {
            exchange.response = Some(body);
        }
    }
}

/// Forwards every connection to its port on to the broker, recording the frames both ways.
/// Stops (and drops its listener) when dropped.
pub struct Recorder {
    port: u16,
    recorded: Arc<Mutex<Recorded>>,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Recorder {
    /// Listen on 127.0.0.1:`port` and forward to 127.0.0.1:`broker_port`.
    pub fn start(port: u16, broker_port: u16) -> Result<Recorder> {
        let listener = TcpListener::bind(("127.0.0.1", port)).with_context(|| format!("binding 127.0.0.1:{port}"))?;
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let stopping = Arc::new(AtomicBool::new(false));
        let acceptor = std::thread::spawn({
            let (recorded, stopping) = (Arc::clone(&recorded), Arc::clone(&stopping));
            move || {
                for client in listener.incoming() {
                    if stopping.load(Ordering::Acquire) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(broker) = TcpStream::connect(("127.0.0.1", broker_port)) else { continue };
                    forward_connection(client, broker, Arc::clone(&recorded));
                }
            }
        });
        Ok(Recorder { port, recorded, stopping, acceptor: Some(acceptor) })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything kept so far, by (API key, version).
    pub fn exchanges(&self) -> Vec<Exchange> {
        let recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        recorded.exchanges.values().flatten().cloned().collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        // Wakes the acceptor so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Pump one connection both ways on two threads, recording frames; the answers' correlation
/// ids find their requests.
fn forward_connection(client: TcpStream, broker: TcpStream, recorded: Arc<Mutex<Recorded>>) {
    let pending: Arc<Mutex<HashMap<i32, Slot>>> = Arc::default();
    let (Ok(client_read), Ok(broker_read)) = (client.try_clone(), broker.try_clone()) else { return };
    let requests = {
        let (recorded, pending) = (Arc::clone(&recorded), Arc::clone(&pending));
        move |body: Bytes| {
            if body.len() < 8 {
                return;
            }
            let correlation_id = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
            if let Some(slot) = recorded.lock().unwrap_or_else(PoisonError::into_inner).request(body) {
                pending.lock().unwrap_or_else(PoisonError::into_inner).insert(correlation_id, slot);
            }
        }
    };
    let responses = move |body: Bytes| {
        if body.len() < 4 {
            return;
        }
        let correlation_id = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        if let Some(slot) = pending.lock().unwrap_or_else(PoisonError::into_inner).remove(&correlation_id) {
            recorded.lock().unwrap_or_else(PoisonError::into_inner).response(slot, body);
        }
    };
    std::thread::spawn(move || copy_framed(client_read, broker, requests));
    std::thread::spawn(move || copy_framed(broker_read, client, responses));
}

/// Copy `from` to `to` as bytes arrive, handing each complete frame's body to `frame`; shuts
/// `to` down for writing at the end.
fn copy_framed(mut from: TcpStream, mut to: TcpStream, mut frame: impl FnMut(Bytes)) {
    let mut chunk = vec![0; 64 * 1024];
    let mut framing = BytesMut::new();
    loop {
        let read = match from.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if to.write_all(&chunk[..read]).is_err() {
            break;
        }
        framing.extend_from_slice(&chunk[..read]);
        while framing.len() >= 4 {
            let size = i32::from_be_bytes([framing[0], framing[1], framing[2], framing[3]]);
            let Ok(size) = usize::try_from(size) else { return };
            if framing.len() < 4 + size {
                break;
            }
            framing.advance(4);
            frame(framing.split_to(size).freeze());
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
