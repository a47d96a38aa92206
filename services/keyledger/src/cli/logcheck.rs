//! `keyledger export` and `keyledger verify`: the thin I/O around [`crate::export`] and
//! [`crate::verify`].
//!
//! Both connect as the service user (the service profile `keyledger dev` writes to
//! `<data-dir>/service.json`, or `--service-profile`), read the control stream and every usage
//! stream, and never create, change or delete a stream.

use std::io::{BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use keyledger_nats_server::ServiceProfile;

use crate::export::{read_streams, ExportReader, ExportWriter, Frame};
use crate::verify::{Anchors, TrustedHead, Verifier};

/// Exit code of `verify` and `export` for a usage or I/O error.
pub const EXIT_IO: u8 = 3;

/// How long between two progress line updates.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// Where the log is: a service profile.
#[derive(clap::Args, Debug)]
pub struct LogConnection {
    /// Data directory of `keyledger dev` (its `service.json` is the default service profile).
    #[arg(long, default_value = ".keyledger", env = "KEYLEDGER_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Service profile (JSON) with the NATS URL and the service user's credentials.
    #[arg(long, env = "KEYLEDGER_SERVICE_PROFILE")]
    pub service_profile: Option<PathBuf>,
}

impl LogConnection {
    /// Connects and returns a JetStream context.
    ///
    /// # Errors
    /// Unreadable profile or invalid URL.
    pub async fn jetstream(&self) -> anyhow::Result<async_nats::jetstream::Context> {
        let path = self.service_profile.clone().unwrap_or_else(|| self.data_dir.join("service.json"));
        let profile = ServiceProfile::read_from(&path).with_context(|| {
            format!(
                "cannot read the service profile {} (start `keyledger dev`, or pass --service-profile)",
                path.display()
            )
        })?;
        Ok(keyledger_log::jetstream(super::connect_service(&profile).await?))
    }
}

/// `keyledger export` arguments.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Output file (written through a temporary file, renamed when complete).
    #[arg(long)]
    pub to: PathBuf,
    /// Replace --to if it exists.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub connection: LogConnection,
}

/// `keyledger verify` arguments.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// An export file to verify (instead of the live streams).
    #[arg(long, conflicts_with = "service_profile")]
    pub file: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Findings listed in the report (all are counted).
    #[arg(long, default_value_t = 20)]
    pub max_findings: usize,
    /// The log's verifier key (what `keyledger checkpoint key` prints), or `@FILE` holding it.
    /// Default: the public half of `<data-dir>/checkpoint.key` when that file exists. Without
    /// it no checkpoint is checked and the verdict is at best INCOMPLETE.
    #[arg(long)]
    pub log_key: Option<String>,
    /// A checkpoint kept outside the log: a signed checkpoint note file, or a witness's state
    /// file (`state.json` of `keyledger witness serve`). The log must not be shorter and must
    /// have the same root at its size (else TRUNCATED / FORK). Repeatable.
    #[arg(long)]
    pub trusted_checkpoint: Vec<PathBuf>,
    #[command(flatten)]
    pub connection: LogConnection,
}

