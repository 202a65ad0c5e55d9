//! When to renew and when to retry: pure functions of the certificate's
//! validity, the current time, the attempt number and a random number, so
//! that every case is unit-tested without sleeping (time is an input).
//!
//! - Renew at two thirds of the lifetime, ± 5 % of the lifetime of jitter,
//!   so that a fleet enrolled at the same moment does not renew at the
//!   same moment.
//! - On failure, retry after an exponential backoff (1 s, 2 s, 4 s, …)
//!   capped at `cap`, with "equal jitter" (half fixed, half random), and
//!   never sleeping past a third of the time left, so that the last
//!   minutes before expiry still get several attempts.
//! - Once expired, renewal is impossible (the CA refuses an expired client
//!   certificate): the identity needs a new enrolment.

use std::time::{Duration, SystemTime};

/// Smallest retry delay.
pub const RETRY_BASE: Duration = Duration::from_secs(1);

/// How close to expiry a certificate is, for logs and health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Urgency {
    /// Before two thirds of the lifetime: nothing to do yet.
    Fresh,
    /// Past two thirds: renewal is due (warn on failures).
    Due,
    /// Within the last 10 % of the lifetime: unhealthy (error on failures).
    Critical,
    /// Past notAfter: the certificate is useless; enrol again.
    Expired,
}

fn lifetime(not_before: SystemTime, not_after: SystemTime) -> Duration {
    not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO)
}

/// When to renew a certificate valid from `not_before` to `not_after`;
/// `random` is uniform in `[0, 1)`.
pub fn renew_at(not_before: SystemTime, not_after: SystemTime, random: f64) -> SystemTime {
    let life = lifetime(not_before, not_after).as_secs_f64();
    let r = random.clamp(0.0, 1.0);
    let offset = life * (2.0 / 3.0) + life * 0.1 * (r - 0.5);
    let at = not_before + Duration::from_secs_f64(offset.max(0.0));
    at.min(not_after)
}

/// The delay before retry number `attempt` (1 for the first retry), or
/// `None` when the certificate has expired and retrying is pointless.
pub fn retry_delay(
    not_after: SystemTime,
    now: SystemTime,
    attempt: u32,
    cap: Duration,
    random: f64,
) -> Option<Duration> {
    let left = not_after
        .duration_since(now)
        .ok()
        .filter(|d| !d.is_zero())?;
    let exp = RETRY_BASE.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let base = exp.min(cap).min(left / 3).max(RETRY_BASE.min(left));
    let r = random.clamp(0.0, 1.0);
    Some(base / 2 + base.mul_f64(r / 2.0))
}

/// How urgent renewal of a certificate is at `now`.
pub fn urgency(not_before: SystemTime, not_after: SystemTime, now: SystemTime) -> Urgency {
    if now >= not_after {
        return Urgency::Expired;
    }
    let life = lifetime(not_before, not_after);
    let left = not_after.duration_since(now).unwrap_or(Duration::ZERO);
    if left.as_secs_f64() <= life.as_secs_f64() * 0.1 {
        Urgency::Critical
    } else if now >= not_before + life.mul_f64(2.0 / 3.0) {
        Urgency::Due
    } else {
        Urgency::Fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    #[test]
    fn renews_at_two_thirds_with_bounded_jitter() {
        assert_eq!(renew_at(t(0), t(3000), 0.5), t(2000));
        assert_eq!(renew_at(t(0), t(3000), 0.0), t(1850));
        let hi = renew_at(t(0), t(3000), 0.999_999);
        assert!(hi > t(2149) && hi <= t(2150), "{hi:?}");
        // A certificate that is already invalid is renewed "now" (the past).
        assert_eq!(renew_at(t(10), t(5), 0.3), t(5));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let cap = Duration::from_secs(60);
        let far = t(1_000_000);
        let d: Vec<_> = (1..=10)
            .map(|a| retry_delay(far, t(0), a, cap, 1.0).unwrap().as_secs())
            .collect();
        assert_eq!(d, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        // Jitter only shortens, by at most half.
        assert_eq!(
            retry_delay(far, t(0), 3, cap, 0.0),
            Some(Duration::from_secs(2))
        );
        // Huge attempt numbers do not overflow.
        assert_eq!(retry_delay(far, t(0), u32::MAX, cap, 1.0), Some(cap));
    }

    #[test]
    fn backoff_never_sleeps_past_a_third_of_what_is_left() {
        let cap = Duration::from_secs(300);
        let d = retry_delay(t(90), t(0), 12, cap, 1.0).unwrap();
        assert_eq!(d, Duration::from_secs(30));
        // Very close to expiry: still at least the base delay (or what is left).
        let d = retry_delay(t(2), t(0), 12, cap, 1.0).unwrap();
        assert_eq!(d, Duration::from_secs(1));
    }

    #[test]
    fn no_retry_once_expired() {
        let cap = Duration::from_secs(300);
        assert_eq!(retry_delay(t(10), t(10), 1, cap, 0.5), None);
        assert_eq!(retry_delay(t(10), t(11), 1, cap, 0.5), None);
    }

    #[test]
    fn urgency_follows_the_lifetime() {
        let (nb, na) = (t(0), t(1000));
        assert_eq!(urgency(nb, na, t(100)), Urgency::Fresh);
        assert_eq!(urgency(nb, na, t(700)), Urgency::Due);
        assert_eq!(urgency(nb, na, t(900)), Urgency::Critical);
        assert_eq!(urgency(nb, na, t(1000)), Urgency::Expired);
        assert_eq!(urgency(nb, na, t(5000)), Urgency::Expired);
    }
}
