//! The session's storage: `restore`, the look at the record before a refresh or a quiet
//! login, the refresh lease, the adoption of a pair another instance stored, and the write
//! of a new pair.

#[allow(unused_imports)]
use crate::prelude::*;

use super::op::{revoke_ended, Next};
use super::pending::Purpose;
use super::{
    storage_error, Event, FlightId, IoId, Machine, Op, OpKind, Outcome, Output, Reason, Stage, State, StorageOp,
    StorageReply,
};
use crate::core::envelope::{self, read_record};
use crate::core::error::{AuthError, ErrorCode};

impl Machine {
    /// Gives back the op's lease, if it holds one (the answer is not awaited: a lease that
    /// is not given back runs out by itself).
    pub(super) fn release(&mut self, op: &Op) {
        if let Some((lease, _)) = &op.lease {
            let io = self.id();
            let key = self.config.storage_key();
            self.push(Output::Storage(StorageOp::Release {
                id: io,
                key,
                lease: lease.clone(),
            }));
        }
    }

    /// How long a refresh lease is taken for (`leaseMs`). A holder sends an attempt only
    /// when the attempt and the write of its answer end within the lease: past it, another
    /// instance may hold the lease and look at a record that does not have the new pair yet.
    pub(super) fn lease_ttl(&self) -> u32 {
        self.config.lease_ms
    }

    /// A restore's read is moot once a login or revoke has begun: it resolves `null`.
    pub(super) fn abandon_restore(&mut self) {
        if let Some((io, flight)) = self.take_restore() {
            self.push(Output::Cancel(io));
            self.push(Output::Settle(flight, Outcome::Nothing));
        }
    }

    /// Writes the held pair as the newest record; the op ends when the write does (or its
    /// deadline passes).
    pub(super) fn persist(&mut self, now: i64, mut op: Op) -> Next {
        let Some(h) = self.held() else {
            return Next::Done(op, Outcome::Done);
        };
        let version = h.version;
        let value = envelope::write_record(&envelope::Stored {
            pair: h.pair.clone(),
            origin: self.config.record_origin(),
            account: h.account.clone(),
            version,
        });
        let io = self.id();
        let key = self.config.storage_key();
        self.push(Output::Storage(StorageOp::Put {
            id: io,
            key,
            value,
            version,
        }));
        self.expect(now, io, Purpose::Persist);
        op.stage = Stage::Io;
        Next::Stay(op)
    }

    /// Starts a storage read for `why` (a look, a versioning read or an adoption) and
    /// returns the stage that waits for it.
    pub(super) fn read_stage(&mut self, now: i64, why: Purpose) -> Stage {
        let io = self.id();
        let key = self.config.storage_key();
        self.push(Output::Storage(StorageOp::Get { id: io, key }));
        self.expect(now, io, why);
        Stage::Io
    }

    /// The refresh token was rejected (401). Another instance sharing the storage may have
    /// rotated it first: look there, else the session ends (or logs in again).
    pub(super) fn refresh_rejected(&mut self, now: i64, mut op: Op) -> Next {
        if let OpKind::Refresh { token } = &op.kind {
            let token = token.clone();
            self.mark_spent(&token);
        }
        if self.has_storage {
            op.stage = self.read_stage(now, Purpose::Adopt);
            return Next::Stay(op);
        }
        self.session_over(now, op)
    }

    // ----- inputs: storage --------------------------------------------------------------------

    /// The answer to [`Output::Storage`] `io`.
    pub fn handle_storage(&mut self, now: i64, io: IoId, reply: StorageReply) {
        let Some(p) = self.take_io(io, Purpose::is_storage) else {
            return;
        };
        match p.purpose {
            Purpose::Restore { flight, epoch } => self.restored(now, flight, epoch, reply),
            Purpose::Delete => {
                let failure = match reply {
                    StorageReply::Failed(cause) => {
                        let e = storage_error("the storage adapter failed to delete the session", cause);
                        self.emit(Event::Error(e.clone()));
                        Some(e)
                    }
                    _ => None,
                };
                self.deleted(now, failure);
            }
            Purpose::Adopt => self.with_op(now, |m, op| m.adopt(now, op, reply)),
            Purpose::Look => self.with_op(now, |m, op| m.looked(now, op, reply)),
            Purpose::Acquire => self.with_op(now, |m, op| m.leased(now, op, p.deadline, reply)),
            Purpose::Version => {
                if let Err(e) = self.stored_record(now, &reply) {
                    self.emit(Event::Error(e));
                }
                self.with_op(now, |m, op| m.versioned(now, op));
            }
            Purpose::Persist => {
                let failure = match reply {
                    StorageReply::Failed(cause) => {
                        Some(storage_error("the storage adapter failed to write the session", cause))
                    }
                    _ => None,
                };
                self.with_op(now, |m, op| m.persisted(op, failure));
            }
            // Filtered out by `take_io`.
            Purpose::Attempt => {}
        }
    }

