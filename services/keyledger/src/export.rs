//! The log export file (`keyledger export`) and reading Keyledger's streams from JetStream for
//! it and for a live `keyledger verify`.
//!
//! The file format is specified in `EXPORT.md` next to this file: a magic and version header,
//! one [`StreamRange`] frame per stream, one [`ExportedMessage`] frame per stored message
//! (stream, stream sequence, subject, server timestamp, `Nats-Msg-Id`, the exact payload), and
//! an end frame with the message count. Stream sequences are never renumbered: a sequence the
//! server does not hold is simply absent, which is the evidence a verifier needs.
//!
//! [`ExportWriter`] and [`ExportReader`] are pure (any `Write` / `BufRead`); [`read_streams`]
//! is the thin JetStream side.

use std::io::{BufRead, Write};

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::context::Context;
use futures::{StreamExt, TryStreamExt};
use keyledger_events::names;

/// The eight bytes that open an export file.
pub const EXPORT_MAGIC: [u8; 8] = *b"KLEXPORT";
/// The export format version this build writes and reads.
pub const EXPORT_VERSION: u16 = 1;
/// Longest stream name accepted in a file, in bytes.
pub const MAX_STREAM_NAME_BYTES: usize = 256;
/// Longest subject accepted in a file, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 4096;
/// Longest `Nats-Msg-Id` value accepted in a file, in bytes.
pub const MAX_MSG_ID_BYTES: usize = 1024;
/// Largest payload accepted in a file, in bytes (NATS's own maximum payload is 64 MiB).
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024 * 1024;
/// Longest writer name in the file header, in bytes.
pub const MAX_WRITER_BYTES: usize = 256;

const TAG_STREAM: u8 = 0x01;
const TAG_MESSAGE: u8 = 0x02;
const TAG_END: u8 = 0xFF;

/// One stream's state when the export (or live read) started: the range that was requested.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRange {
    /// Stream name (`KL_CONTROL_V1`, `KL_USAGE_V1_<YYYYMM>`).
    pub stream: String,
    /// First sequence the server reported (0 or 1 for an empty stream).
    pub first_seq: u64,
    /// Last sequence the server reported (0 for a stream that never held a message).
    pub last_seq: u64,
    /// Number of messages the server reported holding (less than the range when sequences are
    /// missing).
    pub messages: u64,
}

/// One stored message, exactly as the server delivered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportedMessage {
    /// Stream name.
    pub stream: String,
    /// Stream sequence (1-based, assigned by the server, never renumbered).
    pub seq: u64,
    /// Subject the message was stored under.
    pub subject: String,
    /// The server's storage timestamp, nanoseconds since the Unix epoch (UTC).
    pub time_unix_ns: u64,
    /// The `Nats-Msg-Id` header value, `None` when the message carried none.
    pub msg_id: Option<String>,
    /// The stored payload bytes, unchanged.
    pub payload: Vec<u8>,
}

/// One frame of an export file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A stream's requested range; written before that stream's messages.
    Stream(StreamRange),
    /// A stored message.
    Message(ExportedMessage),
}

/// Why an export file could not be written or read. Messages never contain payload bytes.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The underlying reader or writer failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The file does not start with [`EXPORT_MAGIC`].
    #[error("not a Keyledger export file (bad magic)")]
    BadMagic,
    /// A format version this build does not read.
    #[error("unsupported export format version {0} (this build reads {EXPORT_VERSION})")]
    UnsupportedVersion(u16),
    /// The file ends before its end frame (a truncated copy).
    #[error("the export file ends early (no end frame): truncated copy?")]
    Truncated,
    /// A frame is malformed (unknown tag, over-long field, invalid UTF-8, bytes after the end).
    #[error("malformed export file at byte {offset}: {what}")]
    Malformed {
        /// Byte offset of the frame in the file.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// The end frame's message count differs from the messages in the file.
    #[error("the end frame counts {declared} messages but the file holds {found}")]
    CountMismatch {
        /// Count in the end frame.
        declared: u64,
        /// Messages read.
        found: u64,
    },
    /// A field is over its limit when writing.
    #[error("{0} is too large for the export format")]
    TooLarge(&'static str),
}

/// The file header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportHeader {
    /// Format version ([`EXPORT_VERSION`]).
    pub version: u16,
    /// When the export started, ms since the Unix epoch (the exporting machine's clock).
    pub created_unix_ms: u64,
    /// Program that wrote the file (`keyledger <version>`).
    pub writer: String,
}