impl VerifyArgs {
    /// The anchors of `--log-key` (or the data directory's key) and `--trusted-checkpoint`.
    ///
    /// # Errors
    /// Unreadable files, a key that does not parse, a trusted checkpoint that is neither a
    /// checkpoint signed by the log key nor a witness state.
    pub fn anchors(&self) -> anyhow::Result<Anchors> {
        use keyledger_transparency::{Checkpoint, Note, WitnessState};
        let log_key = match &self.log_key {
            Some(text) => Some(crate::witness::parse_log_key_arg(text)?),
            None => {
                let path = self.connection.data_dir.join(super::dev::CHECKPOINT_KEY_FILE);
                if path.exists() {
                    let key = crate::checkpointer::LogKey::load(&path)?;
                    eprintln!("log key: {} (from {})", key.verifier(), path.display());
                    Some(key.verifier())
                } else {
                    None
                }
            }
        };
        let mut trusted = Vec::new();
        for path in &self.trusted_checkpoint {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let source = path.display().to_string();
            if text.trim_start().starts_with('{') {
                let state = WitnessState::from_json(&text)
                    .map_err(|e| anyhow::anyhow!("{source} is not a witness state: {e}"))?;
                for (origin, head) in state.heads() {
                    // The witness recorded the note it cosigned: it must verify under the log
                    // key and say what the entry says, or the entry is not evidence.
                    if let Some(key) = &log_key {
                        check_witness_head(key, origin, head).with_context(|| format!("{source}: {origin}"))?;
                    }
                    trusted.push(TrustedHead {
                        origin: origin.to_owned(),
                        size: head.size,
                        root: head.root,
                        source: source.clone(),
                    });
                }
                continue;
            }
            let note = Note::parse(text.as_bytes()).map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
            let checkpoint = Checkpoint::parse(note.text()).map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
            if let Some(key) = &log_key {
                use keyledger_transparency::note::Verifier as _;
                let stream = crate::checkpointer::stream_of_origin(key.name(), &checkpoint.origin)
                    .with_context(|| format!("{source}: origin {:?} is not this log's", checkpoint.origin))?;
                let verifier = crate::checkpointer::verifier_for(key, stream)?;
                keyledger_transparency::SignedCheckpoint::open(text.as_bytes(), &verifier)
                    .map_err(|e| anyhow::anyhow!("{source} is not signed by the log key: {e}"))?;
            }
            trusted.push(TrustedHead {
                origin: checkpoint.origin,
                size: checkpoint.size,
                root: checkpoint.root,
                source,
            });
        }
        Ok(Anchors { log_key, trusted })
    }
}

/// A progress line on stderr, redrawn at most every [`PROGRESS_EVERY`] when stderr is a
/// terminal.
struct Progress {
    enabled: bool,
    last: Instant,
    stream: String,
    done: u64,
    total: u64,
}

impl Progress {
    fn new() -> Self {
        Self {
            enabled: std::io::stderr().is_terminal(),
            last: Instant::now(),
            stream: String::new(),
            done: 0,
            total: 0,
        }
    }

    fn frame(&mut self, frame: &Frame) {
        match frame {
            Frame::Stream(s) => {
                self.stream = s.stream.clone();
                self.done = 0;
                self.total = s.messages;
                self.draw();
            }
            Frame::Message(_) => {
                self.done += 1;
                if self.last.elapsed() >= PROGRESS_EVERY || self.done == self.total {
                    self.draw();
                }
            }
        }
    }

    fn draw(&mut self) {
        if self.enabled {
            self.last = Instant::now();
            eprint!("\r\x1b[K{}: {}/{} messages", self.stream, self.done, self.total);
        }
    }

    fn end(&self) {
        if self.enabled {
            eprint!("\r\x1b[K");
        }
    }
}

/// Runs `keyledger export`: exit 0 when written, 3 on a usage or I/O error.
pub async fn export(args: ExportArgs) -> ExitCode {
    match export_inner(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_IO)
        }
    }
}