    /// The revoke's storage delete is over (`failure`: it failed or timed out, reported
    /// already). The revoke ends here if its request is done.
    pub(super) fn deleted(&mut self, now: i64, failure: Option<AuthError>) {
        self.with_op(now, |_, mut op| {
            if let (Some(e), OpKind::Revoke { failure: first, .. }) = (failure, &mut op.kind) {
                first.get_or_insert(e);
            }
            if op.stage == Stage::Finishing {
                return revoke_ended(op);
            }
            Next::Stay(op)
        });
    }

    /// The versioning read is over (answered, or its deadline passed): the read raised
    /// `seen_version`, and the held pair goes above it, then is written. (Still above every
    /// version read meanwhile: a restore's read may have raised `seen_version` since the
    /// pair was installed.)
    pub(super) fn versioned(&mut self, now: i64, op: Op) -> Next {
        let above = self.seen_version + 1;
        if let State::Active(h) = &mut self.state {
            h.version = h.version.max(above);
        }
        self.persist(now, op)
    }

    /// The write of the new pair is over (`failure`: it failed or timed out). The op has
    /// its pair either way: a failed write is an `error` event.
    pub(super) fn persisted(&mut self, op: Op, failure: Option<AuthError>) -> Next {
        if let Some(e) = failure {
            self.emit(Event::Error(e));
        }
        Next::Done(op, Outcome::Done)
    }

    /// Reads a stored record, or nothing. A record is usable when it parses, belongs to this
    /// host and (with credentials) this account, and its refresh token is unexpired and not
    /// one we spent. A record that is not ours to read is reported (`error` event) and
    /// treated as absent; one of another host or account is simply absent.
    pub(super) fn stored_record(
        &mut self,
        now: i64,
        reply: &StorageReply,
    ) -> Result<Option<envelope::Stored>, AuthError> {
        let garbage = || storage_error("the stored session record is not one this client can read", None);
        let stored = match reply {
            StorageReply::Record(doc) => match read_record(doc) {
                Ok(s) => s,
                Err(_) => {
                    self.emit(Event::Error(garbage()));
                    None
                }
            },
            StorageReply::Garbage => {
                self.emit(Event::Error(garbage()));
                None
            }
            StorageReply::Empty | StorageReply::Lease(_) => None,
            StorageReply::Failed(cause) => {
                return Err(storage_error(
                    "the storage adapter failed to read the session",
                    cause.clone(),
                ))
            }
        };
        let stored = stored.filter(|s| {
            s.origin == self.config.record_origin()
                && (self.config.account.is_none() || s.account == self.config.account)
        });
        if let Some(s) = &stored {
            self.seen_version = self.seen_version.max(s.version);
        }
        Ok(stored.filter(|s| s.pair.refresh_expires_at - self.skew_ms > now && !self.spent_pair(&s.pair)))
    }

