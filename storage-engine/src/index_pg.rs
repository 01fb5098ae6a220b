//! The shared index: PostgreSQL (SHARED.md D1), for several berth nodes serving one registry.
//!
//! Rules:
//! - One table `kv(cf smallint, k bytea, v bytea, primary key (cf, k))` in the configured
//!   schema holds every family ([`Cf::id`]); bytea compares bytewise, as RocksDB's default
//!   comparator, so scans see the same order. Migrations run at open under an advisory lock
//!   (several nodes may start at once); a schema written by a newer berth is refused.
//! - A batch is one statement (a `DELETE` in a CTE and an `INSERT ... ON CONFLICT`), so it
//!   commits atomically in one round trip, durably (`synchronous_commit` as the server says).
//!   Its rows go in key order, so batches of two nodes that share rows lock them in the same
//!   order; one the server still cancels as a deadlock is run again ([`WRITE_ATTEMPTS`]).
//! - Locks between nodes are session advisory locks ([`RemoteLocks`]) on a connection of a
//!   second pool, taken after the node's own striped lock (lock.rs) and released when the
//!   holder drops; the holder's writes go through that connection, so a holder whose
//!   connection died (and whose locks the server released) cannot write. Two pools, so a
//!   holder waiting for a read connection never waits behind other holders.
//! - The connections are driven by a runtime of the index's own (one thread): the engine's
//!   callers run on many current-thread runtimes, and a connection spawned on one of them
//!   would stall whenever that runtime is busy or gone. Futures of the client only wait on
//!   channels, so any executor can await them (index.rs `block_on` included).
//! - Errors are `StorageError::Index` with PostgreSQL's message (the server's, not only the
//!   client's "db error"); the URL (and its password) is never in a message or a log line.
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use sha2::{Digest as _, Sha256};
use tokio::runtime::Handle;
use tokio_postgres::NoTls;

use super::{Batch, Cf};
use crate::error::StorageError;

#[path = "index_pg_node.rs"]
mod node;
use node::{keep_node_lock, take_node_lock};

/// How to reach the PostgreSQL index.
#[derive(Clone)]
pub struct PostgresOptions {
    /// A libpq-style URL or key=value string (`postgres://user:password@host:port/db`).
    pub url: String,
    /// The schema holding berth's tables (created when missing): a lowercase identifier.
    pub schema: String,
    /// Connections per pool (two pools: reads and writes, lock holders).
    pub pool_size: usize,
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PostgresOptions")
            .field("url", &"<redacted>")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// The schema's version this berth writes; each migration moves it up by one.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE kv (cf smallint NOT NULL, k bytea NOT NULL, v bytea NOT NULL, \
     PRIMARY KEY (cf, k))",
];
/// How often a batch is tried when it conflicts with another ([`conflicted`]).
const WRITE_ATTEMPTS: u64 = 5;
/// How long a lock holder waits for another node's lock before the request fails.
const LOCK_TIMEOUT: &str = "60s";

const GET: &str = "SELECT v FROM kv WHERE cf = $1 AND k = $2";
const SCAN_BOUNDED: &str =
    "SELECT k, v FROM kv WHERE cf = $1 AND k >= $2 AND k < $3 ORDER BY k LIMIT $4";
/// Count and sum of the u64 (big-endian) each value of a family starts with (`blobs`: size).
const SIZE_TOTALS: &str = "SELECT count(*)::int8, coalesce(sum(('x' || \
     encode(substring(v from 1 for 8), 'hex'))::bit(64)::int8), 0)::int8 FROM kv WHERE cf = $1";
const COUNT: &str = "SELECT count(*)::int8 FROM kv WHERE cf = $1";
const SCAN_OPEN: &str = "SELECT k, v FROM kv WHERE cf = $1 AND k >= $2 ORDER BY k LIMIT $3";
const WRITE: &str = "WITH gone AS (DELETE FROM kv WHERE (cf, k) IN \
     (SELECT * FROM unnest($4::int2[], $5::bytea[]))) \
     INSERT INTO kv (cf, k, v) SELECT * FROM unnest($1::int2[], $2::bytea[], $3::bytea[]) \
     ON CONFLICT (cf, k) DO UPDATE SET v = EXCLUDED.v";

