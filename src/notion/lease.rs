//! How an instance on PostgreSQL learns that it is alone, and stops being so in time.
//!
//! Every instance holds a lease in `notion_instances` and renews it every [`RENEW_EVERY`] for
//! [`LEASE`]. One whose renewal sees no other live lease is alone until [`LEASE`] less
//! [`MARGIN`] after it sent that renewal, by its own clock, which is before anyone else sees its
//! lease end; it then keeps the rate budget (taken over from the database) and the connections
//! it searches in memory, and a search makes no round trip to the database.
//!
//! An instance that starts registers, and before it serves anything waits until every other
//! live instance has acknowledged it or let its lease end. An instance acknowledges others only
//! while it keeps nothing in memory: one that was alone first stops being so, forgets the
//! connections it kept and hands its turns and pauses back to the database, and acknowledges
//! with its next renewal. So the newcomer never calls Notion on a turn another instance took in
//! memory, and nothing it deletes or changes is still used from another's memory.
//!
//! The cost: one short statement per instance every [`RENEW_EVERY`], and a start that waits for
//! the others' next renewal.
//!
//! An instance cut off from the database stops being alone when its lease ends, whatever it is
//! doing; the calls it had already given turns to still go out. One whose lease ran out while
//! it kept serving (cut off for longer than [`LEASE`]) hands back what it can once it reaches
//! the database again, and is shared from then on; another instance that became alone meanwhile
//! learns of it at its next renewal.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::{budget::LocalBudget, connection_cache::ConnectionCache, membership::Membership};
use crate::{
    metrics::Metrics,
    store::{StoreError, instances, rate_budgets},
};

/// How long a lease lasts after its renewal.
pub(crate) const LEASE: Duration = Duration::from_secs(2);
/// How often an instance renews it.
pub(crate) const RENEW_EVERY: Duration = Duration::from_millis(250);
/// How much sooner than its lease an instance stops being alone, for clocks that run apart and
/// statements that take long.
const MARGIN: Duration = Duration::from_millis(250);
/// How long a starting instance waits for the others at most. Beyond that, one that renews its
/// lease without acknowledging is taken to have handed back all it could.
const JOIN_WAIT: Duration = Duration::from_secs(4);

pub(crate) struct InstanceLease {
    id: Uuid,
    db: DatabaseConnection,
    membership: Arc<Membership>,
    budget: Arc<LocalBudget>,
    cache: Arc<ConnectionCache>,
    metrics: Arc<Metrics>,
}

/// Whether this instance may have something in memory that others must know.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Memory {
    Empty,
    Kept,
}

impl InstanceLease {
    pub(crate) fn new(
        db: DatabaseConnection,
        membership: Arc<Membership>,
        budget: Arc<LocalBudget>,
        cache: Arc<ConnectionCache>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            db,
            membership,
            budget,
            cache,
            metrics,
        }
    }

    /// Registers this instance and waits until every other live instance has acknowledged it.
    pub(crate) async fn join(&self) -> Result<(), StoreError> {
        instances::register(&self.db, self.id, LEASE).await?;
        let give_up = Instant::now() + JOIN_WAIT;
        while let Some(left) = instances::unacknowledged(&self.db, self.id).await? {
            let now = Instant::now();
            if now >= give_up {
                tracing::warn!(
                    "another instance renews its lease without acknowledging this one; starting anyway"
                );
                break;
            }
            tokio::time::sleep(left.min(RENEW_EVERY / 5).min(give_up - now)).await;
        }
        Ok(())
    }

    /// Renews the lease every [`RENEW_EVERY`], this instance becoming alone and ceasing to be
    /// as the renewals find, until the returned task is aborted.
    pub(crate) fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(RENEW_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut memory = Memory::Empty;
            loop {
                ticks.tick().await;
                if let Err(e) = self.renew(&mut memory).await {
                    tracing::warn!(error = %e, "renewing this instance's lease failed");
                }
            }
        })
    }

    /// Leaves once this instance has stopped serving: the turns it kept are handed back, and
    /// other instances need not wait for it any more.
    pub(crate) async fn leave(&self) {
        let pending = self.stop_being_alone();
        let left = async {
            rate_budgets::absorb(&self.db, &pending).await?;
            instances::deregister(&self.db, self.id).await
        };
        if let Err(e) = left.await {
            tracing::warn!(error = %e, "removing this instance's lease failed");
        }
    }

    async fn renew(&self, memory: &mut Memory) -> Result<(), StoreError> {
        if *memory == Memory::Kept && !self.membership.is_alone() {
            // Alone no longer (the lease ran out meanwhile): hand back before anything else.
            self.hand_back(memory).await?;
        }
        let sent = Instant::now();
        let renewed = instances::renew(&self.db, self.id, LEASE, *memory == Memory::Empty).await?;
        match renewed {
            instances::Renewed::Live { others: 0 } => {
                if *memory == Memory::Empty {
                    let pending = rate_budgets::pending(&self.db).await?;
                    let mut alone = self.membership.change();
                    self.cache.clear();
                    self.budget.take_over(&pending);
                    *alone = Some(sent + LEASE - MARGIN);
                    *memory = Memory::Kept;
                    self.metrics.instance_alone(true);
                    tracing::info!("this instance is alone on its database");
                } else {
                    *self.membership.change() = Some(sent + LEASE - MARGIN);
                }
            }
            instances::Renewed::Live { .. } => {
                if *memory == Memory::Kept {
                    self.hand_back(memory).await?;
                    tracing::info!("another instance joined: the rate budget is shared again");
                    // Acknowledge at once rather than at the next tick.
                    instances::renew(&self.db, self.id, LEASE, true).await?;
                }
            }
            instances::Renewed::Lapsed => {
                // Others may have gone ahead without this instance's acknowledgment.
                self.hand_back(memory).await?;
            }
            instances::Renewed::Missing => {
                self.hand_back(memory).await?;
                self.join().await?;
            }
        }
        Ok(())
    }

    /// Stops being alone, forgets the connections kept and hands the turns and pauses ahead back
    /// to the database. Until that has succeeded, the memory counts as kept.
    async fn hand_back(&self, memory: &mut Memory) -> Result<(), StoreError> {
        let pending = self.stop_being_alone();
        if *memory == Memory::Kept {
            rate_budgets::absorb(&self.db, &pending).await?;
        }
        *memory = Memory::Empty;
        Ok(())
    }

    /// Ends being alone: nothing is done alone once this returns. The turns and pauses ahead.
    fn stop_being_alone(&self) -> Vec<rate_budgets::Pending> {
        let mut alone = self.membership.change();
        *alone = None;
        self.cache.clear();
        self.metrics.instance_alone(false);
        self.budget.pending()
    }
}