    /// Before a refresh: a newer record (another instance rotated) is adopted instead.
    pub(super) fn looked(&mut self, now: i64, mut op: Op, reply: StorageReply) -> Next {
        let stored = match self.stored_record(now, &reply) {
            Ok(s) => s,
            Err(e) if self.seed().is_some() && matches!(op.kind, OpKind::Login { .. }) => {
                // The application's refresh token is sent only once the record says nobody
                // exchanged it: an unreadable record says nothing. This caller fails.
                return Next::Done(op, Outcome::Failed(e));
            }
            Err(e) => {
                // A storage failure never blocks the protocol: refresh as without storage.
                self.emit(Event::Error(e));
                None
            }
        };
        if matches!(op.kind, OpKind::Login { .. }) {
            return self.looked_before_login(now, op, stored);
        }
        let held = self.held().map(|h| (h.version, h.pair.refresh_token.clone()));
        let newer = stored.filter(|s| {
            held.as_ref()
                .is_some_and(|(v, t)| s.version > *v && s.pair.refresh_token != *t)
        });
        if let Some(s) = newer {
            self.install(now, s.pair, Reason::Adopt, s.version, s.account);
            return Next::Done(op, Outcome::Done);
        }
        // The refresh token may have run out while we read.
        if !self.held().is_some_and(|h| now < h.refresh_local) {
            return match self.expire_if_due(now) {
                Some(e) => Next::Done(op, Outcome::Failed(e)),
                None => self.session_over(now, op),
            };
        }
        if self.has_lease && op.lease.is_none() {
            // Only the lease holder refreshes; it looks again once it holds the lease.
            // With an expired token, callers wait for the holder's pair at most timeoutMs;
            // with a valid one nobody waits, and the look goes on until the holder's lease
            // must have run out.
            let valid = self.held().is_some_and(|h| now < h.access_local) && !op.unauthorized;
            let bound = if valid {
                2 * self.lease_ttl() as i64
            } else {
                self.config.timeout_ms as i64
            };
            if op.waiting.is_some_and(|(since, _)| now - since > bound) {
                let e = AuthError::new(
                    ErrorCode::Timeout,
                    "another instance held the refresh lease for longer than its time to live",
                );
                return Next::Done(op, Outcome::Failed(e));
            }
            return self.acquire(now, op);
        }
        // As for a retry (see `op_timer_fired`): a holder sends only an attempt that
        // ends within its lease. Slow storage calls (the acquire, this look) may have used
        // up so much of it (with no retries the lease is only twice the timeout) that
        // another instance could take the lease and send the same token meanwhile.
        if op
            .lease
            .as_ref()
            .is_some_and(|(_, until)| now + 2 * self.config.timeout_ms as i64 > *until)
        {
            let e = AuthError::new(ErrorCode::Timeout, "the refresh lease would run out before the refresh");
            return Next::Done(op, Outcome::Failed(e));
        }
        self.send(now, &mut op);
        Next::Stay(op)
    }

    /// Asks for the refresh lease; the op waits for the answer (`Purpose::Acquire`).
    pub(super) fn acquire(&mut self, now: i64, mut op: Op) -> Next {
        let io = self.id();
        let key = self.config.storage_key();
        let ttl_ms = self.lease_ttl();
        self.push(Output::Storage(StorageOp::Acquire { id: io, key, ttl_ms }));
        self.expect(now, io, Purpose::Acquire);
        op.stage = Stage::Io;
        Next::Stay(op)
    }

    /// A quiet login looked at the record: a usable pair (by the rules of `restore`) is
    /// adopted; else, with a lease, only its holder logs in and the others wait for its
    /// record, at most `timeoutMs`, before they log in themselves.
    pub(super) fn looked_before_login(&mut self, now: i64, mut op: Op, stored: Option<envelope::Stored>) -> Next {
        // Not older than any pair this session held: an older record's tokens are spent.
        if let Some(s) = stored.filter(|s| s.pair.access_expires_at > self.newest) {
            self.install(now, s.pair, Reason::Adopt, s.version, s.account);
            return Next::Done(op, Outcome::Done);
        }
        let timeout = self.config.timeout_ms as i64;
        if let Some((_, until)) = &op.lease {
            // As for a refresh: the attempt and the write of its pair must end within the
            // lease, or another instance may take it and log in as well. Slow storage calls
            // used it up: give it back and ask again (another instance may log in meanwhile,
            // and this one adopts its pair).
            if now + 2 * timeout > *until {
                self.release(&op);
                op.lease = None;
                op.waiting.get_or_insert((now, 0));
            }
        }
        if self.has_lease && op.lease.is_none() {
            let waited_out = op.waiting.is_some_and(|(since, _)| now - since >= timeout);
            if !waited_out {
                return self.acquire(now, op);
            }
            if self.seed().is_some() {
                // The grant is the application's refresh token, which the holder may well
                // have exchanged already: sending it again would be a reuse (the server
                // revokes the grant). This caller fails; the next one looks again.
                let e = AuthError::new(
                    ErrorCode::Timeout,
                    "another instance held the lease for the seed refresh token for longer than timeoutMs",
                );
                return Next::Done(op, Outcome::Failed(e));
            }
            // No holder's record within timeoutMs: log in without the lease (a second
            // login costs a token family, never a spent token).
            op.waiting = None;
        }
        self.send(now, &mut op);
        Next::Stay(op)
    }

