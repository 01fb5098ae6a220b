//! The node lock of the PostgreSQL index: every running node holds a session advisory lock
//! on its random node id, on a connection of its own, so another node can tell whether it
//! runs (`PgIndex::node_alive`): the database releases the lock when the node dies or its
//! connection closes, and the node takes it again after the server restarted.
use deadpool_postgres::{Object, Pool};

use super::{lock_key, pg_error, PgIndex};
use crate::error::StorageError;

impl PgIndex {
    /// Whether node `node` is running: its node lock is held. Tried and, when free,
    /// released again on the same connection (a connection that fails to release it is
    /// closed, which releases it).
    pub(crate) async fn node_alive(&self, node: u64) -> Result<bool, StorageError> {
        if node == self.node {
            return Ok(true);
        }
        let client = self.client().await?;
        let key = node_key(node);
        let taken: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await
            .map_err(|e| pg_error("testing a node lock", e))?
            .get(0);
        if taken
            && client
                .execute("SELECT pg_advisory_unlock($1)", &[&key])
                .await
                .is_err()
        {
            drop(Object::take(client));
        }
        Ok(!taken)
    }
}

/// The advisory lock a running node holds on its own id.
fn node_key(node: u64) -> i64 {
    lock_key(b'W', &format!("{node:016x}"))
}

/// How often the node lock's connection is checked, and retried after the server was gone.
const NODE_LOCK_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Takes node `node`'s lock on a connection of `pool` (one of its own, outside the other
/// pools' limits): the database releases it when the node dies.
pub(super) async fn take_node_lock(pool: &Pool, node: u64) -> Result<Object, StorageError> {
    let client = pool
        .get()
        .await
        .map_err(|e| pg_error("no connection for the node lock", e))?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&node_key(node)])
        .await
        .map_err(|e| pg_error("taking the node lock", e))?;
    Ok(client)
}

/// Holds the node lock while the index is open, taking it again when its connection closed
/// (the server restarted). Until then other nodes take this node for dead: they may take its
/// upload sessions over, which its writers notice at their next part or record
/// (upload_shared.rs).
pub(super) async fn keep_node_lock(pool: Pool, node: u64, mut held: Object) {
    loop {
        tokio::time::sleep(NODE_LOCK_CHECK).await;
        if !held.is_closed() {
            continue;
        }
        drop(Object::take(held));
        tracing::warn!("PostgreSQL index: the node lock's connection closed; taking it again");
        held = loop {
            match take_node_lock(&pool, node).await {
                Ok(client) => break client,
                Err(error) => {
                    tracing::warn!(%error, "PostgreSQL index: node lock");
                    tokio::time::sleep(NODE_LOCK_CHECK).await;
                }
            }
        };
        tracing::info!("PostgreSQL index: node lock taken again");
    }
}