pub(crate) struct PgIndex {
    pool: Pool,
    lock_pool: Pool,
    handle: Handle,
    /// Opened for reading only (fsck next to running nodes): writes are refused.
    read_only: bool,
    /// This node's random id. Its node lock (`node_alive`) is held by a task on the index's
    /// runtime for as long as the index is open (not when read-only).
    node: u64,
    _runtime: IndexRuntime,
}

/// A current-thread runtime driven by a thread of its own until dropped.
struct IndexRuntime {
    handle: Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl IndexRuntime {
    fn start() -> Result<IndexRuntime, StorageError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| pg_error("its runtime", e))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("berth-postgres".into())
            .spawn(move || {
                // Ends when the sender is dropped as well as when it sends.
                let _ = runtime.block_on(stopped);
            })
            .map_err(|e| pg_error("its thread", e))?;
        Ok(IndexRuntime {
            handle,
            stop: Some(stop),
        })
    }
}

impl Drop for IndexRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Connects on the index's runtime and leaves the connection's task there.
struct SpawnConnect(Handle);

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl deadpool_postgres::Connect for SpawnConnect {
    fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> BoxFuture<
        '_,
        Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        let handle = self.0.clone();
        let config = config.clone();
        Box::pin(async move {
            let spawner = handle.clone();
            let connected = handle.spawn(async move {
                let (client, connection) = config.connect(NoTls).await?;
                let task = spawner.spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::warn!(%error, "PostgreSQL index connection closed");
                    }
                });
                Ok((client, task))
            });
            match connected.await {
                Ok(result) => result,
                Err(error) => std::panic::resume_unwind(error.into_panic()),
            }
        })
    }
}

/// `StorageError::Index` with `error` and its causes: the client's error for a failed
/// statement says only "db error"; the server's message (`ERROR: deadlock detected`) is its
/// source.
pub(crate) fn pg_error(context: &str, error: impl std::error::Error) -> StorageError {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let text = next.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        cause = next.source();
    }
    StorageError::Index(format!("PostgreSQL index: {context}: {message}"))
}