/// Writes an export file frame by frame. Call [`ExportWriter::finish`] at the end: a file
/// without its end frame reads as truncated.
pub struct ExportWriter<W: Write> {
    out: W,
    messages: u64,
}

impl<W: Write> ExportWriter<W> {
    /// Writes the header.
    ///
    /// # Errors
    /// [`ExportError::Io`]; [`ExportError::TooLarge`] for a writer name over
    /// [`MAX_WRITER_BYTES`].
    pub fn new(mut out: W, created_unix_ms: u64, writer: &str) -> Result<Self, ExportError> {
        out.write_all(&EXPORT_MAGIC)?;
        out.write_all(&EXPORT_VERSION.to_le_bytes())?;
        out.write_all(&created_unix_ms.to_le_bytes())?;
        write_str16(&mut out, writer, MAX_WRITER_BYTES, "writer name")?;
        Ok(Self { out, messages: 0 })
    }

    /// Writes one frame.
    ///
    /// # Errors
    /// [`ExportError::Io`]; [`ExportError::TooLarge`] for a field over its limit.
    pub fn write(&mut self, frame: &Frame) -> Result<(), ExportError> {
        match frame {
            Frame::Stream(s) => {
                self.out.write_all(&[TAG_STREAM])?;
                write_str16(&mut self.out, &s.stream, MAX_STREAM_NAME_BYTES, "stream name")?;
                self.out.write_all(&s.first_seq.to_le_bytes())?;
                self.out.write_all(&s.last_seq.to_le_bytes())?;
                self.out.write_all(&s.messages.to_le_bytes())?;
            }
            Frame::Message(m) => {
                if m.payload.len() > MAX_PAYLOAD_BYTES {
                    return Err(ExportError::TooLarge("payload"));
                }
                self.out.write_all(&[TAG_MESSAGE])?;
                write_str16(&mut self.out, &m.stream, MAX_STREAM_NAME_BYTES, "stream name")?;
                self.out.write_all(&m.seq.to_le_bytes())?;
                self.out.write_all(&m.time_unix_ns.to_le_bytes())?;
                write_str16(&mut self.out, &m.subject, MAX_SUBJECT_BYTES, "subject")?;
                match &m.msg_id {
                    None => self.out.write_all(&[0])?,
                    Some(id) => {
                        self.out.write_all(&[1])?;
                        write_str16(&mut self.out, id, MAX_MSG_ID_BYTES, "Nats-Msg-Id")?;
                    }
                }
                self.out.write_all(&(m.payload.len() as u32).to_le_bytes())?;
                self.out.write_all(&m.payload)?;
                self.messages += 1;
            }
        }
        Ok(())
    }

