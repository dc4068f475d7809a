//! The fleet over time, with bounded retention: bytes per hour and source (`traffic`), the
//! fleet's samples (`fleet_samples`) and the notifies between them, for the console's charts.

use sqlx::Row;

use super::{as_i64, as_u64, SAMPLE_SECS, TRAFFIC_HOURS};
use crate::store::{Store, StoreError};

/// One hour of one source's traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficRow {
    /// Unix hour.
    pub hour: i64,
    /// The source.
    pub source: String,
    /// Bytes clients got there.
    pub bytes: u64,
    /// Reports that got bytes there.
    pub clients: u64,
}

/// One sample of the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetSample {
    /// Unix seconds.
    pub at: i64,
    /// Clients in all.
    pub total: u64,
    /// Clients current in every published category.
    pub current: u64,
    /// Clients whose last update failed.
    pub failed: u64,
}

impl Store {
    /// Traffic from Unix hour `from` on, by hour then source.
    ///
    /// # Errors
    /// Database errors.
    pub async fn traffic_since(&self, from: i64) -> Result<Vec<TrafficRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT hour, source, bytes, clients FROM traffic WHERE hour >= $1 ORDER BY hour, source",
        )
        .bind(from)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TrafficRow {
                    hour: r.try_get("hour")?,
                    source: r.try_get("source")?,
                    bytes: as_u64(r.try_get("bytes")?),
                    clients: as_u64(r.try_get("clients")?),
                })
            })
            .collect()
    }

    /// Records a sample and drops samples and traffic older than their retention.
    ///
    /// # Errors
    /// Database errors.
    pub async fn record_sample(&self, s: FleetSample) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = crate::db::begin_write(&mut conn).await?;
        sqlx::query(
            "INSERT INTO fleet_samples (at, total, current, failed) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (at) DO UPDATE SET total = excluded.total, current = excluded.current, \
             failed = excluded.failed",
        )
        .bind(s.at)
        .bind(as_i64(s.total))
        .bind(as_i64(s.current))
        .bind(as_i64(s.failed))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM fleet_samples WHERE at < $1")
            .bind(s.at - SAMPLE_SECS)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM traffic WHERE hour < $1")
            .bind(s.at.div_euclid(3600) - TRAFFIC_HOURS)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Samples from `from` on, oldest first, led by the last one before `from` (moved to
    /// `from`: its figures held until the next sample).
    ///
    /// # Errors
    /// Database errors.
    pub async fn samples_since(&self, from: i64) -> Result<Vec<FleetSample>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, total, current, failed FROM fleet_samples WHERE at >= $1 ORDER BY at",
        )
        .bind(from)
        .fetch_all(&self.pool)
        .await?;
        let before = sqlx::query(
            "SELECT at, total, current, failed FROM fleet_samples WHERE at < $1 \
             ORDER BY at DESC LIMIT 1",
        )
        .bind(from)
        .fetch_optional(&self.pool)
        .await?;
        let sample = |r: &sqlx::any::AnyRow| {
            Ok::<_, StoreError>(FleetSample {
                at: r.try_get("at")?,
                total: as_u64(r.try_get("total")?),
                current: as_u64(r.try_get("current")?),
                failed: as_u64(r.try_get("failed")?),
            })
        };
        let mut out = Vec::with_capacity(rows.len() + 1);
        if let Some(b) = &before {
            out.push(FleetSample {
                at: from,
                ..sample(b)?
            });
        }
        for r in &rows {
            out.push(sample(r)?);
        }
        Ok(out)
    }

    /// The newest sample and the newest notify's time, if any.
    ///
    /// # Errors
    /// Database errors.
    pub async fn last_sample_and_notice(
        &self,
    ) -> Result<(Option<FleetSample>, Option<i64>), StoreError> {
        let sample = sqlx::query(
            "SELECT at, total, current, failed FROM fleet_samples ORDER BY at DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?
        .map(|r| {
            Ok::<_, sqlx::Error>(FleetSample {
                at: r.try_get("at")?,
                total: as_u64(r.try_get("total")?),
                current: as_u64(r.try_get("current")?),
                failed: as_u64(r.try_get("failed")?),
            })
        })
        .transpose()?;
        let notice: Option<i64> = sqlx::query("SELECT MAX(issued_at) AS t FROM notifications")
            .fetch_one(&self.pool)
            .await?
            .try_get("t")?;
        Ok((sample, notice))
    }

    /// The notifies issued from `from` on: (id, time), oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn notices_since(&self, from: i64) -> Result<Vec<(i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, issued_at FROM notifications WHERE issued_at >= $1 ORDER BY issued_at, id",
        )
        .bind(from)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("issued_at")?)))
            .collect()
    }
}
