//! A small world for rulebook tests: a projection fed through the real event codec
//! (`keyledger_events::encode` / `decode`), a writer clock and a server clock, and helpers
//! that run requests the way keyd and cryptod do.
#![allow(dead_code)]

use keyledger_events::{
    codes, decode, encode, AggregateKind, Body, Event, ImportParametersIssuedV1, KeyCreatedV1, MaterialRefV1,
    PrincipalV1,
};
use keyledger_kms::{
    decide, due_actions, management_response, material_needed, parse_request, query, AggregateHead, Caller, Command,
    Ctx, Decision, ErrorKind, ImportedMaterial, KeyId, KmsError, Limits, Operation, Projection, Realm, Role,
};
use serde_json::Value;

pub const ACCOUNT: &str = "111122223333";
pub const OTHER_ACCOUNT: &str = "444455556666";
/// 2023-11-14T22:13:20Z
pub const T0: u64 = 1_700_000_000_000;
pub const DAY: u64 = 86_400_000;
pub const MINUTE: u64 = 60_000;

pub fn caller(account: &str) -> Caller {
    Caller {
        account: account.to_owned(),
        principal: PrincipalV1 {
            kind: keyledger_events::principal_kind::NATS_USER,
            account: account.to_owned(),
            arn: format!("arn:aws:iam::{account}:user/dev"),
            nats_account: "TENANT".to_owned(),
            user: "dev".to_owned(),
        },
    }
}

/// Deterministic material commitment for (key, version).
pub fn material(key_id: &KeyId, version: u32) -> MaterialRefV1 {
    let mut input = key_id.as_bytes().to_vec();
    input.extend_from_slice(&version.to_le_bytes());
    MaterialRefV1 {
        version,
        material_id: *blake3::hash(&input).as_bytes(),
        root_key_id: [7; 16],
        wrapped_digest: *blake3::keyed_hash(&[1; 32], &input).as_bytes(),
    }
}

/// One stored record of the fake log.
#[derive(Clone)]
pub struct Stored {
    pub stream_seq: u64,
    pub server_time_unix_ms: u64,
    pub bytes: Vec<u8>,
}

pub struct World {
    pub p: Projection,
    pub realm: Realm,
    pub caller: Caller,
    pub limits: Limits,
    /// Writer clock (ms).
    pub now: u64,
    /// Server clock (ms) stamped on appended records; follows `now` unless `server_skew` set.
    pub server_skew: i64,
    pub log: Vec<Stored>,
    pub next_key: u64,
    /// What the shell would have prepared for the next GetParametersForImport.
    pub prepared_import_parameters: Option<ImportParametersIssuedV1>,
    /// What the shell would have prepared for the next ImportKeyMaterial.
    pub prepared_import: Option<ImportedMaterial>,
    /// What the shell would have verified from a RetireGrant token.
    pub retire_token: Option<keyledger_kms::decide::TokenGrant>,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    pub fn new() -> Self {
        Self {
            p: Projection::new(),
            realm: Realm::default(),
            caller: caller(ACCOUNT),
            limits: Limits::default(),
            now: T0,
            server_skew: 0,
            log: Vec::new(),
            next_key: 1,
            prepared_import_parameters: None,
            prepared_import: None,
            retire_token: None,
        }
    }

    pub fn server_now(&self) -> u64 {
        (self.now as i64 + self.server_skew) as u64
    }

    pub fn fresh_key_id(&mut self) -> KeyId {
        let n = self.next_key;
        self.next_key += 1;
        let mut b = [0u8; 16];
        b[8..].copy_from_slice(&n.to_be_bytes());
        b[6] = 0x40; // version 4
        b[8] = 0x80; // variant
        KeyId::from_bytes(b)
    }

    pub fn arn(&self, id: &KeyId) -> String {
        self.realm.key_arn(ACCOUNT, id)
    }

    /// Encodes `body` as the next event of its aggregate (per the projection's head), stores
    /// it, and applies it with the current server time.
    pub fn append(&mut self, d: &Decision) -> keyledger_kms::Applied {
        let stored = self.store(d);
        self.apply_stored(&stored).expect("own event applies")
    }

    /// Encodes and stores a decision without applying it.
    pub fn store(&mut self, d: &Decision) -> Stored {
        let seq = self.log.len() as u64 + 1;
        let mut event_id = [0u8; 16];
        event_id[..8].copy_from_slice(&seq.to_be_bytes());
        let draft = d.draft(event_id, self.now, self.caller.principal.clone(), [9; 16]);
        let (bytes, _) = encode(&draft, &d.body).expect("encodes");
        let stored = Stored { stream_seq: seq, server_time_unix_ms: self.server_now(), bytes };
        self.log.push(stored.clone());
        stored
    }

    pub fn apply_stored(&mut self, s: &Stored) -> Result<keyledger_kms::Applied, keyledger_kms::ApplyError> {
        let event = decode(&s.bytes).expect("decodes");
        self.p.apply(s.stream_seq, s.server_time_unix_ms, &event)
    }