/// Whether a statement failed only because it met another transaction (a deadlock the
/// server broke by cancelling it, or a serialization failure): nothing of it was applied, and
/// running it again is correct.
fn conflicted(error: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    error.code().is_some_and(|code| {
        *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// A plain lowercase identifier (it is written into statements and `search_path`).
fn valid_schema(schema: &str) -> bool {
    let mut chars = schema.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && schema.len() <= 63
}

impl PgIndex {
    /// Connects, then creates or upgrades the schema (unless `read_only`, which only checks
    /// that a schema this berth can read is there). Blocking.
    pub(crate) fn open(
        options: &PostgresOptions,
        read_only: bool,
    ) -> Result<PgIndex, StorageError> {
        if !valid_schema(&options.schema) {
            return Err(StorageError::Index(format!(
                "PostgreSQL index: schema {:?} is not a lowercase identifier",
                options.schema
            )));
        }
        let mut config: tokio_postgres::Config = options
            .url
            .parse()
            .map_err(|e| pg_error("the URL does not parse", e))?;
        let base_options = config.get_options().unwrap_or("").to_string();
        let search_path = format!("{base_options} -c search_path={}", options.schema);
        config.options(search_path.trim());
        let mut lock_config = config.clone();
        lock_config.options(format!("{search_path} -c lock_timeout={LOCK_TIMEOUT}"));
        let runtime = IndexRuntime::start()?;
        let handle = runtime.handle.clone();
        let pool = |config: tokio_postgres::Config, size: usize| {
            let manager = Manager::from_connect(
                config,
                SpawnConnect(handle.clone()),
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(manager)
                .max_size(size.max(1))
                .build()
                .map_err(|e| pg_error("pool", e))
        };
        let node_pool = pool(config.clone(), 1)?;
        let index = PgIndex {
            pool: pool(config, options.pool_size)?,
            lock_pool: pool(lock_config, options.pool_size)?,
            handle,
            read_only,
            node: uuid::Uuid::new_v4().as_u64_pair().0,
            _runtime: runtime,
        };
        super::block_on(index.migrate(&options.schema, read_only))?;
        if !read_only {
            let held = super::block_on(take_node_lock(&node_pool, index.node))?;
            index
                .handle
                .spawn(keep_node_lock(node_pool, index.node, held));
        }
        Ok(index)
    }

    /// This node's id: what its upload sessions' leases name (upload_shared.rs).
    pub(crate) fn node(&self) -> u64 {
        self.node
    }

    async fn migrate(&self, schema: &str, read_only: bool) -> Result<(), StorageError> {
        let client = self.client().await?;
        let version_of = async |client: &Object| -> Result<usize, StorageError> {
            let exists = client
                .query_one("SELECT to_regclass('berth_schema') IS NOT NULL", &[])
                .await
                .map_err(|e| pg_error("reading the schema version", e))?
                .get::<_, bool>(0);
            if !exists {
                return Ok(0);
            }
            let row = client
                .query_one("SELECT version FROM berth_schema", &[])
                .await
                .map_err(|e| pg_error("reading the schema version", e))?;
            Ok(row.get::<_, i32>(0) as usize)
        };
        let newer = |version: usize| {
            StorageError::Index(format!(
                "PostgreSQL index: schema {schema} is at version {version}, written by a newer \
                 berth (this one knows {}): upgrade berth",
                MIGRATIONS.len()
            ))
        };
        if read_only {
            return match version_of(&client).await? {
                0 => Err(StorageError::Index(format!(
                    "PostgreSQL index: no berth tables in schema {schema}: start the daemon once"
                ))),
                version if version > MIGRATIONS.len() => Err(newer(version)),
                _ => Ok(()),
            };
        }
        let key = lock_key(b'M', schema);
        client
            .execute("SELECT pg_advisory_lock($1)", &[&key])
            .await
            .map_err(|e| pg_error("waiting for the migration lock", e))?;
        let migrated = async {
            client
                .batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS {schema}; \
                     CREATE TABLE IF NOT EXISTS berth_schema (version integer NOT NULL); \
                     INSERT INTO berth_schema SELECT 0 WHERE NOT EXISTS (SELECT FROM berth_schema)"
                ))
                .await
                .map_err(|e| pg_error("creating the schema", e))?;
            let version = version_of(&client).await?;
            if version > MIGRATIONS.len() {
                return Err(newer(version));
            }
            for (step, sql) in MIGRATIONS.iter().enumerate().skip(version) {
                client
                    .batch_execute(&format!(
                        "BEGIN; {sql}; UPDATE berth_schema SET version = {}; COMMIT",
                        step + 1
                    ))
                    .await
                    .map_err(|e| pg_error(&format!("migration {}", step + 1), e))?;
                tracing::info!(schema, version = step + 1, "PostgreSQL index migrated");
            }
            Ok(())
        }
        .await;
        let unlocked = client
            .execute("SELECT pg_advisory_unlock($1)", &[&key])
            .await
            .map_err(|e| pg_error("releasing the migration lock", e));
        migrated.and(unlocked.map(drop))
    }

    async fn client(&self) -> Result<Object, StorageError> {
        self.pool
            .get()
            .await
            .map_err(|e| pg_error("no connection", e))
    }

    pub(crate) async fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(GET)
            .await
            .map_err(|e| pg_error("prepare", e))?;
        let row = client
            .query_opt(&statement, &[&cf.id(), &key])
            .await
            .map_err(|e| pg_error("read", e))?;
        Ok(row.map(|row| row.get::<_, Vec<u8>>(0)))
    }

    /// The number of records of `cf` and the sum of the u64 each value starts with, counted
    /// by the server (one round trip whatever the family's size; `blobs`: sizes).
    pub(crate) async fn size_totals(&self, cf: Cf) -> Result<(u64, u64), StorageError> {
        let client = self.client().await?;
        let row = client
            .query_one(SIZE_TOTALS, &[&cf.id()])
            .await
            .map_err(|e| pg_error("totals", e))?;
        let (count, sum): (i64, i64) = (row.get(0), row.get(1));
        Ok((count.max(0) as u64, sum as u64))
    }

    /// The number of records of `cf`, counted by the server.
    pub(crate) async fn count(&self, cf: Cf) -> Result<u64, StorageError> {
        let client = self.client().await?;
        let row = client
            .query_one(COUNT, &[&cf.id()])
            .await
            .map_err(|e| pg_error("count", e))?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    /// Up to `limit` entries of `cf` from `from` (inclusive) to `until` (exclusive), in order.
    pub(crate) async fn scan(
        &self,
        cf: Cf,
        from: &[u8],
        until: Option<&[u8]>,
        limit: i64,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageError> {
        let client = self.client().await?;
        let rows = match until {
            Some(until) => {
                let statement = client.prepare_cached(SCAN_BOUNDED).await;
                let statement = statement.map_err(|e| pg_error("prepare", e))?;
                client
                    .query(&statement, &[&cf.id(), &from, &until, &limit])
                    .await
            }
            None => {
                let statement = client.prepare_cached(SCAN_OPEN).await;
                let statement = statement.map_err(|e| pg_error("prepare", e))?;
                client.query(&statement, &[&cf.id(), &from, &limit]).await
            }
        }
        .map_err(|e| pg_error("scan", e))?;
        Ok(rows
            .into_iter()
            .map(|row| (row.get::<_, Vec<u8>>(0), row.get::<_, Vec<u8>>(1)))
            .collect())
    }

    /// Applies `batch` in one statement: on the lock holder's connection when given.
    pub(crate) async fn write(
        &self,
        batch: &Batch,
        held: Option<&RemoteLocks>,
    ) -> Result<(), StorageError> {
        if self.read_only {
            return Err(StorageError::Index("engine opened read-only".into()));
        }
        if batch.is_empty() {
            return Ok(());
        }
        // RocksDB applies a batch's ops in order; one statement cannot touch a row twice, so
        // the last op on each key stands for them all. Rows go in key order, so two batches
        // lock the rows they share in the same order (no deadlock between them).
        let mut last: BTreeMap<(i16, &[u8]), Option<&[u8]>> = BTreeMap::new();
        for (cf, key, value) in batch.ops() {
            last.insert((cf.id(), key), value.as_deref());
        }
        let (mut put_cf, mut put_key, mut put_value) = (Vec::new(), Vec::new(), Vec::new());
        let (mut gone_cf, mut gone_key) = (Vec::new(), Vec::new());
        for ((cf, key), value) in last {
            match value {
                Some(value) => {
                    put_cf.push(cf);
                    put_key.push(key);
                    put_value.push(value);
                }
                None => {
                    gone_cf.push(cf);
                    gone_key.push(key);
                }
            }
        }
        let pooled;
        let client = match held {
            Some(held) => held.client()?,
            None => {
                pooled = self.client().await?;
                &pooled
            }
        };
        let statement = client
            .prepare_cached(WRITE)
            .await
            .map_err(|e| pg_error("prepare", e))?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&put_cf, &put_key, &put_value, &gone_cf, &gone_key];
        let mut attempt = 1;
        loop {
            match client.execute(&statement, &params).await {
                Ok(_) => return Ok(()),
                // The DELETE in the CTE may still lock rows in another order than a
                // concurrent batch; the server then cancels one of the two. Again at once:
                // the other holds its row locks until it commits, so this one waits for it
                // there (no timer: callers may poll this future outside a Tokio runtime).
                Err(error) if conflicted(&error) && attempt < WRITE_ATTEMPTS => {
                    tracing::debug!(%error, attempt, "PostgreSQL index: write conflicted; again");
                    attempt += 1;
                }
                Err(error) => return Err(pg_error("write", error)),
            }
        }
    }

    /// Takes the advisory locks `keys` (each `(key, shared)`) on `remote`'s connection,
    /// taking a connection for it first when it has none. Several keys are taken in key
    /// order, so two holders never deadlock on them.
    pub(crate) async fn lock(
        &self,
        remote: &mut Option<RemoteLocks>,
        keys: &mut [(i64, bool)],
    ) -> Result<(), StorageError> {
        if remote.is_none() {
            let client = self
                .lock_pool
                .get()
                .await
                .map_err(|e| pg_error("no connection for a lock", e))?;
            *remote = Some(RemoteLocks {
                client: Some(client),
                handle: self.handle.clone(),
            });
        }
        let client = remote.as_ref().expect("set above").client()?;
        keys.sort_unstable();
        for shared in [false, true] {
            let wanted: Vec<i64> = keys
                .iter()
                .filter(|(_, is_shared)| *is_shared == shared)
                .map(|(key, _)| *key)
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let function = match shared {
                true => "pg_advisory_lock_shared",
                false => "pg_advisory_lock",
            };
            client
                .execute(
                    &format!("SELECT {function}(k) FROM unnest($1::int8[]) AS k"),
                    &[&wanted],
                )
                .await
                .map_err(|e| pg_error("taking a lock", e))?;
        }
        Ok(())
    }
}

/// The advisory lock key of `name` in namespace `kind`: the first 8 bytes of a SHA-256, the
/// same on every node and every build (a std hasher is not stable across Rust versions).
pub(crate) fn lock_key(kind: u8, name: &str) -> i64 {
    let hash = Sha256::new()
        .chain_update([kind, 0])
        .chain_update(name.as_bytes())
        .finalize();
    i64::from_be_bytes(hash[..8].try_into().expect("8 bytes"))
}

/// A connection holding advisory locks. Dropping it releases them (on the index's runtime,
/// without waiting); a connection that fails to release them is closed, which releases
/// them too.
pub(crate) struct RemoteLocks {
    client: Option<Object>,
    handle: Handle,
}

impl RemoteLocks {
    fn client(&self) -> Result<&Object, StorageError> {
        self.client
            .as_ref()
            .ok_or_else(|| StorageError::Index("PostgreSQL index: lock already released".into()))
    }
}

impl Drop for RemoteLocks {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            self.handle.spawn(async move {
                if client
                    .batch_execute("SELECT pg_advisory_unlock_all()")
                    .await
                    .is_err()
                {
                    drop(Object::take(client));
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(valid_schema("berth"));
        assert!(valid_schema("_b2"));
        assert!(!valid_schema("Berth"));
        assert!(!valid_schema("2b"));
        assert!(!valid_schema("b;drop"));
        assert!(!valid_schema(""));
        assert!(!valid_schema(&"b".repeat(64)));
    }

    #[test]
    fn lock_keys_are_stable_and_namespaced() {
        assert_eq!(
            lock_key(b'R', "library/alpine"),
            lock_key(b'R', "library/alpine")
        );
        assert_ne!(
            lock_key(b'R', "library/alpine"),
            lock_key(b'L', "library/alpine")
        );
        // Fixed forever: nodes of different builds must agree on it.
        assert_eq!(lock_key(b'R', "a"), 8572912146651469405);
    }

    #[test]
    fn options_debug_hides_the_url() {
        let options = PostgresOptions {
            url: "postgres://berth:secret@db/berth".into(),
            schema: "berth".into(),
            pool_size: 4,
        };
        assert!(!format!("{options:?}").contains("secret"));
    }
}
