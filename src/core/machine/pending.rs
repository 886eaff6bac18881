//! The I/O the machine waits for: every auth attempt, storage call and lease request it
//! handed the driver and has not had an answer to, each with its deadline and what it is
//! for. The deadlines of [`Machine::poll_timeout`] come from here (beside the op's backoff
//! and the auto-refresh, which wait for no I/O); an answer is matched to its entry by
//! [`IoId`], and an op that is abandoned cancels its entries in one sweep.

#[allow(unused_imports)]
use crate::prelude::*;

use super::{FlightId, IoId, Machine};

/// One I/O out with the driver.
#[derive(Clone, Copy, Debug)]
pub(super) struct Pending {
    pub(super) io: IoId,
    /// Past it the I/O is given up: cancelled, and handled as a failure.
    pub(super) deadline: i64,
    pub(super) purpose: Purpose,
}

/// What an I/O is for. At most one op exists, so at most one entry is the op's own
/// (an attempt or one of its storage calls); beside it may be a revoke's delete and a
/// restore's read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Purpose {
    /// `restore()`'s read, for `flight`. `epoch`: the state's epoch when the read began: a
    /// read older than the current pair is moot.
    Restore { flight: FlightId, epoch: u32 },
    /// A revoke's storage delete, running beside its request; the revoke ends when both
    /// have.
    Delete,
    /// The op's auth attempt.
    Attempt,
    /// Before a refresh: reading storage for a newer pair another instance stored (then no
    /// refresh is needed, and no refresh token is spent twice).
    Look,
    /// After a login: reading the record's version, so the new pair is stored as newer.
    Version,
    /// A refresh was rejected: reading storage for a pair another instance stored.
    Adopt,
    /// Taking the refresh lease.
    Acquire,
    /// The new pair is in; waiting (at most the timeout) for its storage write.
    Persist,
}

impl Purpose {
    /// The table's order, in which deadlines that fall together are handled (a revoke's
    /// delete and its request go out together, and time out together): it decides the
    /// order of the outputs of one `handle_timeout`.
    fn rank(self) -> u8 {
        match self {
            Purpose::Restore { .. } => 0,
            Purpose::Delete => 1,
            _ => 2,
        }
    }

    /// Ends with the op: everything but a restore's read (which `restore()` owns).
    pub(super) fn belongs_to_op(self) -> bool {
        !matches!(self, Purpose::Restore { .. })
    }

    pub(super) fn is_storage(self) -> bool {
        self != Purpose::Attempt
    }
}

/// The earlier of two optional deadlines.
pub(super) fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

impl Machine {
    /// Waits for `io` (handed to the driver just now) until the timeout.
    pub(super) fn expect(&mut self, now: i64, io: IoId, purpose: Purpose) {
        let entry = Pending {
            io,
            deadline: now + self.config.timeout_ms as i64,
            purpose,
        };
        let at = self
            .pending
            .iter()
            .position(|p| p.purpose.rank() > purpose.rank())
            .unwrap_or(self.pending.len());
        self.pending.insert(at, entry);
    }

    /// Takes the entry of `io` out of the table, if it is one for which `kind` holds (an
    /// answer of the wrong kind, or to an I/O cancelled or unknown, finds nothing).
    pub(super) fn take_io(&mut self, io: IoId, kind: impl Fn(Purpose) -> bool) -> Option<Pending> {
        let at = self.pending.iter().position(|p| p.io == io && kind(p.purpose))?;
        Some(self.remove_pending(at))
    }

    /// Removes entry `at`. The table is empty between auth operations, which an idle session
    /// (thousands per process) is: its buffer is freed then, not kept at its high-water mark.
    fn remove_pending(&mut self, at: usize) -> Pending {
        let entry = self.pending.remove(at);
        if self.pending.is_empty() {
            self.pending = Vec::new();
        }
        entry
    }

    /// Takes the first entry whose deadline has passed out of the table.
    pub(super) fn take_due(&mut self, now: i64) -> Option<Pending> {
        let at = self.pending.iter().position(|p| p.deadline <= now)?;
        Some(self.remove_pending(at))
    }

    /// Takes the restore's read out of the table: its `IoId` and flight.
    pub(super) fn take_restore(&mut self) -> Option<(IoId, FlightId)> {
        let at = self.pending.iter().position(|p| !p.purpose.belongs_to_op())?;
        match self.remove_pending(at) {
            Pending {
                io,
                purpose: Purpose::Restore { flight, .. },
                ..
            } => Some((io, flight)),
            _ => None,
        }
    }

    /// Takes every entry that ends with the op out of the table, in its order.
    pub(super) fn take_ops_io(&mut self) -> Vec<Pending> {
        let (ops, rest) = ::core::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.purpose.belongs_to_op());
        self.pending = rest;
        ops
    }

    /// The earliest deadline in the table.
    pub(super) fn io_deadline(&self) -> Option<i64> {
        self.pending.iter().map(|p| p.deadline).min()
    }

    /// The restore whose read is out, if any: its flight and the epoch it began in.
    pub(super) fn restoring(&self) -> Option<(FlightId, u32)> {
        self.pending.iter().find_map(|p| match p.purpose {
            Purpose::Restore { flight, epoch } => Some((flight, epoch)),
            _ => None,
        })
    }

    /// A revoke's storage delete is still out.
    pub(super) fn deleting(&self) -> bool {
        self.pending.iter().any(|p| p.purpose == Purpose::Delete)
    }
}