    /// Messages written so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// Writes the end frame, flushes, and returns the writer.
    ///
    /// # Errors
    /// [`ExportError::Io`].
    pub fn finish(mut self) -> Result<W, ExportError> {
        self.out.write_all(&[TAG_END])?;
        self.out.write_all(&self.messages.to_le_bytes())?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn write_str16<W: Write>(out: &mut W, s: &str, max: usize, what: &'static str) -> Result<(), ExportError> {
    if s.len() > max {
        return Err(ExportError::TooLarge(what));
    }
    out.write_all(&(s.len() as u16).to_le_bytes())?;
    out.write_all(s.as_bytes())?;
    Ok(())
}

/// Reads an export file: the header at construction, then frames as an iterator, which ends
/// after the end frame (checking its count and that nothing follows it).
pub struct ExportReader<R: BufRead> {
    input: R,
    header: ExportHeader,
    offset: u64,
    messages: u64,
    done: bool,
}

impl<R: BufRead> ExportReader<R> {
    /// Reads and checks the header.
    ///
    /// # Errors
    /// [`ExportError::BadMagic`], [`ExportError::UnsupportedVersion`],
    /// [`ExportError::Truncated`], [`ExportError::Io`], [`ExportError::Malformed`].
    pub fn new(input: R) -> Result<Self, ExportError> {
        let mut reader = Self {
            input,
            header: ExportHeader { version: 0, created_unix_ms: 0, writer: String::new() },
            offset: 0,
            messages: 0,
            done: false,
        };
        let magic: [u8; 8] = reader.array()?;
        if magic != EXPORT_MAGIC {
            return Err(ExportError::BadMagic);
        }
        let version = u16::from_le_bytes(reader.array()?);
        if version != EXPORT_VERSION {
            return Err(ExportError::UnsupportedVersion(version));
        }
        let created_unix_ms = u64::from_le_bytes(reader.array()?);
        let writer = reader.str16(MAX_WRITER_BYTES, "writer name")?;
        reader.header = ExportHeader { version, created_unix_ms, writer };
        Ok(reader)
    }

    /// The file header.
    pub fn header(&self) -> &ExportHeader {
        &self.header
    }

    fn exact(&mut self, buf: &mut [u8]) -> Result<(), ExportError> {
        match self.input.read_exact(buf) {
            Ok(()) => {
                self.offset += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ExportError::Truncated),
            Err(e) => Err(e.into()),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ExportError> {
        let mut buf = [0u8; N];
        self.exact(&mut buf)?;
        Ok(buf)
    }

    fn u64(&mut self) -> Result<u64, ExportError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn str16(&mut self, max: usize, what: &str) -> Result<String, ExportError> {
        let at = self.offset;
        let len = usize::from(u16::from_le_bytes(self.array()?));
        if len > max {
            return Err(ExportError::Malformed { offset: at, what: format!("{what} of {len} bytes (limit {max})") });
        }
        let mut buf = vec![0u8; len];
        self.exact(&mut buf)?;
        String::from_utf8(buf).map_err(|_| ExportError::Malformed { offset: at, what: format!("{what} is not UTF-8") })
    }

    fn frame(&mut self) -> Result<Option<Frame>, ExportError> {
        let at = self.offset;
        let [tag] = self.array::<1>()?;
        match tag {
            TAG_STREAM => {
                let stream = self.str16(MAX_STREAM_NAME_BYTES, "stream name")?;
                let first_seq = self.u64()?;
                let last_seq = self.u64()?;
                let messages = self.u64()?;
                Ok(Some(Frame::Stream(StreamRange { stream, first_seq, last_seq, messages })))
            }
            TAG_MESSAGE => {
                let stream = self.str16(MAX_STREAM_NAME_BYTES, "stream name")?;
                let seq = self.u64()?;
                let time_unix_ns = self.u64()?;
                let subject = self.str16(MAX_SUBJECT_BYTES, "subject")?;
                let msg_id = match self.array::<1>()? {
                    [0] => None,
                    [1] => Some(self.str16(MAX_MSG_ID_BYTES, "Nats-Msg-Id")?),
                    [b] => {
                        return Err(ExportError::Malformed { offset: at, what: format!("Nats-Msg-Id flag {b}") });
                    }
                };
                let len = u32::from_le_bytes(self.array()?) as usize;
                if len > MAX_PAYLOAD_BYTES {
                    return Err(ExportError::Malformed { offset: at, what: format!("payload of {len} bytes") });
                }
                let mut payload = vec![0u8; len];
                self.exact(&mut payload)?;
                self.messages += 1;
                Ok(Some(Frame::Message(ExportedMessage { stream, seq, subject, time_unix_ns, msg_id, payload })))
            }
            TAG_END => {
                let declared = self.u64()?;
                if declared != self.messages {
                    return Err(ExportError::CountMismatch { declared, found: self.messages });
                }
                let mut rest = [0u8; 1];
                if self.input.read(&mut rest)? != 0 {
                    return Err(ExportError::Malformed {
                        offset: self.offset,
                        what: "bytes after the end frame".to_owned(),
                    });
                }
                Ok(None)
            }
            other => Err(ExportError::Malformed { offset: at, what: format!("unknown frame tag 0x{other:02x}") }),
        }
    }
}

impl<R: BufRead> Iterator for ExportReader<R> {
    type Item = Result<Frame, ExportError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.frame() {
            Ok(Some(f)) => Some(Ok(f)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// True for the streams of records: the control stream and every usage period. These are
/// the streams the checkpointer commits to (one Merkle tree each).
pub fn is_record_stream(name: &str) -> bool {
    name == names::CONTROL_STREAM
        || name
            .strip_prefix(names::USAGE_STREAM_PREFIX)
            .is_some_and(|p| p.len() == 6 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// True for the streams an export holds: the record streams ([`is_record_stream`]) and the
/// checkpoint stream (not the material stream: it holds wrapped key material and is erasable
/// by design).
pub fn is_exported_stream(name: &str) -> bool {
    is_record_stream(name) || name == names::CHECKPOINT_STREAM
}

/// The record streams present on the server ([`is_record_stream`]), control stream first, then
/// usage periods in order.
///
/// # Errors
/// JetStream errors.
pub async fn list_streams(js: &Context) -> anyhow::Result<Vec<String>> {
    let mut found = list_exported_streams(js).await?;
    found.retain(|n| is_record_stream(n));
    Ok(found)
}

/// The exported streams present on the server: the checkpoint stream first, then the control
/// stream and the usage periods in order. Checkpoints first: every checkpoint read was stored
/// before the records are read, so on an intact log none commits to more than was read
/// (records are never deleted), even while the log grows during the read.
///
/// # Errors
/// JetStream unavailable or refusing to list streams.
pub async fn list_exported_streams(js: &Context) -> anyhow::Result<Vec<String>> {
    let all: Vec<String> =
        js.stream_names().try_collect().await.map_err(|e| anyhow::anyhow!("cannot list streams: {e}"))?;
    let mut found: Vec<String> = all.into_iter().filter(|n| is_exported_stream(n)).collect();
    found.sort_by_key(|n| (n != names::CHECKPOINT_STREAM, n != names::CONTROL_STREAM, n.clone()));
    Ok(found)
}

/// How long [`read_streams`] waits for the next message of a stream before it gives up, in
/// seconds.
pub const READ_IDLE_TIMEOUT_S: u64 = 30;

/// Reads every exported stream from its first to its last sequence (as reported when each
/// stream is opened) with an ordered consumer, handing `sink` a [`Frame::Stream`] before each
/// stream's messages and one [`Frame::Message`] per stored message, in stream order. Missing
/// sequences are simply not delivered (never renumbered). `sink` returning an error stops the
/// read.
///
/// # Errors
/// JetStream errors, a stream that stops delivering for [`READ_IDLE_TIMEOUT_S`], or `sink`'s
/// error.
pub async fn read_streams<F>(js: &Context, mut sink: F) -> anyhow::Result<()>
where
    F: FnMut(Frame) -> anyhow::Result<()>,
{
    for name in list_exported_streams(js).await? {
        let mut stream = js.get_stream(&name).await.map_err(|e| anyhow::anyhow!("cannot open {name}: {e}"))?;
        let state = stream.info().await.map_err(|e| anyhow::anyhow!("cannot read {name}'s state: {e}"))?.state.clone();
        let range = StreamRange {
            stream: name.clone(),
            first_seq: state.first_sequence,
            last_seq: state.last_sequence,
            messages: state.messages,
        };
        sink(Frame::Stream(range))?;
        if state.messages == 0 || state.last_sequence == 0 {
            continue;
        }
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: state.first_sequence.max(1) },
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("cannot create an ordered consumer on {name}: {e}"))?;
        let mut messages = consumer.messages().await.map_err(|e| anyhow::anyhow!("cannot read {name}: {e}"))?;
        loop {
            let next = tokio::time::timeout(std::time::Duration::from_secs(READ_IDLE_TIMEOUT_S), messages.next())
                .await
                .map_err(|_| anyhow::anyhow!("{name} delivered nothing for {READ_IDLE_TIMEOUT_S} s"))?;
            let Some(item) = next else { anyhow::bail!("{name}: the ordered consumer ended early") };
            let message = item.map_err(|e| anyhow::anyhow!("reading {name}: {e}"))?;
            let info = message.info().map_err(|e| anyhow::anyhow!("{name}: message metadata: {e}"))?;
            let seq = info.stream_sequence;
            if seq > state.last_sequence {
                break;
            }
            let pending = info.pending;
            let time_unix_ns = u64::try_from(info.published.unix_timestamp_nanos()).unwrap_or(0);
            let msg_id = message
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .map(|v| v.as_str().to_owned());
            sink(Frame::Message(ExportedMessage {
                stream: name.clone(),
                seq,
                subject: message.subject.to_string(),
                time_unix_ns,
                msg_id,
                payload: message.payload.to_vec(),
            }))?;
            if seq >= state.last_sequence || pending == 0 {
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Frame> {
        vec![
            Frame::Stream(StreamRange { stream: "KL_CONTROL_V1".into(), first_seq: 1, last_seq: 3, messages: 2 }),
            Frame::Message(ExportedMessage {
                stream: "KL_CONTROL_V1".into(),
                seq: 1,
                subject: "kl.v1.ctl.1.key.a".into(),
                time_unix_ns: 1_700_000_000_123_456_789,
                msg_id: Some("00ff".into()),
                payload: vec![1, 2, 3],
            }),
            Frame::Message(ExportedMessage {
                stream: "KL_CONTROL_V1".into(),
                seq: 3,
                subject: "kl.v1.ctl.1.key.a".into(),
                time_unix_ns: 1,
                msg_id: None,
                payload: vec![],
            }),
        ]
    }

    fn write(frames: &[Frame]) -> Vec<u8> {
        let mut w = ExportWriter::new(Vec::new(), 42, "test").unwrap();
        for f in frames {
            w.write(f).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn frames_round_trip_with_their_sequences_untouched() {
        let bytes = write(&sample());
        let reader = ExportReader::new(&bytes[..]).unwrap();
        assert_eq!(reader.header().created_unix_ms, 42);
        assert_eq!(reader.header().writer, "test");
        let frames: Vec<Frame> = reader.map(Result::unwrap).collect();
        assert_eq!(frames, sample());
    }

    #[test]
    fn a_truncated_file_or_trailing_bytes_are_refused() {
        let bytes = write(&sample());
        for cut in [bytes.len() - 1, bytes.len() - 9, 30] {
            let result: Result<Vec<Frame>, _> = ExportReader::new(&bytes[..cut]).unwrap().collect();
            assert!(matches!(result, Err(ExportError::Truncated)), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let result: Result<Vec<Frame>, _> = ExportReader::new(&longer[..]).unwrap().collect();
        assert!(matches!(result, Err(ExportError::Malformed { .. })));
        let mut other = bytes;
        other[0] = b'X';
        assert!(matches!(ExportReader::new(&other[..]), Err(ExportError::BadMagic)));
    }

    #[test]
    fn only_the_record_streams_and_the_checkpoints_are_exported() {
        assert!(is_exported_stream("KL_CONTROL_V1"));
        assert!(is_exported_stream("KL_USAGE_V1_202612"));
        assert!(!is_exported_stream("KL_MATERIAL_V1"));
        assert!(is_exported_stream("KL_CHECKPOINT_V1"));
        assert!(!is_record_stream("KL_CHECKPOINT_V1"));
        assert!(!is_exported_stream("KL_USAGE_V1_2026"));
    }
}
