//! Gathering metrics from every shard, and the routes that show them:
//! `/metrics` (Prometheus), `/api/v1/stats` (`/api/stats`) and
//! `/api/v1/shards` (JSON).
//!
//! The asking shard sends `ShardMsg::Stats` to every other shard; each
//! answers between two of its tasks with a clone of its numbers
//! ([`crate::metrics::ShardMetrics::snapshot`]), so a stats request never
//! holds up anyone's data path. Replies are merged here.

use std::rc::Rc;
use std::time::Instant;

use super::{Shard, ShardMsg, GATHER_TIMEOUT};
use crate::metrics::{self, Gauges, ShardStats, Totals};
use crate::stream::table::Role;
use proto::http::Route;

impl Shard {
    /// This shard's numbers now: its metrics and what its stream table holds.
    pub(super) fn stats_snapshot(&self) -> ShardStats {
        let mut g = Gauges::default();
        for (_, e) in self.table.borrow().iter() {
            match &e.role {
                Role::Owner { publisher, .. } => {
                    g.streams_owned += 1;
                    g.streams_live += u64::from(publisher.is_some());
                }
                Role::Replica { .. } => g.replicas += 1,
            }
            g.players += e.core.players.len() as u64;
        }
        self.metrics.snapshot(self.id(), g)
    }

    /// Asks every other shard with `ask(reply)` and collects what they send
    /// on `reply`, sends included, within [`GATHER_TIMEOUT`]; `what` names
    /// the request in logs. A shard that does not answer in time is left
    /// out (and logged).
    pub(super) async fn gather<T: Send + 'static>(
        self: &Rc<Self>,
        what: &str,
        ask: impl Fn(flume::Sender<T>) -> ShardMsg,
    ) -> Vec<T> {
        let (tx, rx) = flume::bounded(self.ctx.count());
        let mut got = Vec::with_capacity(self.ctx.count());
        let work = async {
            for peer in (0..self.ctx.count()).filter(|&p| p != self.id()) {
                if let Err(e) = self.ctx.post_control(peer, ask(tx.clone())) {
                    log::warn!("{what} request to shard {peer} failed: {e}");
                }
            }
            drop(tx);
            while let Ok(one) = rx.recv_async().await {
                got.push(one);
            }
        };
        futures_lite::future::or(work, glommio::timer::sleep(GATHER_TIMEOUT)).await;
        let others = self.ctx.count() - 1;
        if got.len() < others {
            log::warn!(
                "{what}: {} of {others} other shards answered within {} ms (GATHER_TIMEOUT)",
                got.len(),
                GATHER_TIMEOUT.as_millis()
            );
        }
        got
    }

    /// Every shard's numbers, merged.
    pub async fn gather_stats(self: &Rc<Self>) -> Totals {
        let mut all = self.gather("stats", ShardMsg::Stats).await;
        all.push(self.stats_snapshot());
        Totals::merge(all)
    }
}

/// The answer to a metrics route (`Content-Type`, body), or None if
/// `route` is not one.
pub(super) async fn answer(shard: &Rc<Shard>, route: &Route) -> Option<(&'static str, Vec<u8>)> {
    let started = Instant::now();
    let (kind, body) = match route {
        Route::Metrics => {
            let totals = shard.gather_stats().await;
            let text =
                metrics::prometheus::render(&metrics::ProcessInfo::current(), &totals.shards);
            (metrics::prometheus::CONTENT_TYPE, text.into_bytes())
        }
        Route::ApiStats => {
            let totals = shard.gather_stats().await;
            (JSON, to_json(&metrics::json::stats(&totals)))
        }
        Route::ApiShards => {
            let totals = shard.gather_stats().await;
            (JSON, to_json(&metrics::json::shards(&totals)))
        }
        _ => return None,
    };
    log::debug!(
        "stats route={route:?} shard={} bytes={} took_us={}",
        shard.id(),
        body.len(),
        started.elapsed().as_micros()
    );
    Some((kind, body))
}

const JSON: &str = "application/json";

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|e| {
        format!("{{\"error\":\"stats could not be serialised: {e}\"}}").into_bytes()
    })
}