    /// Appends a raw body to an aggregate at its current head (a "given" event).
    pub fn given(&mut self, kind: AggregateKind, account: &str, id: &str, body: Body) {
        let head = self.p.head(kind, account, id);
        let d = Decision { aggregate_kind: kind, account: account.to_owned(), aggregate_id: id.to_owned(), head, body };
        self.append(&d);
    }

    /// A key created directly from events (e.g. an EXTERNAL key in PendingImport).
    pub fn given_key(&mut self, origin: u16, material: bool) -> KeyId {
        let id = self.fresh_key_id();
        let body = Body::KeyCreated(KeyCreatedV1 {
            key_spec: codes::key_spec::SYMMETRIC_DEFAULT,
            key_usage: codes::key_usage::ENCRYPT_DECRYPT,
            origin,
            description: String::new(),
            tags: vec![],
            multi_region: false,
            material: material.then(|| self::material(&id, 1)),
        });
        self.given(AggregateKind::Key, ACCOUNT, &id.to_string(), body);
        id
    }

    /// Parses and decides a management request (no append). Material is prepared as keyd would.
    pub fn decide(&mut self, op: Operation, json: &str) -> Result<Option<Decision>, KmsError> {
        let request = parse_request(op, json.as_bytes())?;
        let command = Command::Request(request);
        self.decide_command(&command)
    }

    pub fn decide_command(&mut self, command: &Command) -> Result<Option<Decision>, KmsError> {
        let new_key_id = self.fresh_key_id();
        let need = material_needed(&self.p, &self.realm, &self.caller, command, &new_key_id, self.now)?;
        let ctx = Ctx {
            new_material: need.map(|n| material(&n.key_id, n.version)),
            import_parameters: self.prepared_import_parameters.clone(),
            imported: self.prepared_import.clone(),
            new_grant_id: [*new_key_id.as_bytes(), *new_key_id.as_bytes()].concat().try_into().unwrap(),
            retire_token: self.retire_token.take(),
            ..Ctx::new(self.now, new_key_id)
        };
        decide(&self.p, &self.realm, &self.caller, command, &ctx, &self.limits)
    }

    /// Runs a request end to end: management → decide, append, reply; read → query.
    pub fn run(&mut self, op: Operation, json: &str) -> Result<Value, KmsError> {
        match op.role() {
            Role::Management => {
                let request = parse_request(op, json.as_bytes())?;
                let command = Command::Request(request);
                let d = self.decide_command(&command)?;
                if let Some(d) = &d {
                    self.append(d);
                }
                let Command::Request(request) = &command else { unreachable!() };
                management_response(&self.p, &self.realm, &self.caller, request, d.as_ref())
            }
            Role::Read => {
                let request = parse_request(op, json.as_bytes())?;
                query(&self.p, &self.realm, &self.caller, &request, self.now).map(|a| a.body)
            }
            Role::Crypto => panic!("crypto operations are not run here"),
        }
    }

    /// Runs and expects success.
    pub fn ok(&mut self, op: Operation, json: &str) -> Value {
        match self.run(op, json) {
            Ok(v) => v,
            Err(e) => panic!("{op} {json} failed: {e}"),
        }
    }

    /// Runs and expects an error; returns (kind, message).
    pub fn err(&mut self, op: Operation, json: &str) -> (ErrorKind, String) {
        match self.run(op, json) {
            Ok(v) => panic!("{op} {json} succeeded: {v}"),
            Err(e) => (e.kind, e.message),
        }
    }

    pub fn create_key(&mut self) -> KeyId {
        let v = self.ok(Operation::CreateKey, "{}");
        v["KeyMetadata"]["KeyId"].as_str().unwrap().parse().unwrap()
    }

    pub fn key_state(&self, id: &KeyId) -> Option<keyledger_kms::KeyState> {
        self.p.key(ACCOUNT, id).map(|k| k.state)
    }

    /// Runs every due action at the current time (as the service principal), appending what
    /// is decided; returns the number of events appended.
    pub fn tick(&mut self) -> usize {
        let commands = due_actions(&self.p, self.now, 100);
        let mut n = 0;
        for c in commands {
            if let Some(d) = self.decide_command(&c).expect("due action decides") {
                self.append(&d);
                n += 1;
            }
        }
        n
    }

    /// A fresh projection fed the whole log.
    pub fn replay(&self) -> Projection {
        let mut p = Projection::new();
        for s in &self.log {
            let e: Event = decode(&s.bytes).unwrap();
            p.apply(s.stream_seq, s.server_time_unix_ms, &e).unwrap();
        }
        p
    }

    pub fn head_of(&self, id: &KeyId) -> AggregateHead {
        self.p.head(AggregateKind::Key, ACCOUNT, &id.to_string())
    }
}

/// Substitutes `{id}` and `{arn}` in a template.
pub fn fill(template: &str, id: &KeyId, arn: &str) -> String {
    template.replace("{id}", &id.to_string()).replace("{arn}", arn)
}
