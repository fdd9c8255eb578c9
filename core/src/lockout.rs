//! Consecutive failures and the lock they lead to. The lock is a flag beside the token
//! state: it ends at a time (`lockout_seconds`) or when an administrator unlocks.

use serde::{Deserialize, Serialize};

use crate::UnixTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockPolicy {
    pub max_failures: u32,
    /// 0 = locked until an administrator unlocks.
    pub lockout_seconds: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockState {
    pub failures: u32,
    /// Set while locked: `Some(0)` means until unlocked by an administrator.
    pub locked_until: Option<UnixTime>,
}

impl LockState {
    pub fn is_locked(&self, now: UnixTime) -> bool {
        match self.locked_until {
            Some(0) => true,
            Some(t) => now < t,
            None => false,
        }
    }

    /// Counts a failure; returns true when this failure locked the user.
    pub fn record_failure(&mut self, now: UnixTime, policy: &LockPolicy) -> bool {
        if self.locked_until.is_some() && !self.is_locked(now) {
            // A timed lock ran out: the count starts again.
            *self = LockState::default();
        }
        self.failures = self.failures.saturating_add(1);
        if policy.max_failures > 0 && self.failures >= policy.max_failures && !self.is_locked(now) {
            self.locked_until = Some(if policy.lockout_seconds == 0 {
                0
            } else {
                now.saturating_add(i64::try_from(policy.lockout_seconds).unwrap_or(i64::MAX))
            });
            return true;
        }
        false
    }

    pub fn record_success(&mut self) {
        *self = LockState::default();
    }

    pub fn unlock(&mut self) {
        *self = LockState::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_at_max_and_unlocks_by_time() {
        let p = LockPolicy {
            max_failures: 3,
            lockout_seconds: 600,
        };
        let mut s = LockState::default();
        assert!(!s.record_failure(100, &p));
        assert!(!s.record_failure(101, &p));
        assert!(!s.is_locked(101));
        assert!(s.record_failure(102, &p), "third failure locks");
        assert!(s.is_locked(102));
        assert!(s.is_locked(701));
        assert!(!s.is_locked(702), "lock ends after lockout_seconds");
        assert!(
            !s.record_failure(703, &p),
            "count restarted after the timed lock"
        );
        assert_eq!(s.failures, 1);
    }

    #[test]
    fn zero_seconds_means_until_unlocked() {
        let p = LockPolicy {
            max_failures: 1,
            lockout_seconds: 0,
        };
        let mut s = LockState::default();
        assert!(s.record_failure(5, &p));
        assert!(s.is_locked(i64::MAX / 2));
        s.unlock();
        assert!(!s.is_locked(6));
        assert_eq!(s.failures, 0);
    }

    #[test]
    fn success_resets_the_count() {
        let p = LockPolicy {
            max_failures: 3,
            lockout_seconds: 60,
        };
        let mut s = LockState::default();
        s.record_failure(1, &p);
        s.record_failure(2, &p);
        s.record_success();
        assert!(!s.record_failure(3, &p));
        assert!(!s.record_failure(4, &p));
        assert!(s.record_failure(5, &p));
    }
}