    /// The answer to `acquire`: holding the lease, look once more (the previous holder may
    /// have just stored its pair) and refresh; else wait for the holder's pair.
    /// `deadline`: the acquire's.
    pub(super) fn leased(&mut self, now: i64, mut op: Op, deadline: i64, reply: StorageReply) -> Next {
        match reply {
            StorageReply::Lease(id) => {
                // The storage started the lease's clock when `acquire` reached it, at some
                // time between the call and this answer: count from the call (the acquire's
                // deadline less the timeout), never from the answer, or a slow answer would
                // let this holder believe in a lease that another may already have taken.
                let asked = deadline - self.config.timeout_ms as i64;
                op.lease = Some((id, asked + self.lease_ttl() as i64));
                op.stage = self.read_stage(now, Purpose::Look);
            }
            StorageReply::Empty => {
                // Another instance refreshes: its pair will be in the record soon. Look at
                // 100 ms, then 200, 400... at most every second.
                let (since, round) = op.waiting.unwrap_or((now, 0));
                op.waiting = Some((since, round + 1));
                let valid = self.held().is_some_and(|h| now < h.access_local);
                let release = !op.manual && !op.unauthorized;
                if round == 0 && valid && release && matches!(op.kind, OpKind::Refresh { .. }) {
                    // Its callers still hold a valid token: they go out with it now (asked
                    // again, the machine hands it out) instead of waiting for the holder.
                    // The look for the holder's pair goes on under a new flight.
                    self.push(Output::Settle(op.flight, Outcome::Again));
                    op.flight = self.id();
                }
                let pause = (100i64 << round.min(4)).min(1_000);
                op.stage = Stage::Waiting { until: now + pause };
            }
            failed => {
                // A lease the storage cannot give (it threw, or answered something that is
                // neither a lease id nor "taken") never blocks the protocol: refresh.
                let cause = match failed {
                    StorageReply::Failed(cause) => cause,
                    _ => None,
                };
                let e = storage_error("the storage adapter failed to take the refresh lease", cause);
                if self.seed().is_some() && matches!(op.kind, OpKind::Login { .. }) {
                    // Except for the application's refresh token: another instance may hold
                    // the lease and be exchanging it, and a second exchange is a reuse (the
                    // server revokes the grant). This caller fails; the next one asks again.
                    return Next::Done(op, Outcome::Failed(e));
                }
                self.emit(Event::Error(e));
                op.waiting = None;
                // As in `looked`: the refresh token may have run out while the acquire was
                // out (up to timeoutMs); a dead token is not sent.
                let refresh = matches!(op.kind, OpKind::Refresh { .. });
                if refresh && !self.held().is_some_and(|h| now < h.refresh_local) {
                    return match self.expire_if_due(now) {
                        Some(e) => Next::Done(op, Outcome::Failed(e)),
                        None => self.session_over(now, op),
                    };
                }
                self.send(now, &mut op);
            }
        }
        Next::Stay(op)
    }

    pub(super) fn adopt(&mut self, now: i64, op: Op, reply: StorageReply) -> Next {
        let stored = match self.stored_record(now, &reply) {
            Ok(s) => s,
            Err(e) => {
                self.emit(Event::Error(e));
                None
            }
        };
        // Only a pair issued after ours is newer. An older record (a write of ours that
        // failed, a stale read of an eventually consistent store) holds a spent token.
        let held = self.held().map(|h| (h.version, h.pair.access_expires_at));
        // (`map_or`, not `is_none_or`: the MSRV is 1.81.)
        match stored.filter(|s| held.map_or(true, |(v, x)| s.version > v || s.pair.access_expires_at > x)) {
            Some(s) => {
                self.install(now, s.pair, Reason::Adopt, s.version, s.account);
                Next::Done(op, Outcome::Done)
            }
            None => self.session_over(now, op),
        }
    }

    /// The answer to the read of `restore()` for `flight`, begun in `epoch`.
    pub(super) fn restored(&mut self, now: i64, flight: FlightId, epoch: u32, reply: StorageReply) {
        let stored = match self.stored_record(now, &reply) {
            Ok(s) => s,
            Err(e) => return self.push(Output::Settle(flight, Outcome::Failed(e))),
        };
        // An op still running decides the session, not this read: a pair restored beside
        // it would be replaced by a login's or refresh's result, would let a refresh retry
        // send its own (maybe expired) token for another pair, or, beside a revoke, would
        // let the next refresh replace the revoke op (two requests open, the revoke never
        // settled).
        if epoch != self.epoch || self.is_disposed() || self.op.is_some() {
            // A login, a refresh, a revoke or a dispose came after the read began.
            return self.push(Output::Settle(flight, Outcome::Nothing));
        }
        // Only a pair at least as new as any held before (a stale read, or a record our
        // failed writes left behind, holds a spent refresh token).
        match stored.filter(|s| s.pair.access_expires_at >= self.newest) {
            Some(s) => {
                self.install(now, s.pair, Reason::Restore, s.version, s.account);
                self.push(Output::Settle(flight, Outcome::Done));
            }
            None => self.push(Output::Settle(flight, Outcome::Nothing)),
        }
    }
}