async fn export_inner(args: &ExportArgs) -> anyhow::Result<()> {
    if args.to.exists() && !args.force {
        anyhow::bail!("{} exists (pass --force to replace it)", args.to.display());
    }
    let dir = match args.to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let js = args.connection.jetstream().await?;
    let temp = tempfile::NamedTempFile::new_in(&dir).with_context(|| format!("cannot write in {}", dir.display()))?;
    let now_ms = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let mut writer =
        ExportWriter::new(BufWriter::new(temp.as_file()), now_ms, &format!("keyledger {}", env!("CARGO_PKG_VERSION")))?;
    let mut progress = Progress::new();
    let mut counts: Vec<(String, u64, u64, u64)> = Vec::new();
    read_streams(&js, |frame| {
        progress.frame(&frame);
        match &frame {
            Frame::Stream(s) => counts.push((s.stream.clone(), 0, 0, 0)),
            Frame::Message(m) => {
                if let Some(c) = counts.last_mut() {
                    c.1 += 1;
                    if c.2 == 0 {
                        c.2 = m.seq;
                    }
                    c.3 = m.seq;
                }
            }
        }
        writer.write(&frame).map_err(anyhow::Error::from)
    })
    .await?;
    progress.end();
    let total = writer.messages();
    writer.finish()?.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    temp.persist(&args.to).with_context(|| format!("cannot rename into {}", args.to.display()))?;
    for (stream, n, first, last) in &counts {
        if *n == 0 {
            println!("{stream}: 0 messages");
        } else {
            println!("{stream}: {n} messages (sequences {first}..={last})");
        }
    }
    println!("exported {total} messages from {} streams to {}", counts.len(), args.to.display());
    Ok(())
}

/// Runs `keyledger verify`: exit 0 verified (every record covered by a verified checkpoint),
/// 1 integrity violation, 2 incomplete (unanchored tail, or no log key), 3 usage or I/O error.
pub async fn verify(args: VerifyArgs) -> ExitCode {
    let started = Instant::now();
    let anchors = match args.anchors() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(EXIT_IO);
        }
    };
    let result = match &args.file {
        Some(path) => verify_file(path, args.max_findings, anchors),
        None => verify_live(&args.connection, args.max_findings, anchors).await,
    };
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(EXIT_IO);
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_IO);
            }
        }
    } else {
        print!("{}", report.to_text());
        let elapsed = started.elapsed().as_secs_f64();
        eprintln!(
            "verified {} messages in {elapsed:.3} s ({:.0} messages/s)",
            report.checked.messages,
            report.checked.messages as f64 / elapsed.max(1e-9)
        );
    }
    let _ = std::io::stdout().flush();
    ExitCode::from(report.verdict.exit_code())
}

fn verify_file(path: &Path, max_findings: usize, anchors: Anchors) -> anyhow::Result<crate::verify::Report> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = ExportReader::new(BufReader::with_capacity(1 << 20, file))
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut verifier = Verifier::with_anchors(anchors);
    let mut progress = Progress::new();
    for frame in reader {
        let frame = frame.with_context(|| format!("cannot read {}", path.display()))?;
        progress.frame(&frame);
        verifier.frame(&frame);
    }
    progress.end();
    Ok(verifier.finish(max_findings))
}

async fn verify_live(
    connection: &LogConnection,
    max_findings: usize,
    anchors: Anchors,
) -> anyhow::Result<crate::verify::Report> {
    let js = connection.jetstream().await?;
    let mut verifier = Verifier::with_anchors(anchors);
    let mut progress = Progress::new();
    read_streams(&js, |frame| {
        progress.frame(&frame);
        verifier.frame(&frame);
        Ok(())
    })
    .await?;
    progress.end();
    Ok(verifier.finish(max_findings))
}

/// A witness state entry is evidence only when the note it holds is the log's signed
/// checkpoint of `origin` at the entry's size and root.
fn check_witness_head(
    key: &keyledger_transparency::NoteVerifier,
    origin: &str,
    head: &keyledger_transparency::LogHead,
) -> anyhow::Result<()> {
    use keyledger_transparency::note::Verifier as _;
    let stream = crate::checkpointer::stream_of_origin(key.name(), origin)
        .with_context(|| format!("origin {origin:?} is not this log's"))?;
    let verifier = crate::checkpointer::verifier_for(key, stream)?;
    let signed = keyledger_transparency::SignedCheckpoint::open(head.checkpoint.as_bytes(), &verifier)
        .map_err(|e| anyhow::anyhow!("the recorded checkpoint is not signed by the log key: {e}"))?;
    anyhow::ensure!(
        signed.checkpoint().size == head.size && signed.checkpoint().root == head.root,
        "the recorded size or root is not the one the recorded checkpoint signs"
    );
    Ok(())
}
