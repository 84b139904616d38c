//! A process-wide memory budget that renders draw from.
//!
//! A render holds its decoded pixels in memory, and how much depends on the
//! image: a 12 MP photo needs about 140 MB, a 100 MP 16-bit RGBA PNG 730
//! MB. Counting renders (worker loops, IIIF slots) does not bound that;
//! bytes do. Every render reserves its estimate
//! (`easel_render::DecodeCost::peak_bytes`) from one [`MemoryBudget`] per
//! process before it decodes, and gives it back when done, so concurrent
//! renders wait for room instead of multiplying the peak. Waiting is first
//! come, first served: a large render is not overtaken for ever by small
//! ones.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget is counted in units of this many bytes (estimates are
/// rounded up).
const UNIT: u64 = 1 << 20;

/// The default budget: 1 GiB, for a worker with 2 GB of memory (the
/// process itself, uploads in flight and the allocator's slack need the
/// rest).
pub const DEFAULT_BUDGET_BYTES: u64 = 1 << 30;

/// Bytes that renders may hold at once; cheap to clone, clones share it.
#[derive(Clone, Debug)]
pub struct MemoryBudget {
    permits: Arc<Semaphore>,
    units: u64,
}

/// A render asked for more than the whole budget: it can never run here.
#[derive(Debug, thiserror::Error)]
#[error("{needed} bytes is more than the whole render memory budget of {total} bytes")]
pub struct OverBudget {
    pub needed: u64,
    pub total: u64,
}

/// Bytes held by one render; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    _permit: Option<OwnedSemaphorePermit>,
    bytes: u64,
}

impl Reservation {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl MemoryBudget {
    /// A budget of `bytes` (at least one unit).
    pub fn new(bytes: u64) -> Self {
        let units = (bytes / UNIT).clamp(1, Semaphore::MAX_PERMITS as u64);
        MemoryBudget {
            permits: Arc::new(Semaphore::new(units as usize)),
            units,
        }
    }

    pub fn total_bytes(&self) -> u64 {
        self.units * UNIT
    }

    /// Bytes no render holds now.
    pub fn available_bytes(&self) -> u64 {
        self.permits.available_permits() as u64 * UNIT
    }

    /// Whether a render of `bytes` can ever run under this budget.
    pub fn fits(&self, bytes: u64) -> bool {
        bytes.div_ceil(UNIT) <= self.units
    }

    /// Waits until `bytes` are free, then holds them until the
    /// [`Reservation`] drops.
    pub async fn reserve(&self, bytes: u64) -> Result<Reservation, OverBudget> {
        let units = bytes.div_ceil(UNIT);
        if units > self.units {
            return Err(OverBudget {
                needed: bytes,
                total: self.total_bytes(),
            });
        }
        let permit = match u32::try_from(units) {
            Ok(0) => None,
            Ok(units) => Some(
                self.permits
                    .clone()
                    .acquire_many_owned(units)
                    .await
                    // The semaphore is never closed.
                    .expect("the budget's semaphore is open"),
            ),
            Err(_) => {
                return Err(OverBudget {
                    needed: bytes,
                    total: self.total_bytes(),
                })
            }
        };
        Ok(Reservation {
            _permit: permit,
            bytes,
        })
    }
}

impl Default for MemoryBudget {
    fn default() -> Self {
        MemoryBudget::new(DEFAULT_BUDGET_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MB: u64 = 1 << 20;

    #[tokio::test]
    async fn renders_that_do_not_fit_together_wait_for_each_other() {
        let budget = MemoryBudget::new(1000 * MB);
        let first = budget.reserve(700 * MB).await.unwrap();
        assert_eq!(budget.available_bytes(), 300 * MB);
        let second = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve(600 * MB).await.unwrap() })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !second.is_finished(),
            "600 MB waits while 700 of 1000 are held"
        );
        // A small render asked for later does not overtake the waiting one.
        let third = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve(100 * MB).await.unwrap() })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "first come, first served");
        drop(first);
        let second = second.await.unwrap();
        assert_eq!(second.bytes(), 600 * MB);
        let third = third.await.unwrap();
        assert_eq!(budget.available_bytes(), 300 * MB);
        drop((second, third));
        assert_eq!(budget.available_bytes(), 1000 * MB);
    }

    #[tokio::test]
    async fn more_than_the_whole_budget_is_refused_at_once() {
        let budget = MemoryBudget::new(100 * MB);
        let err = budget.reserve(100 * MB + 1).await.unwrap_err();
        assert_eq!((err.needed, err.total), (100 * MB + 1, 100 * MB));
        assert!(budget.fits(100 * MB) && !budget.fits(101 * MB));
        assert_eq!(budget.reserve(0).await.unwrap().bytes(), 0);
    }
}
