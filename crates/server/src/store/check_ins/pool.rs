//! The writer through the pool (PostgreSQL; SQLite in memory): a task on the runtime that
//! stores a batch at a time in one transaction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::{AnyPool, Row};
use tokio::sync::mpsc;

use super::statements::{in_order, plan, select_stored, Value};
use super::{answer, take, Job, Message, MAX_BATCH, ROWS_PER_STATEMENT};
use crate::store::StoreError;

/// The writer task (through the pool): a batch at a time until stopped (then what is
/// queued) or every sender is gone.
pub(super) async fn run(pool: AnyPool, batches: Arc<AtomicU64>, mut rx: mpsc::Receiver<Message>) {
    let mut messages = Vec::with_capacity(MAX_BATCH);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        if rx.recv_many(&mut messages, MAX_BATCH).await == 0 {
            return;
        }
        for m in messages.drain(..) {
            if !take(&mut batch, m) {
                // No new check-ins; those queued are still stored.
                rx.close();
            }
        }
        if batch.is_empty() {
            continue;
        }
        batches.fetch_add(1, Ordering::Relaxed);
        let jobs: Vec<&Job> = batch.iter().map(|(j, _)| j).collect();
        let first = write_pool(&pool, &jobs).await;
        if let Some(redo) = answer(&mut batch, first) {
            for (job, reply) in redo {
                let _ = reply.send(write_pool(&pool, &[&job]).await);
            }
        }
    }
}

/// `statement` with `values` bound, for the pool.
fn bind_pool<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    values: &'q [Value<'q>],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for v in values {
        q = match v {
            Value::Int(i) => q.bind(*i),
            Value::Text(t) => q.bind(t.as_deref()),
        };
    }
    q
}

/// Stores `jobs` in one transaction through the pool; the revisions after them.
async fn write_pool(pool: &AnyPool, jobs: &[&Job]) -> Result<(i64, i64), StoreError> {
    let (order, ids) = in_order(jobs);
    let mut conn = crate::db::relaxed_sync(pool).await?;
    let mut tx = crate::db::begin_write(&mut conn).await?;
    let mut stored: HashMap<String, Option<String>> = HashMap::new();
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let sql = select_stored(chunk.len());
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut *tx).await? {
            stored.insert(r.try_get("id")?, r.try_get("last_update")?);
        }
    }
    for s in plan(&order, &stored) {
        bind_pool(sqlx::query(&s.sql), &s.params)
            .execute(&mut *tx)
            .await?;
    }
    let revisions = crate::store::clients::revisions(&mut tx).await?;
    tx.commit().await?;
    conn.restore().await?;
    Ok(revisions)
}
